"""The client matrix: every client release listed in compat/versions runs one short core
scenario against the broker under test, each release its own test id (`kafka-4.4.0`,
`confluent-kafka-2.16.2`).

The scenario is what a user does first, checked the way a user would check it:
create and describe a topic, produce keyed records with an idempotent producer, consume exactly
those records in a consumer group that commits, see the group's offsets and lag, reset the group
to the earliest offsets, and consume the same records again from the reset position.

The Java releases run Apache Kafka's own tools of that release (scripts/kafka-tool with
KAFKA_VERSION), one JVM per step, so a release's client is what talks to the broker: a newer
client's handshake or request version that the broker mishandles fails here the day the release
is added (Kafka 4.4.0's console producer hung on its InitProducerId, fixed by d65d1e6).
"""

from __future__ import annotations

import os
import re
import struct
import time
from pathlib import Path

import pytest

from cairn_compat import SCRIPTS, console_flags, listed_versions, run_checked

PARTITIONS = 2
RECORDS = [(f"k{i}", f"v{i}") for i in range(8)]
KAFKA_RELEASES = listed_versions("kafka")
CONFLUENT_KAFKA_RELEASES = listed_versions("confluent-kafka")


# ---------------------------------------------------------------- Java tools of one release


class Tools:
    """Apache Kafka's CLI tools of one release, pointed at the broker under test."""

    def __init__(self, version: str, bootstrap: str):
        self.version = version
        self.bootstrap = bootstrap
        self.env = dict(os.environ, KAFKA_VERSION=version)
        self.flags = console_flags(version)  # each release's own names for its property flags

    def run(self, tool: str, *args: str, input: str | None = None, timeout: float = 60):
        return run_checked([str(SCRIPTS / "kafka-tool"), tool, "--bootstrap-server", self.bootstrap,
                            *args], input=input, timeout=timeout, env=self.env)

    def consume(self, topic: str, group: str, *args: str) -> list[tuple[int, int, str, str]]:
        """The console consumer in `group`, until len(RECORDS) records (or 30 s without them):
        [(partition, offset, key, value)] in the order printed."""
        fmt = []
        for prop in ("print.partition=true", "print.offset=true", "print.key=true"):
            fmt += [self.flags["formatter"], prop]
        out = self.run("kafka-console-consumer", "--topic", topic, "--group", group,
                       "--max-messages", str(len(RECORDS)), "--timeout-ms", "30000", *fmt, *args,
                       timeout=90)
        got = []
        for line in out.stdout.splitlines():
            m = re.fullmatch(r"Partition:(\d+)\tOffset:(\d+)\t(.*)\t(.*)", line)
            assert m, f"unexpected console consumer line {line!r} in:\n{out.stdout}\n{out.stderr}"
            got.append((int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)))
        assert f"Processed a total of {len(RECORDS)} messages" in out.stderr, out.stderr
        return got


def group_table(out: str) -> list[dict[str, str]]:
    """Rows of kafka-consumer-groups' table (header line starting with GROUP). Tokenised rather
    than split by line: 3.9's --reset-offsets prints its rows without line breaks."""
    head = re.search(r"^GROUP\s", out, re.MULTILINE)
    assert head, f"no table in:\n{out}"
    tokens = out[head.start():].split("Consumer group '")[0].split()
    # The header's names are upper case; the rows' group and topic names here are not.
    columns = []
    while tokens and re.fullmatch(r"[A-Z][A-Z-]*", tokens[0]):
        columns.append(tokens.pop(0))
    cells = tokens
    assert len(cells) % len(columns) == 0, f"ragged table:\n{out}"
    return [dict(zip(columns, cells[i:i + len(columns)]))
            for i in range(0, len(cells), len(columns))]


