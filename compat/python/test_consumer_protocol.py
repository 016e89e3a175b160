"""KIP-848 consumer groups with confluent-kafka (`group.protocol=consumer`): members join and
share partitions, a member leaving or killed gives its partitions to the others, a topic gaining
partitions is spread over the group, a static member comes back to its partitions, and the admin
client describes the group as a consumer-protocol group."""

import os
import signal
import subprocess
import sys
import threading
import time

from confluent_kafka import ConsumerGroupType, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from cairn_compat import wait_until

ENABLED = {"group.coordinator.rebalance.protocols": "classic,consumer",
           # Kafka's default is 45 s; a killed member is noticed sooner here. The minimums
           # (45 s and 5 s by default) bound the defaults, so they are lowered too.
           "group.consumer.session.timeout.ms": "6000",
           "group.consumer.heartbeat.interval.ms": "500",
           "group.consumer.min.session.timeout.ms": "6000",
           "group.consumer.min.heartbeat.interval.ms": "500"}


def consumer(bootstrap, group, name, **extra):
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": name,
                     "group.protocol": "consumer", "auto.offset.reset": "earliest", **extra})


def create(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                        operation_timeout=30)[topic].result(timeout=30)
    return admin


def partitions_of(c):
    return {tp.partition for tp in c.assignment()}


def split_between(consumers, partitions):
    """Polls every consumer until their assignments are disjoint, none is empty, and together
    cover `partitions`; returns them."""
    def check():
        for c in consumers:
            c.poll(0.1)
        sets = [partitions_of(c) for c in consumers]
        union = set().union(*sets)
        disjoint = sum(len(s) for s in sets) == len(union)
        return all(sets) and disjoint and union == set(partitions) and sets
    return wait_until(check, timeout=45, interval=0, what=f"partitions {partitions} split")


def test_members_join_share_consume_commit_and_leave(broker_with, topic_name):
    broker = broker_with(ENABLED)
    create(broker.bootstrap, topic_name, 4)
    group = f"g-{topic_name}"
    a = consumer(broker.bootstrap, group, "a", **{"enable.auto.commit": False})
    b = consumer(broker.bootstrap, group, "b", **{"enable.auto.commit": False})
    try:
        a.subscribe([topic_name])
        b.subscribe([topic_name])
        split_between([a, b], range(4))
        p = Producer({"bootstrap.servers": broker.bootstrap})
        for i in range(40):
            p.produce(topic_name, value=f"v{i}".encode(), partition=i % 4)
        assert p.flush(30) == 0
        seen = []

        def drained():
            for c in (a, b):
                m = c.poll(0.2)
                if m is not None and m.error() is None:
                    seen.append(m.value().decode())
            return len(seen) >= 40
        wait_until(drained, timeout=45, interval=0, what="every record consumed")
        assert sorted(seen) == sorted(f"v{i}" for i in range(40))
        a.commit(asynchronous=False)
        b.commit(asynchronous=False)
        committed = a.committed([TopicPartition(topic_name, i) for i in range(4)], timeout=30)
        assert {tp.partition: tp.offset for tp in committed} == {i: 10 for i in range(4)}

        # The admin client sees a consumer-protocol group with both members.
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        desc = admin.describe_consumer_groups([group])[group].result(timeout=30)
        assert desc.type == ConsumerGroupType.CONSUMER
        assert sorted(m.client_id for m in desc.members) == ["a", "b"]
        assigned = sorted(tp.partition for m in desc.members for tp in m.assignment.topic_partitions)
        assert assigned == [0, 1, 2, 3]

        # b leaves: a takes everything.
        b.close()
        b = None
        wait_until(lambda: (a.poll(0.1), partitions_of(a) == {0, 1, 2, 3})[1], timeout=30,
                   interval=0, what="the remaining member to take every partition")
    finally:
        a.close()
        if b is not None:
            b.close()


MEMBER = """
import sys, time
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2], "client.id": "doomed",
              "group.protocol": "consumer", "auto.offset.reset": "earliest"})
c.subscribe([sys.argv[3]])
while True:
    c.poll(0.2)
    if c.assignment():
        print("assigned", flush=True)
"""


