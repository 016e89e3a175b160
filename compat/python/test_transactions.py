"""Transactions with confluent-kafka (librdkafka): a transactional producer committing and
aborting over several partitions, read_committed vs read_uncommitted consumers, a
consume-transform-produce loop with send_offsets_to_transaction, and a SIGKILL of the broker in
the middle of a transaction."""

import signal

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 3


def create_topic(broker, topic, partitions=PARTITIONS):
    client = AdminClient({"bootstrap.servers": broker.bootstrap})
    client.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                         operation_timeout=30)[topic].result(timeout=30)


def txn_producer(broker, txn_id):
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": txn_id,
                  "transaction.timeout.ms": 30000})
    p.init_transactions(30)
    return p


def consume_all(broker, topic, isolation, expected=None, group=None, timeout=20.0):
    """Values read from the start of every partition until `expected` are seen (or a quiet
    period when expected is None)."""
    import time
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group or f"read-{topic}-{isolation}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "isolation.level": isolation})
    c.subscribe([topic])
    values = []
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            if expected is None and values and time.monotonic() - quiet_since > 3:
                break
            if expected is not None and len(values) >= expected:
                break
            continue
        quiet_since = time.monotonic()
        values.append(m.value().decode())
    c.close()
    return sorted(values)


def test_commit_and_abort_over_partitions(broker, topic_name):
    topic = topic_name
    create_topic(broker, topic)
    p = txn_producer(broker, f"tx-{topic}")
    p.begin_transaction()
    for i in range(9):
        p.produce(topic, value=f"committed-{i}", partition=i % PARTITIONS)
    p.commit_transaction(30)
    p.begin_transaction()
    for i in range(6):
        p.produce(topic, value=f"aborted-{i}", partition=i % PARTITIONS)
    p.flush(30)
    p.abort_transaction(30)
    p.begin_transaction()
    p.produce(topic, value="last", partition=0)
    p.commit_transaction(30)
    committed = consume_all(broker, topic, "read_committed", expected=10)
    assert committed == sorted([f"committed-{i}" for i in range(9)] + ["last"])
    uncommitted = consume_all(broker, topic, "read_uncommitted", expected=16)
    assert len(uncommitted) == 16
    assert any(v.startswith("aborted-") for v in uncommitted)


def test_open_transaction_is_invisible_to_read_committed(broker, topic_name):
    topic = topic_name
    create_topic(broker, topic, 1)
    p = txn_producer(broker, f"open-{topic}")
    p.begin_transaction()
    p.produce(topic, value="pending", partition=0)
    p.flush(30)
    assert consume_all(broker, topic, "read_uncommitted", expected=1) == ["pending"]
    assert consume_all(broker, topic, "read_committed", expected=1, timeout=4) == []
    p.commit_transaction(30)
    assert consume_all(broker, topic, "read_committed", expected=1) == ["pending"]


def test_consume_transform_produce_with_send_offsets(broker, topic_name):
    src, dst, group = f"{topic_name}-in", f"{topic_name}-out", f"ctp-{topic_name}"
    create_topic(broker, src)
    create_topic(broker, dst)
    plain = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(30):
        plain.produce(src, value=str(i), partition=i % PARTITIONS)
    assert plain.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    consumer.subscribe([src])
    # Offsets sent to a transaction carry the consumer's member id and generation, which the
    # coordinator checks (as Kafka's does): join the group first. A record read while joining
    # is handled with the first batch.
    import time
    early = []
    deadline = time.monotonic() + 30
    while not consumer.assignment() and time.monotonic() < deadline:
        m = consumer.poll(0.2)
        if m is not None and not m.error():
            early.append(m)
    assert consumer.assignment(), "the consumer never got its partitions"
    producer = txn_producer(broker, f"ctp-{topic_name}")
    # An aborted transaction first: its output and its offsets must both vanish.
    producer.begin_transaction()
    for p in range(PARTITIONS):
        producer.produce(dst, value="junk", partition=p)
    producer.send_offsets_to_transaction([TopicPartition(src, p, 5) for p in range(PARTITIONS)],
                                         consumer.consumer_group_metadata(), 30)
    producer.abort_transaction(30)
    seen = 0
    deadline = time.monotonic() + 60
    while seen < 30 and time.monotonic() < deadline:
        msgs = early + consumer.consume(10, 1.0)
        early = []
        msgs = [m for m in msgs if not m.error()]
        if not msgs:
            continue
        producer.begin_transaction()
        for m in msgs:
            producer.produce(dst, value=str(int(m.value()) * 10), partition=m.partition())
        producer.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                             consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        seen += len(msgs)
    consumer.close()
    assert seen == 30
    out = consume_all(broker, dst, "read_committed", expected=30)
    assert out == sorted(str(i * 10) for i in range(30))
    # The group's committed offsets moved with the committed transactions.
    check = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    committed = check.committed([TopicPartition(src, p) for p in range(PARTITIONS)], 10)
    check.close()
    assert sum(tp.offset for tp in committed) == 30


def test_kill_during_a_transaction(private_broker, topic_name):
    broker = private_broker
    topic = topic_name
    create_topic(broker, topic)
    p = txn_producer(broker, f"kill-{topic}")
    p.begin_transaction()
    for i in range(6):
        p.produce(topic, value=f"done-{i}", partition=i % PARTITIONS)
    p.commit_transaction(30)
    p.begin_transaction()
    for i in range(6):
        p.produce(topic, value=f"open-{i}", partition=i % PARTITIONS)
    p.flush(30)
    # SIGKILL: no clean shutdown; the open transaction is in the log without a marker.
    broker.proc.send_signal(signal.SIGKILL)
    broker.proc.wait(10)
    broker.proc = None
    broker.start()
    # The zombie's transaction is aborted by the next producer with its transactional id.
    p2 = txn_producer(broker, f"kill-{topic}")
    p2.begin_transaction()
    p2.produce(topic, value="after", partition=1)
    p2.commit_transaction(30)
    committed = consume_all(broker, topic, "read_committed", expected=7)
    assert committed == sorted([f"done-{i}" for i in range(6)] + ["after"])
