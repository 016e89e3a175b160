"""A confluent-kafka consumer group against the broker under test: partitions split between
members without overlap, reassigned when a member leaves, commits resumed exactly."""

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cairn_compat import wait_until

PARTITIONS = 4


def create_topic(broker, topic, partitions):
    client = AdminClient({"bootstrap.servers": broker.bootstrap})
    client.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                         operation_timeout=30)[topic].result(timeout=30)


def produce(broker, topic, start, count):
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(start, start + count):
        p.produce(topic, key=f"k{i}", value=f"v{i}", partition=i % PARTITIONS)
    assert p.flush(30) == 0


def member(broker, group, name):
    return Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "client.id": name,
                     "auto.offset.reset": "earliest", "enable.auto.commit": False,
                     "session.timeout.ms": 10000, "heartbeat.interval.ms": 500})


def partitions_of(c):
    return {tp.partition for tp in c.assignment()}


def test_group_splits_partitions_and_rebalances_on_leave(broker, topic_name):
    topic, group = topic_name, f"group-{topic_name}"
    create_topic(broker, topic, PARTITIONS)
    a, b = member(broker, group, "member-a"), member(broker, group, "member-b")
    seen = {"a": [], "b": []}
    live = {"a": a, "b": b}

    def pump():
        for name, c in live.items():
            for m in c.consume(num_messages=1000, timeout=0.1):
                if m.error() is None:
                    seen[name].append((m.partition(), m.offset(), m.value()))
        return partitions_of(a), partitions_of(b) if "b" in live else set()

    try:
        a.subscribe([topic])
        b.subscribe([topic])

        def split():
            pa, pb = pump()
            return pa and pb and not (pa & pb) and (pa | pb) == set(range(PARTITIONS))

        wait_until(split, timeout=60, what="both members to own disjoint halves")
        # Produce only once the group is stable, so no record is read twice by a rebalance.
        produce(broker, topic, 0, 400)
        wait_until(lambda: (pump(), len(seen["a"]) + len(seen["b"]) >= 400)[1], timeout=60,
                   what="all 400 records consumed by the group")
        # Each partition was read by exactly the member that owns it.
        for name, c in (("a", a), ("b", b)):
            assert {part for part, _, _ in seen[name]} <= partitions_of(c)
        every = sorted(v for s in seen.values() for _, _, v in s)
        assert every == sorted(f"v{i}".encode() for i in range(400))
        a.commit(asynchronous=False)
        b.commit(asynchronous=False)

        # Member b leaves: a gets every partition and resumes from b's commits (no re-reads).
        del live["b"]
        b.close()
        b = None
        wait_until(lambda: (pump(), partitions_of(a) == set(range(PARTITIONS)))[1], timeout=60,
                   what="member a to own every partition after b left")
        before = len(seen["a"])
        produce(broker, topic, 400, 40)
        wait_until(lambda: (pump(), len(seen["a"]) >= before + 40)[1], timeout=60,
                   what="the 40 new records")
        assert sorted(v for _, _, v in seen["a"][before:]) == sorted(
            f"v{i}".encode() for i in range(400, 440))
        a.commit(asynchronous=False)
        committed = a.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        assert {tp.partition: tp.offset for tp in committed} == {p: 110 for p in range(PARTITIONS)}
    finally:
        a.close()
        if b is not None:
            b.close()


def test_committed_offsets_resume_in_a_new_consumer(broker, topic_name):
    topic, group = topic_name, f"group-{topic_name}"
    create_topic(broker, topic, PARTITIONS)
    produce(broker, topic, 0, 100)
    c = member(broker, group, "first")
    try:
        c.subscribe([topic])
        got = []
        deadline = time.monotonic() + 60
        while len(got) < 60 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m)
        assert len(got) >= 60
        # Commit exactly the first 60 records read (per partition: last offset + 1).
        last = {}
        for m in got[:60]:
            last[m.partition()] = m.offset() + 1
        c.commit(offsets=[TopicPartition(topic, p, o) for p, o in last.items()],
                 asynchronous=False)
    finally:
        c.close()

    c = member(broker, group, "second")
    try:
        c.subscribe([topic])
        rest = []
        deadline = time.monotonic() + 60
        while len(rest) < 40 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                rest.append(m.value())
        first_60 = sorted(m.value() for m in got[:60])
        # Together: every record exactly once.
        assert sorted(first_60 + rest) == sorted(f"v{i}".encode() for i in range(100))
    finally:
        c.close()
