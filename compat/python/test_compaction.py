"""Job 2 of the design (cache rebuild) end to end with confluent-kafka: a compacted topic,
written many times per key with some keys deleted (tombstones), is compacted in the
background; an application reading it from offset 0, also after a restart, gets exactly the
latest value of every live key, at its original offset, and deleted keys are gone."""

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cairn_compat import wait_until

KEYS = 50
VERSIONS = 20
DELETED = 10  # keys k0..k9 get a tombstone after their last version


def read_all(broker, topic):
    """Every record from the log start to the high watermark: [(offset, key, value)]."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused-compaction-reader",
                  "enable.auto.commit": False})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        if high == 0:
            return []
        c.assign([TopicPartition(topic, 0, low)])
        got = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            batch = c.consume(num_messages=10_000, timeout=0.5)
            for m in batch:
                assert m.error() is None, m.error()
                got.append((m.offset(), m.key(), m.value()))
            if got and got[-1][0] >= high - 1:
                return got
        raise AssertionError(f"read {len(got)} records, never reached offset {high - 1}")
    finally:
        c.close()


def test_compacted_topic_keeps_latest_value_per_key(private_broker, topic_name):
    broker, topic = private_broker, topic_name
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config={
        "cleanup.policy": "compact",
        "segment.ms": "100",                 # roll often: the active segment is never cleaned
        "min.cleanable.dirty.ratio": "0.01",
        "min.compaction.lag.ms": "0",
        "delete.retention.ms": "100",        # tombstones may go 100 ms after a cleaning
    })], operation_timeout=30)[topic].result(timeout=30)

    reports = {}

    def on_delivery(err, msg):
        assert err is None, err
        reports[msg.offset()] = (msg.key(), msg.value())

    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for version in range(VERSIONS):
        for k in range(KEYS):
            p.produce(topic, key=f"k{k}", value=f"v{k}-{version}", partition=0,
                      on_delivery=on_delivery)
    for k in range(DELETED):
        p.produce(topic, key=f"k{k}", value=None, partition=0, on_delivery=on_delivery)
    assert p.flush(30) == 0

    latest = {}
    for offset in sorted(reports):
        key, value = reports[offset]
        latest[key] = (offset, value)
    expected = {k: ov for k, ov in latest.items() if ov[1] is not None}  # live keys
    assert len(expected) == KEYS - DELETED

    state = {}

    def compacted_view():
        # Keep appending a small 'heartbeat' record so segments keep rolling and new dirty
        # data keeps the cleaner coming back (tombstones go in a later pass than the values).
        p.produce(topic, key="heartbeat", value=str(time.time()), partition=0)
        p.flush(10)
        records = [r for r in read_all(broker, topic) if r[1] != b"heartbeat"]
        keys = [k for _, k, _ in records]
        view = {k.decode(): (o, v.decode()) for o, k, v in records if v is not None}
        done = len(keys) == len(set(keys)) == KEYS - DELETED and view == {
            k.decode(): (o, v.decode()) for k, (o, v) in expected.items()}
        state["last"] = f"{len(records)} records, {len(set(keys))} distinct keys, " \
                        f"{sum(v is None for _, _, v in records)} tombstones"
        return done and records

    try:
        records = wait_until(compacted_view, timeout=150, interval=0.5,
                             what="compaction to leave one record per live key, no tombstones")
    except AssertionError as e:
        raise AssertionError(f"{e}; last read: {state.get('last')}") from None
    assert len(records) == KEYS - DELETED

    # A restarted broker serves the same compacted log: the cache rebuilds identically.
    del p  # no client left reconnecting while the broker is down
    broker.restart()
    after = [r for r in read_all(broker, topic) if r[1] != b"heartbeat"]
    assert after == records
