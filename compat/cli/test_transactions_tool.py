"""kafka-transactions (Kafka's CLI) against a transaction left open by a confluent-kafka
producer and one it committed: list, describe, describe-producers, find-hanging and abort."""

import time

from confluent_kafka import Consumer, Producer, TopicPartition

from cairn_compat import kafka_tool


def rows(out: str) -> list[list[str]]:
    """The table a kafka-transactions command prints: its lines split on whitespace, header
    first."""
    return [line.split() for line in out.splitlines() if line.strip()]


def test_list_describe_and_describe_producers(broker, topic_name):
    b = broker.bootstrap
    kafka_tool("kafka-topics", "--bootstrap-server", b, "--create", "--topic", topic_name,
               "--partitions", "1")
    done = Producer({"bootstrap.servers": b, "transactional.id": "cli-done",
                     "transaction.timeout.ms": 60000})
    done.init_transactions(30)
    done.begin_transaction()
    done.produce(topic_name, value=b"c", partition=0)
    done.commit_transaction(30)
    open_ = Producer({"bootstrap.servers": b, "transactional.id": "cli-open",
                      "transaction.timeout.ms": 60000})
    open_.init_transactions(30)
    open_.begin_transaction()
    for v in (b"a", b"b"):
        open_.produce(topic_name, value=v, partition=0)
    assert open_.flush(30) == 0

    listed = rows(kafka_tool("kafka-transactions", "--bootstrap-server", b, "list").stdout)
    assert listed[0][:4] == ["TransactionalId", "Coordinator", "ProducerId", "TransactionState"]
    states = {r[0]: r[3] for r in listed[1:]}
    assert states["cli-open"] == "Ongoing", listed
    assert states["cli-done"] == "CompleteCommit", listed

    described = rows(kafka_tool("kafka-transactions", "--bootstrap-server", b, "describe",
                                "--transactional-id", "cli-open").stdout)
    header, row = described[0], described[1]
    fields = dict(zip(header, row))
    assert fields["TransactionalId"] == "cli-open"
    assert fields["TransactionState"] == "Ongoing"
    assert fields["TransactionTimeoutMs"] == "60000"
    assert fields["TopicPartitions"] == f"{topic_name}-0"
    open_pid = fields["ProducerId"]

    missing = kafka_tool("kafka-transactions", "--bootstrap-server", b, "describe",
                         "--transactional-id", "no-such-id", check=False)
    assert missing.returncode != 0
    assert "could not be found" in missing.stderr, missing.stderr

    producers = rows(kafka_tool("kafka-transactions", "--bootstrap-server", b,
                                "describe-producers", "--topic", topic_name,
                                "--partition", "0").stdout)
    header = producers[0]
    by_pid = {r[0]: dict(zip(header, r)) for r in producers[1:]}
    assert len(by_pid) == 2, producers
    # The committed transaction's records and marker come first: offsets 0 and 1.
    assert by_pid[open_pid]["CurrentTransactionStartOffset"] == "2", producers
    assert by_pid[open_pid]["LastSequence"] == "1", producers
    other = next(p for pid, p in by_pid.items() if pid != open_pid)
    assert other["CurrentTransactionStartOffset"] == "None", producers

    # A fresh open transaction is not hanging.
    hanging = kafka_tool("kafka-transactions", "--bootstrap-server", b, "find-hanging",
                         "--broker-id", "1").stdout
    assert "cli-open" not in hanging and open_pid not in hanging.split(), hanging

    # An operator aborts the open transaction at its start offset (WriteTxnMarkers): the
    # partition's producer has no open transaction left, and a read_committed consumer sees
    # only the committed record.
    kafka_tool("kafka-transactions", "--bootstrap-server", b, "abort", "--topic", topic_name,
               "--partition", "0", "--start-offset", "2")
    producers = rows(kafka_tool("kafka-transactions", "--bootstrap-server", b,
                                "describe-producers", "--topic", topic_name,
                                "--partition", "0").stdout)
    by_pid = {r[0]: dict(zip(producers[0], r)) for r in producers[1:]}
    assert by_pid[open_pid]["CurrentTransactionStartOffset"] == "None", producers
    consumer = Consumer({"bootstrap.servers": b, "group.id": f"{topic_name}-g",
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    consumer.assign([TopicPartition(topic_name, 0, 0)])
    values = []
    deadline = time.monotonic() + 20
    # Read to the end of the partition (offset 5: the abort marker's successor).
    while (time.monotonic() < deadline
           and consumer.position([TopicPartition(topic_name, 0)])[0].offset < 5):
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            values.append(m.value())
    low, high = consumer.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10)
    consumer.close()
    assert values == [b"c"], values
    assert high == 5, (low, high)

    # The producer's own abort afterwards is answered as usual.
    open_.abort_transaction(30)
    listed = rows(kafka_tool("kafka-transactions", "--bootstrap-server", b, "list").stdout)
    assert {r[0]: r[3] for r in listed[1:]}["cli-open"] == "CompleteAbort", listed