@pytest.mark.parametrize("version", KAFKA_RELEASES, ids=[f"kafka-{v}" for v in KAFKA_RELEASES])
def test_kafka_java_tools(broker, topic_name, version):
    tools = Tools(version, broker.bootstrap)
    topic, group = topic_name, f"group-{topic_name}"

    # 1. Admin: create, then describe.
    out = tools.run("kafka-topics", "--create", "--topic", topic, "--partitions", str(PARTITIONS),
                    "--replication-factor", "1").stdout
    assert f"Created topic {topic}." in out
    out = tools.run("kafka-topics", "--describe", "--topic", topic).stdout
    head = re.search(rf"^Topic: {re.escape(topic)}\tTopicId: \S+\tPartitionCount: (\d+)\t"
                     r"ReplicationFactor: (\d+)", out, re.MULTILINE)
    assert head and head.groups() == (str(PARTITIONS), "1"), out
    leaders = dict(re.findall(rf"\tTopic: {re.escape(topic)}\tPartition: (\d+)\tLeader: (\S+)",
                              out))
    assert set(leaders) == {str(p) for p in range(PARTITIONS)}, out
    assert all(leader.isdigit() for leader in leaders.values()), out

    # 2. The console producer: idempotent by default in every release here; acks=all explicit.
    lines = "".join(f"{k}:{v}\n" for k, v in RECORDS)
    reader = tools.flags["reader"]
    out = tools.run("kafka-console-producer", "--topic", topic, reader, "parse.key=true",
                    reader, "key.separator=:", tools.flags["producer"], "acks=all", input=lines)
    assert "Error when sending" not in out.stderr, out.stderr

    # 3. Consume exactly what was produced, in a group that commits when the consumer closes.
    first = tools.consume(topic, group, "--from-beginning")
    per_partition = check_exact_records(first)
    check_idempotent_batches(broker, topic, per_partition)

    # 4. The group's offsets and lag: everything committed, nothing left.
    out = tools.run("kafka-consumer-groups", "--describe", "--group", group).stdout
    rows = {int(r["PARTITION"]): r for r in group_table(out) if r["TOPIC"] == topic}
    assert set(rows) == set(range(PARTITIONS)), out
    for p, r in rows.items():
        n = len(per_partition.get(p, []))
        assert (r["CURRENT-OFFSET"], r["LOG-END-OFFSET"], r["LAG"]) == (str(n), str(n), "0"), out

    # 5. Reset the group to the earliest offsets.
    out = tools.run("kafka-consumer-groups", "--reset-offsets", "--group", group, "--topic", topic,
                    "--to-earliest", "--execute").stdout
    reset = {int(r["PARTITION"]): r["NEW-OFFSET"] for r in group_table(out) if r["TOPIC"] == topic}
    assert reset == {p: "0" for p in range(PARTITIONS)}, out

    # 6. The group consumes the same records again. No --from-beginning: the console consumer's
    #    auto.offset.reset is then "latest", so only the committed reset position yields records.
    again = tools.consume(topic, group)
    assert sorted(again) == sorted(first)


def check_exact_records(got: list[tuple[int, int, str, str]]) -> dict[int, list[tuple[str, str]]]:
    """Every record exactly once; each partition's offsets 0, 1, 2, ... with its records in the
    order produced; one key, one partition. Returns {partition: [(key, value)] by offset}."""
    assert sorted((k, v) for _, _, k, v in got) == sorted(RECORDS), got
    per_partition: dict[int, list[tuple[str, str]]] = {}
    for p, o, k, v in sorted(got):
        assert o == len(per_partition.setdefault(p, [])), f"partition {p} offsets: {sorted(got)}"
        per_partition[p].append((k, v))
    assert set(per_partition) <= set(range(PARTITIONS)), got
    for p, recs in per_partition.items():
        assert recs == [r for r in RECORDS if r in recs], f"partition {p} out of order: {recs}"
    return per_partition


# ---------------------------------------------------------------- the stored batches


def batches(partition_dir: Path) -> list[dict[str, int]]:
    """Headers of the record batches in a partition's segment files (Kafka's format, which
    Cairn stores as is): base offset, producer id and epoch, base sequence, record count."""
    found = []
    for seg in sorted(partition_dir.glob("*.log")):
        data = seg.read_bytes()
        pos = 0
        while pos + 61 <= len(data):
            base_offset, length = struct.unpack_from(">qi", data, pos)
            if length <= 0 or pos + 12 + length > len(data):
                break
            attributes, = struct.unpack_from(">h", data, pos + 21)
            producer_id, epoch, base_sequence, count = struct.unpack_from(">qhii", data, pos + 43)
            found.append({"base_offset": base_offset, "producer_id": producer_id,
                          "epoch": epoch, "base_sequence": base_sequence, "count": count,
                          "control": bool(attributes & 0x20)})
            pos += 12 + length
    return found


def check_idempotent_batches(broker, topic: str, per_partition: dict[int, list]) -> None:
    """The records were written by one idempotent producer: every batch carries the same
    producer id (assigned by the broker's InitProducerId) and sequences 0, 1, 2, ... per
    partition with no gap. The wire shows no producer id to a consumer (DescribeProducers shows
    only the latest batch), so this reads the segment files, as kafka-dump-log would."""
    if broker.kind == "external":
        return  # no access to an external broker's files; the records were checked above
    producer_ids = set()
    for p, recs in per_partition.items():
        found = wait_for_batches(broker.data_dir / f"{topic}-{p}", len(recs))
        next_sequence = 0
        for b in found:
            assert not b["control"] and b["producer_id"] >= 0 and b["epoch"] >= 0, found
            assert b["base_sequence"] == next_sequence, f"partition {p}: {found}"
            next_sequence += b["count"]
            producer_ids.add(b["producer_id"])
    assert len(producer_ids) == 1, f"batches from producer ids {producer_ids}"


