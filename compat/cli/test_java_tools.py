"""Apache Kafka's own CLI tools (4.x, run through scripts/kafka-tool) against the broker
under test: kafka-topics, kafka-console-producer / -consumer with keys, kafka-get-offsets.

Each JVM start costs 1-2 s, so each test checks several things a user would check in one
session of tool calls."""

import time

from confluent_kafka import Producer

from cairn_compat import console_flags, kafka_tool, wait_until


def topics(broker, *args, check=True):
    return kafka_tool("kafka-topics", "--bootstrap-server", broker.bootstrap, *args, check=check)


def listed_topics(broker):
    return topics(broker, "--list").stdout.split()


def describe_lines(broker, topic):
    """Parse `kafka-topics --describe` into (topic line fields, [partition line fields])."""
    out = topics(broker, "--describe", "--topic", topic).stdout
    header, parts = None, []
    for line in out.splitlines():
        fields = {}
        for cell in line.strip().split("\t"):
            key, sep, value = cell.partition(": ")
            if sep:
                fields[key.strip()] = value.strip()
            elif cell.endswith(":"):
                fields[cell[:-1].strip()] = ""
        if "PartitionCount" in fields:
            header = fields
        elif "Partition" in fields:
            parts.append(fields)
    return header, parts


def test_topics_create_list_describe_delete(broker, topic_name):
    out = topics(broker, "--create", "--topic", topic_name, "--partitions", "3",
                 "--replication-factor", "1",
                 "--config", "retention.ms=-1", "--config", "segment.bytes=1048576").stdout
    assert f"Created topic {topic_name}." in out

    # Creating it again is refused with Kafka's message.
    dup = topics(broker, "--create", "--topic", topic_name, "--partitions", "3", check=False)
    assert dup.returncode != 0
    assert "already exists" in (dup.stdout + dup.stderr)

    assert topic_name in listed_topics(broker)

    header, parts = describe_lines(broker, topic_name)
    assert header is not None, "describe printed no topic line"
    assert header["Topic"] == topic_name
    assert header["PartitionCount"] == "3"
    assert header["ReplicationFactor"] == "1"
    configs = dict(kv.split("=", 1) for kv in header["Configs"].split(",") if kv)
    assert configs.get("retention.ms") == "-1"
    assert configs.get("segment.bytes") == "1048576"
    assert sorted(int(p["Partition"]) for p in parts) == [0, 1, 2]
    for p in parts:
        assert p["Topic"] == topic_name
        assert p["Leader"] == p["Replicas"] == p["Isr"], p
        assert p["Leader"] not in ("", "none", "-1"), p

    out = topics(broker, "--delete", "--topic", topic_name)
    assert out.returncode == 0
    wait_until(lambda: topic_name not in listed_topics(broker), timeout=30,
               what=f"{topic_name} to disappear from --list")


def test_topics_create_rejects_bad_input(broker, topic_name):
    bad_count = topics(broker, "--create", "--topic", topic_name, "--partitions", "0", check=False)
    assert bad_count.returncode != 0
    bad_config = topics(broker, "--create", "--topic", topic_name, "--partitions", "1",
                        "--config", "retention.ms=not-a-number", check=False)
    assert bad_config.returncode != 0
    assert "retention.ms" in (bad_config.stdout + bad_config.stderr)
    # One broker: a replication factor of 2 cannot be met.
    bad_rf = topics(broker, "--create", "--topic", topic_name, "--partitions", "1",
                    "--replication-factor", "2", check=False)
    assert bad_rf.returncode != 0
    assert "eplication factor" in (bad_rf.stdout + bad_rf.stderr)
    assert topic_name not in listed_topics(broker)


def test_topics_alter_adds_partitions(broker, topic_name):
    topics(broker, "--create", "--topic", topic_name, "--partitions", "2")
    topics(broker, "--alter", "--topic", topic_name, "--partitions", "5")
    header, parts = describe_lines(broker, topic_name)
    assert header["PartitionCount"] == "5"
    assert sorted(int(p["Partition"]) for p in parts) == [0, 1, 2, 3, 4]
    # Fewer partitions than now is refused.
    shrink = topics(broker, "--alter", "--topic", topic_name, "--partitions", "3", check=False)
    assert shrink.returncode != 0
    assert "partition" in (shrink.stdout + shrink.stderr).lower()


