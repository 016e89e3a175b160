"""Group coordination moves with leadership in a three-broker Cairn cluster (issue 19).

`__consumer_offsets` is replicated (offsets.topic.replication.factor, 3 here); the leader of a
group's partition is its coordinator. A consumer group keeps consuming through the kill -9 of
its coordinator: another broker loads the group and its committed offsets, every commit that
was acknowledged is still there, and a new member of the group starts exactly at them.
"""

from __future__ import annotations

import signal
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from cairn_compat import kafka_tool, wait_until
from test_cluster import Etcd, Node, bootstrap, describe, pytestmark  # noqa: F401

OFFSETS_PARTITIONS = 10
RECORDS = 300
PARTITIONS = 3


def start_cluster(tmp_path):
    etcd = Etcd(tmp_path)
    nodes = [Node(tmp_path, i, etcd) for i in (1, 2, 3)]
    for n in nodes:
        n.args += ["--set", f"offsets.topic.num.partitions={OFFSETS_PARTITIONS}"]
        n.start()
    admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
    wait_until(lambda: len(admin.list_topics(timeout=5).brokers) == 3, timeout=30,
               what="three brokers in Metadata")
    return etcd, nodes


def coordinator_of(nodes, group: str) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap(nodes)})
    return admin.describe_consumer_groups([group])[group].result(30).coordinator.id


def committed(nodes, group: str) -> dict[int, int]:
    """The group's committed offsets, as a new member would read them (OffsetFetch)."""
    consumer = Consumer({"bootstrap.servers": bootstrap(nodes), "group.id": group,
                         "enable.auto.commit": False})
    try:
        tps = consumer.committed([TopicPartition("work", p) for p in range(PARTITIONS)],
                                 timeout=30)
        return {tp.partition: tp.offset for tp in tps if tp.offset >= 0}
    finally:
        consumer.close()


def commit(consumer, msg, acked: dict[int, int]):
    """Commits past `msg`, retrying while the coordinator moves; records what was acked."""
    offsets = [TopicPartition("work", msg.partition(), msg.offset() + 1)]
    deadline = time.time() + 90
    while True:
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
            acked[msg.partition()] = msg.offset() + 1
            return
        except KafkaException as e:
            if time.time() > deadline:
                raise
            print("commit retried:", e)
            time.sleep(0.2)


def test_group_coordinator_kill_9_moves_the_group_with_its_offsets(tmp_path):
    etcd, nodes = start_cluster(tmp_path)
    try:
        kafka_tool("kafka-topics", "--bootstrap-server", nodes[0].bootstrap, "--create",
                   "--topic", "work", "--partitions", str(PARTITIONS),
                   "--replication-factor", "3", "--config", "min.insync.replicas=2")
        producer = Producer({"bootstrap.servers": bootstrap(nodes), "acks": "all",
                             "enable.idempotence": True})
        for i in range(RECORDS):
            producer.produce("work", value=str(i).encode(), partition=i % PARTITIONS)
        assert producer.flush(60) == 0

        group = "failover-group"
        consumer = Consumer({"bootstrap.servers": bootstrap(nodes), "group.id": group,
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe(["work"])
        # The offsets topic is created at the group's first FindCoordinator, with three
        # replicas (all three brokers are live), every one in sync.
        wait_until(lambda: "__consumer_offsets" in AdminClient(
            {"bootstrap.servers": bootstrap(nodes)}).list_topics(timeout=5).topics,
            timeout=30, what="__consumer_offsets to exist")
        offsets_topic = describe(nodes, "__consumer_offsets")
        assert len(offsets_topic) == OFFSETS_PARTITIONS
        assert all(len(replicas) == 3 for _, replicas, _ in offsets_topic.values()), \
            offsets_topic

        read: list[tuple[int, int, int]] = []  # (partition, offset, value)
        acked: dict[int, int] = {}

        def consume_until(count: int, timeout: float):
            deadline = time.time() + timeout
            while len(read) < count and time.time() < deadline:
                msg = consumer.poll(1.0)
                if msg is None or msg.error():
                    continue
                read.append((msg.partition(), msg.offset(), int(msg.value())))
                commit(consumer, msg, acked)
            assert len(read) >= count, (len(read), count)

        consume_until(RECORDS // 3, 90)
        victim_id = coordinator_of(nodes, group)
        before_kill = dict(acked)
        victim = next(n for n in nodes if n.node_id == victim_id)
        victim.stop(signal.SIGKILL)
        killed = time.time()

        # The same member carries on: it finds the new coordinator, which knows it.
        consume_until(2 * RECORDS // 3, 120)
        moved = time.time() - killed
        survivors = [n for n in nodes if n is not victim]
        new_coordinator = coordinator_of(survivors, group)
        assert new_coordinator != victim_id
        after_failover = dict(acked)
        consumer.close()

        # Every acknowledged commit is intact on the new coordinator, and no commit went
        # backwards across the failover.
        assert committed(survivors, group) == after_failover
        assert all(after_failover[p] >= before_kill.get(p, 0) for p in after_failover)

        # A new member of the group starts exactly at the committed offsets: nothing
        # committed is read again, nothing is skipped.
        rest = Consumer({"bootstrap.servers": bootstrap(survivors), "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
        rest.subscribe(["work"])
        later: list[tuple[int, int, int]] = []
        deadline = time.time() + 90
        while len(read) + len(later) < RECORDS and time.time() < deadline:
            msg = rest.poll(1.0)
            if msg is None or msg.error():
                continue
            later.append((msg.partition(), msg.offset(), int(msg.value())))
        rest.close()
        for p in range(PARTITIONS):
            first = min((o for q, o, _ in later if q == p), default=None)
            assert first is None or first == after_failover.get(p, 0), (p, first, after_failover)
        values = [v for _, _, v in read + later]
        assert sorted(values) == list(range(RECORDS)), "a record was skipped or read twice"
        print(f"group moved from {victim_id} to {new_coordinator}; consuming again "
              f"{moved:.1f}s after the kill")
    finally:
        for n in nodes:
            n.stop(signal.SIGKILL)
        etcd.stop()