def wait_for_batches(partition_dir: Path, records: int, timeout: float = 10.0) -> list[dict]:
    """A partition's batches once they hold `records` records (Kafka writes the segment file
    through the page cache, so what a consumer read is there, but allow for a slow write)."""
    deadline = time.monotonic() + timeout
    while True:
        found = batches(partition_dir)
        if sum(b["count"] for b in found) == records or time.monotonic() > deadline:
            assert sum(b["count"] for b in found) == records, f"{partition_dir}: {found}"
            return found
        time.sleep(0.1)


# ---------------------------------------------------------------- confluent-kafka (librdkafka)


@pytest.mark.parametrize("version", CONFLUENT_KAFKA_RELEASES,
                         ids=[f"confluent-kafka-{v}" for v in CONFLUENT_KAFKA_RELEASES])
def test_confluent_kafka(broker, topic_name, version):
    import confluent_kafka
    from confluent_kafka import (Consumer, ConsumerGroupState, ConsumerGroupTopicPartitions,
                                 Producer, TopicCollection, TopicPartition)
    from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

    # One installed release can run; scripts/test's deps step installs the one listed.
    installed = confluent_kafka.__version__
    assert installed == version, (f"confluent-kafka {installed} is installed, compat/versions "
                                  f"lists {version}: run scripts/test deps")
    topic, group = topic_name, f"group-{topic_name}"
    conf = {"bootstrap.servers": broker.bootstrap}
    admin = AdminClient(conf)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]

    # 1. Admin: create, then describe.
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)],
                        operation_timeout=30)[topic].result(timeout=30)
    desc = admin.describe_topics(TopicCollection([topic]))[topic].result(timeout=30)
    assert [p.id for p in desc.partitions] == list(range(PARTITIONS))
    assert all(p.leader is not None and p.leader.id >= 0 for p in desc.partitions)

    # 2. An idempotent producer (librdkafka's default is off: turn it on, as users do).
    delivered = []
    producer = Producer({**conf, "enable.idempotence": True, "linger.ms": 5})
    for k, v in RECORDS:
        producer.produce(topic, key=k, value=v,
                         on_delivery=lambda err, m: delivered.append((err, m)))
    assert producer.flush(30) == 0
    assert [err for err, _ in delivered] == [None] * len(RECORDS)
    written = sorted((m.partition(), m.offset(), m.key().decode(), m.value().decode())
                     for _, m in delivered)

    # 3. Consume exactly that in a group, and commit.
    def consume(reset: str) -> list[tuple[int, int, str, str]]:
        c = Consumer({**conf, "group.id": group, "auto.offset.reset": reset,
                      "enable.auto.commit": False})
        got = []
        try:
            c.subscribe([topic])
            deadline = time.monotonic() + 30
            while len(got) < len(RECORDS) and time.monotonic() < deadline:
                for m in c.consume(num_messages=100, timeout=0.5):
                    assert m.error() is None, m.error()
                    got.append((m.partition(), m.offset(), m.key().decode(), m.value().decode()))
            c.commit(asynchronous=False)
        finally:
            c.close()
        return sorted(got)

    first = consume("earliest")
    assert first == written
    per_partition = check_exact_records(first)
    check_idempotent_batches(broker, topic, per_partition)

    # 4. The group's offsets and lag, as kafka-consumer-groups --describe computes them.
    def committed() -> dict[int, int]:
        res = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, tps)])[group].result(timeout=30)
        return {tp.partition: tp.offset for tp in res.topic_partitions}

    ends = {tp.partition: r.offset for tp, r in
            ((tp, admin.list_offsets({tp: OffsetSpec.latest()})[tp].result(timeout=30))
             for tp in tps)}
    expected_ends = {p: len(per_partition.get(p, [])) for p in range(PARTITIONS)}
    assert ends == expected_ends
    assert committed() == expected_ends  # lag 0 on every partition
    state = admin.describe_consumer_groups([group])[group].result(timeout=30).state
    assert state == ConsumerGroupState.EMPTY

    # 5. Reset the group to the earliest offsets.
    earliest = {tp.partition: admin.list_offsets({tp: OffsetSpec.earliest()})[tp].result(
        timeout=30).offset for tp in tps}
    assert earliest == {p: 0 for p in range(PARTITIONS)}
    admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p, o) for p, o in earliest.items()])])[group].result(
        timeout=30)
    assert committed() == earliest

    # 6. Consume again from the reset position ("latest" would find nothing without it).
    assert consume("latest") == written