def test_console_producer_then_consumer_with_keys(broker, topic_name):
    topics(broker, "--create", "--topic", topic_name, "--partitions", "1")
    records = [(f"key-{i}", f"value {i} with spaces") for i in range(25)]
    records += [("k:colon", "v:with:colons"), ("unicode-ключ", "значение ✓")]
    # key.separator splits at the first ':' only, so "k:colon" would not round-trip as a key:
    # use '|' as the separator for the producer and '=>' for the consumer's output.
    lines = "".join(f"{k}|{v}\n" for k, v in records)
    reader, formatter = console_flags()["reader"], console_flags()["formatter"]
    kafka_tool("kafka-console-producer", "--bootstrap-server", broker.bootstrap,
               "--topic", topic_name, reader, "parse.key=true",
               reader, "key.separator=|", input=lines)

    out = kafka_tool("kafka-console-consumer", "--bootstrap-server", broker.bootstrap,
                     "--topic", topic_name, "--partition", "0", "--from-beginning",
                     formatter, "print.key=true", formatter, "key.separator==>",
                     "--max-messages", str(len(records)), "--timeout-ms", "30000")
    assert out.stdout.splitlines() == [f"{k}=>{v}" for k, v in records]
    assert f"Processed a total of {len(records)} messages" in out.stderr

    # Start from an explicit offset, and print offsets too.
    out = kafka_tool("kafka-console-consumer", "--bootstrap-server", broker.bootstrap,
                     "--topic", topic_name, "--partition", "0", "--offset", "20",
                     formatter, "print.offset=true", formatter, "print.key=true",
                     "--max-messages", "3", "--timeout-ms", "30000")
    assert out.stdout.splitlines() == [
        f"Offset:{i}\tkey-{i}\tvalue {i} with spaces" for i in range(20, 23)]


def produce_with_timestamps(broker, topic, counts, base_ts):
    """Produce counts[p] records to partition p; record i has timestamp base_ts + i*1000."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    errors = []
    for part, n in enumerate(counts):
        for i in range(n):
            p.produce(topic, key=f"k{i}", value=f"p{part}-{i}", partition=part,
                      timestamp=base_ts + i * 1000,
                      on_delivery=lambda err, msg: err and errors.append(err))
    assert p.flush(30) == 0
    assert errors == []


def offsets(broker, topic, *args):
    out = kafka_tool("kafka-get-offsets", "--bootstrap-server", broker.bootstrap,
                     "--topic", topic, *args).stdout
    return sorted(line for line in out.splitlines() if line.strip())


def test_get_offsets_latest_earliest_and_by_time(broker, topic_name):
    topics(broker, "--create", "--topic", topic_name, "--partitions", "3")
    base_ts = (int(time.time()) - 3600) * 1000
    produce_with_timestamps(broker, topic_name, [5, 0, 12], base_ts)

    assert offsets(broker, topic_name, "--time", "-1") == [
        f"{topic_name}:0:5", f"{topic_name}:1:0", f"{topic_name}:2:12"]
    assert offsets(broker, topic_name, "--time", "latest") == [
        f"{topic_name}:0:5", f"{topic_name}:1:0", f"{topic_name}:2:12"]
    assert offsets(broker, topic_name, "--time", "-2") == [
        f"{topic_name}:0:0", f"{topic_name}:1:0", f"{topic_name}:2:0"]
    # First offset whose timestamp is >= the one asked for: record 6 (base + 6000 ms).
    assert offsets(broker, topic_name, "--time", str(base_ts + 5500), "--partitions", "2") == [
        f"{topic_name}:2:6"]
    # -3: the offset of the record with the largest timestamp.
    assert offsets(broker, topic_name, "--time", "-3", "--partitions", "2") == [
        f"{topic_name}:2:11"]


def test_console_producer_fails_exactly_the_keyless_record(broker, topic_name):
    """KIP-467 with the Java producer: a batch holding one keyless record for a compacted topic
    is refused with that record named in record_errors, so the producer fails it with
    InvalidRecordException and the two keyed records of the batch as collateral ("part of a
    batch which had one more more invalid records", the Java client's wording)."""
    topics(broker, "--create", "--topic", topic_name, "--partitions", "1",
           "--config", "cleanup.policy=compact")
    out = kafka_tool("kafka-console-producer", "--bootstrap-server", broker.bootstrap,
                     "--topic", topic_name,
                     "--property", "parse.key=true", "--property", "key.separator=:",
                     "--property", "ignore.error=true",
                     "--producer-property", "linger.ms=2000",
                     "--producer-property", "enable.idempotence=false",
                     "--producer-property", "retries=0",
                     input="a:1\nnokey\nc:3\n", check=False)
    log = out.stdout + out.stderr
    failures = [line for line in log.splitlines()
                if line.startswith("org.apache.kafka.common.")]
    assert sorted(f.split(":")[0] for f in failures) == [
        "org.apache.kafka.common.InvalidRecordException",
        "org.apache.kafka.common.KafkaException",
        "org.apache.kafka.common.KafkaException",
    ], log
    assert sum("part of a batch which had one more more invalid records" in f
               for f in failures) == 2, log
