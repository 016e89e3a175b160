"""Consumer groups through Apache Kafka's own tools: the console consumer in a group, and
kafka-consumer-groups --list / --describe (lag) / --reset-offsets (every strategy, dry-run and
execute) / --delete-offsets / --delete. Committed offsets are cross-checked with a second
client (confluent-kafka's AdminClient), not only with the tool that wrote them."""

import csv
import datetime
import time

from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from cairn_compat import kafka_tool, wait_until

PARTITIONS = 3
PER_PARTITION = 10
MINUTE = 60_000


def groups_tool(broker, *args, check=True):
    return kafka_tool("kafka-consumer-groups", "--bootstrap-server", broker.bootstrap, *args,
                      check=check)


def table(out):
    """Parse the tool's tables (a header line starting with GROUP) into dicts. A row with a
    cell per column is split on whitespace; a row with an empty cell is cut at the header's
    column positions, so that the empty cell stays a cell."""
    rows, columns = [], None
    for line in out.splitlines():
        if not line.strip():
            continue
        if line.startswith("GROUP "):
            names = line.split()
            starts = [line.index(" " + n + " ") + 1 if i else 0 for i, n in
                      enumerate(names[:-1])] + [line.rindex(names[-1])]
            columns = list(zip(names, starts, starts[1:] + [None]))
            continue
        if columns and not line.startswith(("Consumer group", "Error", "Warning")):
            cells = line.split()
            if len(cells) == len(columns):  # values wider than a column shift the alignment
                rows.append({n: v for (n, _, _), v in zip(columns, cells)})
            else:
                rows.append({n: line[a:b].strip() for n, a, b in columns})
    return rows


