"""Operating a three-broker Cairn cluster (issue 19, item 4): controlled shutdown and the
rolling restart it makes safe, kafka-leader-election (ElectLeaders) and automatic
preferred-leader rebalancing.

Uses test_cluster.py's etcd and broker fixtures. A rolling restart stops (SIGTERM) and restarts
each broker in turn while confluent-kafka and kafka-producer-perf-test write with
acks=all at their default retries: no send may fail, every acknowledged record must be read
back exactly once, and each broker must hand its leaderships over before it stops. (The Java
side is kafka-producer-perf-test: kafka-verifiable-producer forces retries=0.)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from cairn_compat import SCRIPTS, TARGET, kafka_tool, wait_until
from test_cluster import Etcd, Node, bootstrap, cluster, describe  # noqa: F401 (fixture)

pytestmark = [
    pytest.mark.skipif(TARGET != "cairn", reason="a Cairn cluster only"),
    pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd-server is not installed"),
]

PARTITIONS = 3
JAVA_RECORDS = 5000


def all_in_sync(nodes, topic: str) -> bool:
    parts = describe(nodes, topic)
    return len(parts) == PARTITIONS and all(
        sorted(isr) == [1, 2, 3] and leader != -1 for leader, _, isr in parts.values())


def read_all(nodes, topic: str) -> list[bytes]:
    """Every record of every partition, up to each one's high watermark."""
    consumer = Consumer({"bootstrap.servers": bootstrap(nodes), "group.id": f"{topic}-check",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    highs = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
             for p in range(PARTITIONS)}
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    seen = {p: -1 for p in range(PARTITIONS)}
    values = []
    deadline = time.time() + 90
    while any(seen[p] < highs[p] - 1 for p in seen) and time.time() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and not msg.error():
            seen[msg.partition()] = msg.offset()
            values.append(msg.value())
    consumer.close()
    assert all(seen[p] >= highs[p] - 1 for p in seen), (seen, highs)
    return values


def test_rolling_restart_under_acks_all_fails_no_send(cluster):
    """Issue 19's rolling-restart fault: every broker in turn gets SIGTERM, hands its
    leaderships to an in-sync replica (controlled shutdown), stops and comes back, while two
    acks=all producers (confluent-kafka, idempotent; the Java kafka-producer-perf-test,
    idempotent by default) keep writing with their default retries."""
    _, nodes, tmp_path = cluster
    for topic in ("roll", "roll-java"):
        kafka_tool("kafka-topics", "--bootstrap-server", nodes[0].bootstrap, "--create",
                   "--topic", topic, "--partitions", str(PARTITIONS),
                   "--replication-factor", "3", "--config", "min.insync.replicas=2")
        wait_until(lambda: all_in_sync(nodes, topic), timeout=60,
                   what=f"every replica of {topic} in sync")
    all_bootstrap = ",".join(n.bootstrap for n in nodes)

    acked, failed = [], []
    producer = Producer({"bootstrap.servers": all_bootstrap, "acks": "all",
                         "enable.idempotence": True, "linger.ms": 5})
    stop = threading.Event()

    def delivered(err, msg):
        (failed if err else acked).append(err or msg.value())

    def produce():
        n = 0
        while not stop.is_set():
            producer.produce("roll", value=b"%d" % n, partition=n % PARTITIONS,
                             on_delivery=delivered)
            producer.poll(0.005)
            n += 1

    java_out = open(tmp_path / "producer-perf-test.out", "w")
    java = subprocess.Popen(
        [str(SCRIPTS / "kafka-tool"), "kafka-producer-perf-test", "--topic", "roll-java",
         "--num-records", str(JAVA_RECORDS), "--throughput", "50", "--record-size", "100",
         "--producer-props", f"bootstrap.servers={all_bootstrap}", "acks=all"],
        stdout=java_out, stderr=subprocess.STDOUT,
        # Retried errors are logged at WARN; a send that fails prints its exception.
        env={**os.environ, "KAFKA_TOOL_LOG_LEVEL": "error"})
    writer = threading.Thread(target=produce)
    writer.start()
    try:
        time.sleep(3)
        for node in nodes:
            assert java.poll() is None, "the Java producer finished before the restarts did"
            led = [p for p, (leader, _, _) in describe(nodes, "roll").items()
                   if leader == node.node_id]
            node.stop(signal.SIGTERM)
            log = node.log_text()
            assert "controlled shutdown complete" in log, log[-3000:]
            assert "still_leads=0" in log, log[-3000:]
            after = describe(nodes, "roll")
            assert all(after[p][0] not in (node.node_id, -1) for p in led), (led, after)
            time.sleep(1)
            node.start()
            wait_until(lambda: all_in_sync(nodes, "roll") and all_in_sync(nodes, "roll-java"),
                       timeout=90, what=f"broker {node.node_id} back in every ISR")
        time.sleep(2)
    except BaseException:
        java.kill()
        raise
    finally:
        stop.set()
        writer.join()
    java_code = java.wait(timeout=JAVA_RECORDS / 50 + 120)
    java_out.close()
    assert producer.flush(120) == 0
    assert not failed, failed[:5]
    assert len(acked) > 100, len(acked)

    values = read_all(nodes, "roll")
    assert len(values) == len(set(values)), "a record is stored twice"
    missing = set(acked) - set(values)
    assert not missing, (len(missing), sorted(missing)[:10])

    java_text = (tmp_path / "producer-perf-test.out").read_text()
    assert java_code == 0 and "Exception" not in java_text, java_text[-3000:]
    assert f"{JAVA_RECORDS} records sent" in java_text, java_text[-3000:]
    # Every one of its records acknowledged, none failed: the topic holds each exactly once.
    assert len(read_all(nodes, "roll-java")) == JAVA_RECORDS
    print(f"{len(acked)} + {JAVA_RECORDS} acknowledged through a rolling restart")


def test_controlled_shutdown_can_be_turned_off(tmp_path):
    """controlled.shutdown.enable=false: the broker stops at once; its partitions fail over
    when its lease is revoked, as before."""
    etcd = Etcd(tmp_path)
    nodes = [Node(tmp_path, i, etcd) for i in (1, 2)]
    for n in nodes:
        n.args += ["--set", "controlled.shutdown.enable=false"]
    try:
        for n in nodes:
            n.start()
        kafka_tool("kafka-topics", "--bootstrap-server", nodes[0].bootstrap, "--create",
                   "--topic", "off", "--partitions", "2", "--replication-factor", "2")
        nodes[1].stop(signal.SIGTERM)
        assert "controlled shutdown" not in nodes[1].log_text()
        assert "left the cluster" in nodes[1].log_text()
    finally:
        for n in nodes:
            n.stop(signal.SIGKILL)
        etcd.stop()


def leaders_and_preferred(nodes, topic: str) -> list[tuple[int, int]]:
    """(leader, preferred replica) of each partition."""
    return [(leader, replicas[0]) for _, (leader, replicas, _) in
            sorted(describe(nodes, topic).items())]


def restart_moves_leadership_away(nodes, topic: str) -> None:
    """SIGTERM then restart broker 1: its preferred partitions are led elsewhere after."""
    nodes[0].stop(signal.SIGTERM)
    nodes[0].start()
    wait_until(lambda: all_in_sync(nodes, topic), timeout=60, what="broker 1 back in every ISR")


def three_brokers(tmp_path, *settings: str):
    etcd = Etcd(tmp_path)
    nodes = [Node(tmp_path, i, etcd) for i in (1, 2, 3)]
    for n in nodes:
        for s in settings:
            n.args += ["--set", s]
    for n in nodes:
        n.start()
    return etcd, nodes


def test_kafka_leader_election_preferred_gives_leadership_back(tmp_path):
    """kafka-leader-election --election-type PREFERRED (ElectLeaders, KIP-460): after a
    restart moved broker 1's leaderships away (automatic rebalancing off), the tool makes
    every partition's first replica its leader again; asked again, nothing is needed. UNCLEAN
    on a partition that has a leader is not needed either."""
    etcd, nodes = three_brokers(tmp_path, "auto.leader.rebalance.enable=false")
    try:
        kafka_tool("kafka-topics", "--bootstrap-server", nodes[0].bootstrap, "--create",
                   "--topic", "elect", "--partitions", str(PARTITIONS),
                   "--replication-factor", "3")
        wait_until(lambda: all_in_sync(nodes, "elect"), timeout=60, what="replicas in sync")
        assert all(l == p for l, p in leaders_and_preferred(nodes, "elect"))
        restart_moves_leadership_away(nodes, "elect")
        moved = [(l, p) for l, p in leaders_and_preferred(nodes, "elect") if l != p]
        assert moved and all(p == 1 for _, p in moved), moved
        time.sleep(1)
        assert [(l, p) for l, p in leaders_and_preferred(nodes, "elect") if l != p] == moved

        out = kafka_tool("kafka-leader-election", "--bootstrap-server", nodes[1].bootstrap,
                         "--election-type", "PREFERRED", "--all-topic-partitions").stdout
        assert "Successfully completed leader election (PREFERRED)" in out, out
        assert all(l == p for l, p in leaders_and_preferred(nodes, "elect")), \
            leaders_and_preferred(nodes, "elect")

        out = kafka_tool("kafka-leader-election", "--bootstrap-server", nodes[2].bootstrap,
                         "--election-type", "PREFERRED", "--topic", "elect",
                         "--partition", "0").stdout
        assert "Valid replica already elected for partitions elect-0" in out, out
        out = kafka_tool("kafka-leader-election", "--bootstrap-server", nodes[2].bootstrap,
                         "--election-type", "UNCLEAN", "--topic", "elect",
                         "--partition", "1").stdout
        assert "Valid replica already elected for partitions elect-1" in out, out
        failed = kafka_tool("kafka-leader-election", "--bootstrap-server", nodes[2].bootstrap,
                            "--election-type", "PREFERRED", "--topic", "nope",
                            "--partition", "0", check=False)
        assert failed.returncode != 0
        assert "UnknownTopicOrPartition" in failed.stdout + failed.stderr, failed
    finally:
        for n in nodes:
            n.stop(signal.SIGKILL)
        etcd.stop()


def test_automatic_rebalancing_gives_leadership_back(tmp_path):
    """auto.leader.rebalance.enable with a short leader.imbalance.check.interval.seconds: once
    broker 1 is back in sync after a restart, the controller makes it lead its preferred
    partitions again by itself."""
    etcd, nodes = three_brokers(tmp_path, "leader.imbalance.check.interval.seconds=2")
    try:
        kafka_tool("kafka-topics", "--bootstrap-server", nodes[0].bootstrap, "--create",
                   "--topic", "balance", "--partitions", str(PARTITIONS),
                   "--replication-factor", "3")
        wait_until(lambda: all_in_sync(nodes, "balance"), timeout=60, what="replicas in sync")
        restart_moves_leadership_away(nodes, "balance")
        wait_until(lambda: all(l == p for l, p in leaders_and_preferred(nodes, "balance")),
                   timeout=30, what="every partition led by its preferred replica again")
        assert any("partition leader elected" in n.log_text() for n in nodes)
    finally:
        for n in nodes:
            n.stop(signal.SIGKILL)
        etcd.stop()


def test_kafka_leader_election_unclean_gives_a_leaderless_partition_a_leader(tmp_path):
    """kafka-leader-election --election-type UNCLEAN: a partition whose only in-sync replica
    is gone has no leader (unclean.leader.election.enable is off); the tool makes the live
    replica outside the ISR its leader at the next epoch, and it takes writes again."""
    etcd, nodes = three_brokers(tmp_path, "replica.lag.time.max.ms=1500",
                                "broker.session.timeout.ms=60000",
                                "controlled.shutdown.enable=false")
    try:
        kafka_tool("kafka-topics", "--bootstrap-server", nodes[0].bootstrap, "--create",
                   "--topic", "lonely", "--partitions", "1", "--replication-factor", "2")
        wait_until(lambda: len(describe(nodes, "lonely")[0][2]) == 2, timeout=60,
                   what="both replicas in sync")
        leader, replicas, _ = describe(nodes, "lonely")[0]
        follower = next(n for n in nodes if n.node_id in replicas and n.node_id != leader)
        follower.proc.send_signal(signal.SIGSTOP)
        try:
            wait_until(lambda: describe(nodes, "lonely")[0][2] == [leader], timeout=30,
                       what="the stalled follower to leave the ISR")
            next(n for n in nodes if n.node_id == leader).stop(signal.SIGTERM)
        finally:
            follower.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: describe(nodes, "lonely")[0][0] == -1, timeout=30,
                   what="the partition to lose its leader")
        out = kafka_tool("kafka-leader-election", "--bootstrap-server", follower.bootstrap,
                         "--election-type", "UNCLEAN", "--topic", "lonely",
                         "--partition", "0").stdout
        assert "Successfully completed leader election (UNCLEAN) for partitions lonely-0" in out
        assert describe(nodes, "lonely")[0][0] == follower.node_id
        producer = Producer({"bootstrap.servers": bootstrap(nodes), "acks": "all"})
        errors = []
        producer.produce("lonely", value=b"after", partition=0,
                         on_delivery=lambda err, _: errors.append(err))
        assert producer.flush(30) == 0
        assert errors == [None], errors
    finally:
        for n in nodes:
            n.stop(signal.SIGKILL)
        etcd.stop()
