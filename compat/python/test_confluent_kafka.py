"""The confluent-kafka Python client (librdkafka underneath) against the broker under test:
admin create/describe, produce with delivery reports (plain and idempotent), exact
consume-back by partition assignment, watermarks, offsets_for_times."""

import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cairn_compat import wait_until


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create_topic(broker, topic, partitions, config=None):
    client = admin(broker)  # keep a reference: the futures die with the client
    futures = client.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=30)
    futures[topic].result(timeout=30)


def produce(broker, topic, messages, **conf):
    """messages: [(partition, key, value, timestamp_or_None)]. Returns delivery reports
    as [(partition, offset, key, value)] in delivery order; asserts none failed."""
    reports, errors = [], []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            reports.append((msg.partition(), msg.offset(), msg.key(), msg.value()))

    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, **conf})
    for part, key, value, ts in messages:
        kwargs = {"timestamp": ts} if ts is not None else {}
        p.produce(topic, key=key, value=value, partition=part, on_delivery=on_delivery, **kwargs)
        p.poll(0)
    assert p.flush(60) == 0, "messages still undelivered after flush"
    assert errors == []
    assert len(reports) == len(messages)
    return reports


def consume_assigned(broker, topic, partitions, expected_count, timeout=60):
    """Read every partition from offset 0 with manual assignment (no group)."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused-manual-assign",
                  "enable.auto.commit": False, "enable.partition.eof": False})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < expected_count and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got.append((msg.partition(), msg.offset(), msg.key(), msg.value(), msg.timestamp(),
                        msg.headers()))
        assert len(got) == expected_count, f"consumed {len(got)} of {expected_count}"
        # Nothing beyond what was produced.
        extra = c.poll(1.0)
        assert extra is None or extra.error() is not None, "consumed more than was produced"
        return got
    finally:
        c.close()


def test_admin_create_and_describe(broker, topic_name):
    create_topic(broker, topic_name, 4, {"retention.ms": "-1"})
    md = wait_until(lambda: (m := admin(broker).list_topics(topic_name, timeout=10))
                    and len(m.topics[topic_name].partitions) == 4 and m,
                    what="4 partitions in metadata")
    t = md.topics[topic_name]
    assert t.error is None
    assert sorted(t.partitions) == [0, 1, 2, 3]
    assert {p.leader for p in t.partitions.values()} == {md.controller_id}
    # Creating the same topic again fails with TOPIC_ALREADY_EXISTS.
    with pytest.raises(Exception) as e:
        create_topic(broker, topic_name, 4)
    assert e.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS


@pytest.mark.parametrize("idempotent", [False, True], ids=["plain", "idempotent"])
def test_produce_with_delivery_reports_then_consume_exactly(broker, topic_name, idempotent):
    partitions = 3
    create_topic(broker, topic_name, partitions)
    n = 3000
    messages = [(i % partitions, f"key-{i}".encode(), f"value-{i}".encode() * (1 + i % 5), None)
                for i in range(n)]
    conf = {"enable.idempotence": True, "acks": "all"} if idempotent else {"acks": "1"}
    reports = produce(broker, topic_name, messages, **conf)

    # Delivery reports: offsets per partition are exactly 0..count-1, in produce order.
    for part in range(partitions):
        sent = [(k, v) for p, k, v, _ in messages if p == part]
        reported = sorted((o, k, v) for p, o, k, v in reports if p == part)
        assert [o for o, _, _ in reported] == list(range(len(sent)))
        assert [(k, v) for _, k, v in reported] == sent

    got = consume_assigned(broker, topic_name, partitions, n)
    for part in range(partitions):
        in_partition = [(o, k, v) for p, o, k, v, _, _ in got if p == part]
        expected = sorted((o, k, v) for p, o, k, v in reports if p == part)
        assert in_partition == expected, f"partition {part} differs"


def test_headers_and_timestamps_round_trip(broker, topic_name):
    create_topic(broker, topic_name, 1)
    ts = int(time.time() * 1000) - 86_400_000
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(topic_name, key=b"k", value=b"v", partition=0, timestamp=ts,
              headers=[("trace", b"abc"), ("empty", b""), ("dup", b"1"), ("dup", b"2")])
    p.produce(topic_name, key=None, value=None, partition=0)  # null key and value
    assert p.flush(30) == 0
    got = consume_assigned(broker, topic_name, 1, 2)
    (_, off0, k0, v0, (ts_type, ts0), h0), (_, off1, k1, v1, _, h1) = got
    assert (off0, k0, v0) == (0, b"k", b"v")
    assert ts0 == ts
    assert h0 == [("trace", b"abc"), ("empty", b""), ("dup", b"1"), ("dup", b"2")]
    assert (off1, k1, v1) == (1, None, None)
    assert not h1


def test_watermarks_and_offsets_for_times(broker, topic_name):
    create_topic(broker, topic_name, 2)
    base = (int(time.time()) - 7200) * 1000
    messages = [(0, f"k{i}".encode(), f"v{i}".encode(), base + i * 1000) for i in range(10)]
    messages += [(1, b"only", b"one", base + 50_000)]
    produce(broker, topic_name, messages)

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused-offsets-for-times"})
    try:
        assert c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10) == (0, 10)
        assert c.get_watermark_offsets(TopicPartition(topic_name, 1), timeout=10) == (0, 1)
        res = c.offsets_for_times([
            TopicPartition(topic_name, 0, base + 3500),   # between records 3 and 4
            TopicPartition(topic_name, 1, base),          # before its only record
        ], timeout=10)
        assert [(r.partition, r.offset, r.error) for r in res] == [(0, 4, None), (1, 0, None)]
        exact = c.offsets_for_times([TopicPartition(topic_name, 0, base + 7000)], timeout=10)
        assert exact[0].offset == 7
        # After the last timestamp: no such offset (-1, i.e. OFFSET_END in librdkafka).
        late = c.offsets_for_times([TopicPartition(topic_name, 0, base + 60_000)], timeout=10)
        assert late[0].offset == -1

        # Seek to the offset found by time and read from there.
        c.assign([TopicPartition(topic_name, 0, res[0].offset)])
        seen = []
        deadline = time.monotonic() + 30
        while len(seen) < 6 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                seen.append((m.offset(), m.value()))
        assert seen == [(i, f"v{i}".encode()) for i in range(4, 10)]
    finally:
        c.close()


def test_keyless_record_on_compacted_topic_fails_its_batch(broker, topic_name):
    """A batch with one keyless record on a compacted topic is refused whole; the broker names
    that record in record_errors (KIP-467), which librdkafka 2.x does not use: every record of
    the batch fails with INVALID_RECORD, as against Kafka, none is written, and the keyed
    records resent alone are accepted."""
    create_topic(broker, topic_name, 1, {"cleanup.policy": "compact"})
    results = {}

    def on_delivery(err, msg):
        results[msg.value()] = err.code() if err is not None else None

    # One batch: a long linger and a single flush send the three records together.
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 1000,
                  "enable.idempotence": False, "retries": 0})
    for key, value in [(b"a", b"keyed-1"), (None, b"keyless"), (b"c", b"keyed-2")]:
        p.produce(topic_name, key=key, value=value, partition=0, on_delivery=on_delivery)
    assert p.flush(60) == 0
    assert results == {b"keyed-1": KafkaError.INVALID_RECORD,
                       b"keyless": KafkaError.INVALID_RECORD,
                       b"keyed-2": KafkaError.INVALID_RECORD}, results
    reports = produce(broker, topic_name, [(0, b"a", b"keyed-1", None), (0, b"c", b"keyed-2", None)])
    assert [r[1] for r in reports] == [0, 1], "the refused batch left nothing behind"


def test_authorized_operations_without_an_authorizer(broker, topic_name):
    """KIP-430: asked for, the cluster's, a topic's and a group's authorized operations are
    every operation of the resource type (no authorizer), as Kafka answers them."""
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import AclOperation

    create_topic(broker, topic_name, 1)
    client = admin(broker)
    cluster = client.describe_cluster(include_authorized_operations=True).result(timeout=30)
    assert set(cluster.authorized_operations) == {
        AclOperation.CREATE, AclOperation.ALTER, AclOperation.DESCRIBE,
        AclOperation.CLUSTER_ACTION, AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS,
        AclOperation.IDEMPOTENT_WRITE}
    topic = client.describe_topics(TopicCollection([topic_name]),
                                   include_authorized_operations=True)[topic_name].result(timeout=30)
    assert set(topic.authorized_operations) == {
        AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DELETE,
        AclOperation.ALTER, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS,
        AclOperation.ALTER_CONFIGS}
    group = client.describe_consumer_groups([f"{topic_name}-group"],
                                            include_authorized_operations=True)
    described = group[f"{topic_name}-group"].result(timeout=30)
    assert set(described.authorized_operations) == {
        AclOperation.READ, AclOperation.DELETE, AclOperation.DESCRIBE,
        AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS}
    # Not asked for: none reported.
    plain = client.describe_cluster().result(timeout=30)
    assert not plain.authorized_operations
