"""confluent-kafka (librdkafka) at the edges of what a broker may answer: a consumer whose
fetch.max.bytes and max.partition.fetch.bytes are below its batches' sizes (KIP-74)."""

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create_topic(broker, topic, partitions, config=None):
    client = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = client.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=30)
    futures[topic].result(timeout=30)


def test_consumer_with_fetch_limits_below_batch_sizes_reads_everything_exactly(broker, topic_name):
    partitions = 4
    create_topic(broker, topic_name, partitions)
    # One batch per message (a flush after each): per partition, runs of small batches that fill
    # most of max.partition.fetch.bytes, each followed by a batch larger than both limits.
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    expected = {p: [] for p in range(partitions)}
    failures = []

    def on_delivery(err, msg):
        if err is not None:
            failures.append(err)

    for run in range(3):
        for p in range(partitions):
            values = [f"small-{p}-{run}-{i}".encode() * 4 for i in range(8)]
            values.append(f"big-{p}-{run}-".encode() + b"B" * 1150)
            for value in values:
                producer.produce(topic_name, value=value, partition=p, on_delivery=on_delivery)
                producer.flush(30)
                expected[p].append(value)
    assert failures == []

    # librdkafka's floors: fetch.max.bytes >= message.max.bytes >= 1000, and
    # receive.message.max.bytes >= fetch.max.bytes + 512. A response frame larger than
    # receive.message.max.bytes makes it drop the connection and fetch the same again, forever.
    client_errors = []
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "error_cb": client_errors.append,
        "group.id": "unused-manual-assign",
        "enable.auto.commit": False,
        "message.max.bytes": 1000,
        "fetch.max.bytes": 1000,
        "max.partition.fetch.bytes": 900,
        "receive.message.max.bytes": 1600,
        "fetch.wait.max.ms": 50,
    })
    got = {p: [] for p in range(partitions)}
    total = sum(len(v) for v in expected.values())
    count = 0
    try:
        consumer.assign([TopicPartition(topic_name, p, 0) for p in range(partitions)])
        deadline = time.monotonic() + 60
        while count < total and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            assert msg.offset() == len(got[msg.partition()]), "a record skipped or repeated"
            got[msg.partition()].append(msg.value())
            count += 1
        # Nothing more arrives: exactly what was produced.
        extra = consumer.poll(1.0)
        assert extra is None or extra.error() is not None, "a record delivered twice"
    finally:
        consumer.close()
    assert got == expected
    # An oversized response is reported as an error (and the connection dropped).
    assert client_errors == []

