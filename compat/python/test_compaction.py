"""Jobs 2 and 4 of the design end to end with confluent-kafka.

Cache rebuild: a compacted topic, written many times per key with some keys deleted
(tombstones), is compacted in the background; an application reading it from offset 0, also
after a restart, gets exactly the latest value of every live key, at its original offset, and
deleted keys are gone. CDC snapshot: a topic switched to `compact,delete` with kafka-configs
(no restart) is compacted; a new consumer group reads it as a snapshot and then follows live
changes."""

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cairn_compat import kafka_tool, wait_until

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


FAST_CLEANING = {
    "segment.ms": "100",                 # roll often: the active segment is never cleaned
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "100",        # tombstones may go 100 ms after a cleaning
}


def create_topic(broker, topic, config):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config=config)],
                        operation_timeout=30)[topic].result(timeout=30)


def write_versions(p, topic):
    """KEYS keys x VERSIONS values, then tombstones for the first DELETED keys.
    Returns {key: (offset, value)} for the live keys, from the delivery reports."""
    reports = {}

    def on_delivery(err, msg):
        assert err is None, err
        reports[msg.offset()] = (msg.key(), msg.value())

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
        latest[key.decode()] = (offset, value)
    live = {k: (o, v.decode()) for k, (o, v) in latest.items() if v is not None}
    assert len(live) == KEYS - DELETED
    return live


def wait_compacted(broker, p, topic, live):
    """Wait until reading the topic from its start gives exactly one record per live key
    (its latest value, at its original offset) and no tombstone; return those records."""
    state = {}

    def compacted_view():
        # Keep appending a small 'heartbeat' record so segments keep rolling and new dirty
        # data keeps the cleaner coming back (tombstones go in a later pass than the values).
        p.produce(topic, key="heartbeat", value=str(time.time()), partition=0)
        p.flush(10)
        records = [r for r in read_all(broker, topic) if r[1] != b"heartbeat"]
        keys = [k for _, k, _ in records]
        view = {k.decode(): (o, v.decode()) for o, k, v in records if v is not None}
        state["last"] = f"{len(records)} records, {len(set(keys))} distinct keys, " \
                        f"{sum(v is None for _, _, v in records)} tombstones"
        return len(keys) == len(set(keys)) == len(live) and view == live and records

    try:
        return wait_until(compacted_view, timeout=150, interval=0.5,
                          what="compaction to leave one record per live key, no tombstones")
    except AssertionError as e:
        raise AssertionError(f"{e}; last read: {state.get('last')}") from None


def test_compacted_topic_keeps_latest_value_per_key(private_broker, topic_name):
    broker, topic = private_broker, topic_name
    create_topic(broker, topic, {"cleanup.policy": "compact", **FAST_CLEANING})
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    live = write_versions(p, topic)
    records = wait_compacted(broker, p, topic, live)
    assert len(records) == KEYS - DELETED

    # A restarted broker serves the same compacted log: the cache rebuilds identically.
    del p  # no client left reconnecting while the broker is down
    broker.restart()
    after = [r for r in read_all(broker, topic) if r[1] != b"heartbeat"]
    assert after == records


def test_cdc_snapshot_then_live_changes(broker, topic_name):
    topic, group = topic_name, f"cdc-{topic_name}"
    create_topic(broker, topic, {"cleanup.policy": "delete", "retention.ms": "-1",
                                 **FAST_CLEANING})
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    live = write_versions(p, topic)

    # The operator turns on compaction, keeping retention, without a restart.
    kafka_tool("kafka-configs", "--bootstrap-server", broker.bootstrap, "--entity-type", "topics",
               "--entity-name", topic, "--alter", "--add-config",
               "cleanup.policy=[compact,delete]")
    wait_compacted(broker, p, topic, live)

    # A new consumer reads the snapshot (one row per live key) and then follows changes.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        snapshot, changes = {}, []
        deadline = time.monotonic() + 60
        while len(snapshot) < len(live) and time.monotonic() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.5):
                assert m.error() is None, m.error()
                if m.key() != b"heartbeat":
                    snapshot[m.key().decode()] = (m.offset(), m.value().decode())
        assert snapshot == live

        for k in range(DELETED, DELETED + 5):
            p.produce(topic, key=f"k{k}", value=f"v{k}-live", partition=0)
        assert p.flush(30) == 0
        deadline = time.monotonic() + 60
        while len(changes) < 5 and time.monotonic() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.5):
                assert m.error() is None, m.error()
                if m.key() != b"heartbeat":
                    changes.append((m.key().decode(), m.value().decode()))
        assert changes == [(f"k{k}", f"v{k}-live") for k in range(DELETED, DELETED + 5)]
    finally:
        c.close()