def committed(broker, group, topic):
    """{partition: committed offset} as seen by another client (-1001 = none)."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(PARTITIONS)])
    res = admin.list_consumer_group_offsets([req])[group].result(timeout=30)
    return {tp.partition: tp.offset for tp in res.topic_partitions if tp.topic == topic}


def reset(broker, group, topic, *strategy, execute=True):
    out = groups_tool(broker, "--reset-offsets", "--group", group, "--topic", topic, *strategy,
                      "--execute" if execute else "--dry-run").stdout
    return {int(r["PARTITION"]): int(r["NEW-OFFSET"]) for r in table(out) if r["TOPIC"] == topic}


def test_console_consumer_group_then_every_offset_tool(broker, topic_name):
    topic, group = topic_name, f"group-{topic_name}"
    kafka_tool("kafka-topics", "--bootstrap-server", broker.bootstrap, "--create", "--topic", topic,
               "--partitions", str(PARTITIONS))
    # Record i of every partition has timestamp t0 + i * SPACING (10 minutes); t0 is 70 minutes
    # ago, so "15 minutes ago" falls between records 5 and 6 with 5 minutes to spare however slow
    # the tool runs before the --by-duration step are.
    spacing = 10 * MINUTE
    t0 = int(time.time() * 1000) - 5 * spacing - spacing // 2 - 15 * MINUTE
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for part in range(PARTITIONS):
        for i in range(PER_PARTITION):
            p.produce(topic, key=f"k{i}", value=f"p{part}-v{i}", partition=part,
                      timestamp=t0 + i * spacing)
    assert p.flush(30) == 0

    # 1. The console consumer in a group reads everything and commits on exit.
    total = PARTITIONS * PER_PARTITION
    out = kafka_tool("kafka-console-consumer", "--bootstrap-server", broker.bootstrap,
                     "--topic", topic, "--group", group, "--from-beginning",
                     "--max-messages", str(total), "--timeout-ms", "60000")
    assert sorted(out.stdout.splitlines()) == sorted(
        f"p{part}-v{i}" for part in range(PARTITIONS) for i in range(PER_PARTITION))
    assert committed(broker, group, topic) == {p: PER_PARTITION for p in range(PARTITIONS)}

    # 2. --list shows the group; --describe shows offsets and lag, also after new records.
    assert group in groups_tool(broker, "--list").stdout.split()
    p.produce(topic, key="late", value="late", partition=0, timestamp=t0 + 15 * MINUTE)
    assert p.flush(30) == 0
    described = groups_tool(broker, "--describe", "--group", group)
    rows = {int(r["PARTITION"]): r for r in table(described.stdout) if r["TOPIC"] == topic}
    assert sorted(rows) == [0, 1, 2]
    for part, r in rows.items():
        end = PER_PARTITION + (1 if part == 0 else 0)
        assert (int(r["CURRENT-OFFSET"]), int(r["LOG-END-OFFSET"]), int(r["LAG"])) == (
            PER_PARTITION, end, end - PER_PARTITION), r
    assert "has no active members" in described.stdout + described.stderr

    # 3. --reset-offsets: a dry run prints the plan and changes nothing.
    assert reset(broker, group, topic, "--to-earliest", execute=False) == {0: 0, 1: 0, 2: 0}
    assert committed(broker, group, topic) == {0: 10, 1: 10, 2: 10}

    assert reset(broker, group, topic, "--to-earliest") == {0: 0, 1: 0, 2: 0}
    assert committed(broker, group, topic) == {0: 0, 1: 0, 2: 0}

    assert reset(broker, group, topic, "--to-latest") == {0: 11, 1: 10, 2: 10}
    assert committed(broker, group, topic) == {0: 11, 1: 10, 2: 10}

    assert reset(broker, group, topic, "--to-offset", "3") == {0: 3, 1: 3, 2: 3}
    assert reset(broker, group, topic, "--shift-by", "-2") == {0: 1, 1: 1, 2: 1}
    # Shifting past the end is clamped to the log end offset.
    assert reset(broker, group, topic, "--shift-by", "100") == {0: 11, 1: 10, 2: 10}
    assert committed(broker, group, topic) == {0: 11, 1: 10, 2: 10}

    # --to-datetime: the first record at or after the time (UTC); 1 ms after record 3 -> 4.
    when = datetime.datetime.fromtimestamp((t0 + 3 * spacing + 1) / 1000, datetime.timezone.utc)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}"
    assert reset(broker, group, topic, "--to-datetime", stamp, execute=False) == {
        0: 4, 1: 4, 2: 4}
    assert reset(broker, group, topic, "--to-datetime", stamp) == {0: 4, 1: 4, 2: 4}
    assert committed(broker, group, topic) == {0: 4, 1: 4, 2: 4}

    # --by-duration: records newer than 15 minutes: from record 6 on (the late record in
    # partition 0 is older than that and comes after record 9 in offset order).
    assert reset(broker, group, topic, "--by-duration", "PT15M", execute=False) == {
        0: 6, 1: 6, 2: 6}
    assert reset(broker, group, topic, "--by-duration", "PT15M") == {0: 6, 1: 6, 2: 6}
    assert committed(broker, group, topic) == {0: 6, 1: 6, 2: 6}

    # 4. --delete-offsets removes the topic's offsets from the group.
    out = groups_tool(broker, "--delete-offsets", "--group", group, "--topic", topic).stdout
    assert "Successful" in out or "Deleted" in out or "successful" in out, out
    assert all(o < 0 for o in committed(broker, group, topic).values())

    # 5. --delete removes the group itself.
    groups_tool(broker, "--delete", "--group", group)
    wait_until(lambda: group not in groups_tool(broker, "--list").stdout.split(), timeout=30,
               what=f"{group} to disappear from --list")


def test_describe_active_member_and_reset_refused(broker, topic_name):
    """While a member is active, --describe shows it and --reset-offsets is refused."""
    from confluent_kafka import Consumer

    topic, group = topic_name, f"group-{topic_name}"
    kafka_tool("kafka-topics", "--bootstrap-server", broker.bootstrap, "--create", "--topic", topic,
               "--partitions", "2")
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                  "client.id": "compat-active-member", "auto.offset.reset": "earliest"})
    try:
        c.subscribe([topic])
        wait_until(lambda: (c.poll(0.2), len(c.assignment()) == 2)[1], timeout=60,
                   what="the member to be assigned both partitions")
        out = groups_tool(broker, "--describe", "--group", group).stdout
        rows = [r for r in table(out) if r["TOPIC"] == topic]
        assert sorted(int(r["PARTITION"]) for r in rows) == [0, 1]
        assert {r["CLIENT-ID"] for r in rows} == {"compat-active-member"}
        assert all(r["CONSUMER-ID"].startswith("compat-active-member") for r in rows)

        state = groups_tool(broker, "--describe", "--group", group, "--state").stdout
        assert "Stable" in state

        refused = groups_tool(broker, "--reset-offsets", "--group", group, "--topic", topic,
                              "--to-earliest", "--execute", check=False)
        assert "inactive" in (refused.stdout + refused.stderr), refused
    finally:
        c.close()


def test_describe_shows_member_host(broker, topic_name):
    """--describe --members shows where each member connects from, as Kafka does ("/ip")."""
    from confluent_kafka import Consumer

    topic, group = topic_name, f"group-{topic_name}"
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                  "client.id": "compat-host", "auto.offset.reset": "earliest",
                  "allow.auto.create.topics": True})
    try:
        kafka_tool("kafka-topics", "--bootstrap-server", broker.bootstrap, "--create",
                   "--topic", topic, "--partitions", "1")
        c.subscribe([topic])
        wait_until(lambda: (c.poll(0.2), len(c.assignment()) == 1)[1], timeout=60,
                   what="the member to be assigned the partition")
        out = groups_tool(broker, "--describe", "--group", group, "--members").stdout
        [row] = [r for r in table(out) if r["GROUP"] == group]
        assert row["CLIENT-ID"] == "compat-host"
        assert row["HOST"] == "/127.0.0.1", row
    finally:
        c.close()


def test_list_groups_by_state_and_describe_all(broker, topic_name):
    """--list --state filters by group state; --describe --all-groups covers every group."""
    from confluent_kafka import Consumer

    topic = topic_name
    kafka_tool("kafka-topics", "--bootstrap-server", broker.bootstrap, "--create", "--topic", topic,
               "--partitions", "1")
    empty_group, stable_group = f"empty-{topic}", f"stable-{topic}"
    # An Empty group: offsets committed with no member (generation -1 commit).
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": empty_group})
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    finally:
        c.close()
    member = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": stable_group,
                       "auto.offset.reset": "earliest"})
    try:
        member.subscribe([topic])
        wait_until(lambda: (member.poll(0.2), len(member.assignment()) == 1)[1], timeout=60,
                   what="the member to be assigned the partition")
        out = groups_tool(broker, "--list", "--state", "Stable,Empty").stdout
        states = {r["GROUP"]: r["STATE"] for r in table(out)}
        assert states.get(empty_group) == "Empty", out
        assert states.get(stable_group) == "Stable", out
        only_empty = groups_tool(broker, "--list", "--state", "Empty").stdout
        names = {r["GROUP"] for r in table(only_empty)}
        assert empty_group in names and stable_group not in names, only_empty

        out = groups_tool(broker, "--describe", "--all-groups").stdout
        described = {r["GROUP"] for r in table(out)}
        assert {empty_group, stable_group} <= described
    finally:
        member.close()


def test_reset_offsets_export_then_restore_from_file(broker, topic_name, tmp_path):
    """Save a group's offsets as CSV (--export), move them, then restore them (--from-file)."""
    from confluent_kafka import Consumer

    topic, group = topic_name, f"group-{topic_name}"
    kafka_tool("kafka-topics", "--bootstrap-server", broker.bootstrap, "--create", "--topic", topic,
               "--partitions", str(PARTITIONS))
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for part in range(PARTITIONS):
        for i in range(8):
            p.produce(topic, value=f"v{i}", partition=part)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 2), TopicPartition(topic, 1, 5),
                          TopicPartition(topic, 2, 8)], asynchronous=False)
    finally:
        c.close()

    out = groups_tool(broker, "--reset-offsets", "--group", group, "--topic", topic,
                      "--to-current", "--export", "--dry-run").stdout
    lines = [line for line in out.splitlines() if topic in line]
    rows = sorted(tuple(r) for r in csv.reader(lines))
    assert rows == [(topic, "0", "2"), (topic, "1", "5"), (topic, "2", "8")], out
    saved = tmp_path / "offsets.csv"
    saved.write_text("\n".join(lines) + "\n")

    reset(broker, group, topic, "--to-earliest")
    assert committed(broker, group, topic) == {0: 0, 1: 0, 2: 0}
    groups_tool(broker, "--reset-offsets", "--group", group, "--from-file", str(saved),
                "--execute")
    assert committed(broker, group, topic) == {0: 2, 1: 5, 2: 8}