def test_a_killed_member_loses_its_partitions_at_its_session_timeout(broker_with, topic_name):
    broker = broker_with(ENABLED)
    create(broker.bootstrap, topic_name, 4)
    group = f"g-{topic_name}"
    a = consumer(broker.bootstrap, group, "survivor")
    doomed = subprocess.Popen([sys.executable, "-c", MEMBER, broker.bootstrap, group, topic_name],
                              stdout=subprocess.PIPE, text=True)
    try:
        a.subscribe([topic_name])
        # Keep polling the survivor while the other member joins: it must give up partitions.
        said = []
        threading.Thread(target=lambda: said.append(doomed.stdout.readline().strip()),
                         daemon=True).start()
        wait_until(lambda: (a.poll(0.1), said == ["assigned"] and len(partitions_of(a)) == 2)[1],
                   timeout=45, interval=0, what="the partitions split")
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(10)
        killed_at = time.monotonic()
        wait_until(lambda: (a.poll(0.1), partitions_of(a) == {0, 1, 2, 3})[1], timeout=30,
                   interval=0, what="the killed member's partitions to be reassigned")
        # Not before the session timeout (6 s) has passed.
        assert time.monotonic() - killed_at > 4
    finally:
        if doomed.poll() is None:
            doomed.kill()
        a.close()


def test_a_topic_gaining_partitions_is_spread_over_the_group(broker_with, topic_name):
    broker = broker_with(ENABLED)
    admin = create(broker.bootstrap, topic_name, 2)
    group = f"g-{topic_name}"
    a = consumer(broker.bootstrap, group, "a", **{"topic.metadata.refresh.interval.ms": 1000})
    b = consumer(broker.bootstrap, group, "b", **{"topic.metadata.refresh.interval.ms": 1000})
    try:
        a.subscribe([topic_name])
        b.subscribe([topic_name])
        split_between([a, b], range(2))
        admin.create_partitions([NewPartitions(topic_name, 6)])[topic_name].result(timeout=30)
        sets = split_between([a, b], range(6))
        assert sorted(len(s) for s in sets) == [3, 3]
    finally:
        a.close()
        b.close()


def test_a_static_member_comes_back_to_its_partitions(broker_with, topic_name):
    broker = broker_with(ENABLED)
    create(broker.bootstrap, topic_name, 4)
    group = f"g-{topic_name}"
    a = consumer(broker.bootstrap, group, "a", **{"group.instance.id": "instance-a"})
    b = consumer(broker.bootstrap, group, "b")
    try:
        a.subscribe([topic_name])
        b.subscribe([topic_name])
        first, _ = split_between([a, b], range(4))
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        desc = admin.describe_consumer_groups([group])[group].result(timeout=30)
        assert {m.group_instance_id for m in desc.members} == {"instance-a", None}
        # A static member closing leaves for a while: its partitions wait for it.
        a.close()
        for _ in range(10):
            b.poll(0.2)
        assert partitions_of(b) == {0, 1, 2, 3} - first
        a = consumer(broker.bootstrap, group, "a", **{"group.instance.id": "instance-a"})
        a.subscribe([topic_name])
        again, _ = split_between([a, b], range(4))
        assert again == first
    finally:
        a.close()
        b.close()


def test_a_regex_subscription_takes_topics_created_later(broker_with, topic_name):
    """librdkafka sends a `^`-prefixed subscription as SubscribedTopicRegex; the broker resolves
    it, and a matching topic created later is assigned too."""
    broker = broker_with(ENABLED)
    admin = create(broker.bootstrap, f"{topic_name}-a", 2)
    create(broker.bootstrap, f"other-{topic_name}", 1)
    group = f"g-{topic_name}"
    c = consumer(broker.bootstrap, group, "rx", **{"topic.metadata.refresh.interval.ms": 1000})
    try:
        c.subscribe([f"^{topic_name}-.*"])

        def topics():
            c.poll(0.1)
            return {(tp.topic, tp.partition) for tp in c.assignment()}
        wait_until(lambda: topics() == {(f"{topic_name}-a", 0), (f"{topic_name}-a", 1)},
                   timeout=45, interval=0, what="the matching topic assigned")
        admin.create_topics([NewTopic(f"{topic_name}-b", num_partitions=1, replication_factor=1)],
                            operation_timeout=30)[f"{topic_name}-b"].result(timeout=30)
        wait_until(lambda: (f"{topic_name}-b", 0) in topics(), timeout=45, interval=0,
                   what="the topic created later assigned")
        assert all(t.startswith(f"{topic_name}-") for t, _ in topics())
        desc = admin.describe_consumer_groups([group])[group].result(timeout=30)
        assert desc.type == ConsumerGroupType.CONSUMER
        assert len(desc.members) == 1
    finally:
        c.close()
