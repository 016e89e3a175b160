"""Kafka's own kafka-dump-log reads the broker's segment and index files after a clean stop:
the design aims at byte compatibility with Kafka's on-disk format (design.md), so an operator's
tool works on Cairn's data and a stopped Kafka log directory can be adopted."""

import re

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from cairn_compat import kafka_tool

RECORDS = 24_000
VALUE_PAD = "x" * 120


def test_dump_log_reads_segments_and_indexes(private_broker, topic_name):
    broker, topic = private_broker, topic_name
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    # Small segments (Kafka's minimum, 1 MiB), so that ~4 MiB of records roll a few times.
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                  config={"segment.bytes": "1048576"})],
                        operation_timeout=30)[topic].result(timeout=30)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, "batch.size": 16384,
                  "compression.type": "none"})
    for i in range(RECORDS):
        p.produce(topic, key=f"key-{i}", value=f"value-{i}-" + VALUE_PAD, partition=0,
                  timestamp=1_700_000_000_000 + i)
    assert p.flush(60) == 0
    del p  # no client left reconnecting while the broker is down
    broker.stop()
    assert broker.last_exit_code == 0

    [part_dir] = [d for d in broker.data_dir.rglob(f"{topic}-0") if d.is_dir()]
    logs = sorted(part_dir.glob("*.log"))
    assert len(logs) >= 2, f"expected the topic to roll at 1 MiB: {logs}"
    for f in part_dir.glob("*.log"):
        assert re.fullmatch(r"\d{20}\.log", f.name), f.name

    out = kafka_tool("kafka-dump-log", "--files", ",".join(map(str, logs)),
                     "--deep-iteration", "--print-data-log", timeout=180).stdout
    batches = [line for line in out.splitlines() if line.startswith("baseOffset:")]
    assert batches, out[:2000]
    assert all("isvalid: true" in b for b in batches), [b for b in batches if "isvalid: true" not in b][:3]
    records = re.findall(r"^\| offset: (\d+) .*? key: (\S+) payload: (\S+)$", out, re.M)
    assert [(int(o), k, v) for o, k, v in records] == [
        (i, f"key-{i}", f"value-{i}-" + VALUE_PAD) for i in range(RECORDS)]
    for name in (f.name for f in logs):
        assert f"Dumping {part_dir / name}" in out

    indexes = sorted(part_dir.glob("*.index")) + sorted(part_dir.glob("*.timeindex"))
    assert len(indexes) == 2 * len(logs), f"an offset and a time index per segment: {indexes}"
    out = kafka_tool("kafka-dump-log", "--files", ",".join(map(str, indexes)),
                     "--index-sanity-check", timeout=180).stdout
    for f in indexes:
        assert f"{f} passed sanity check." in out, out[:3000]
