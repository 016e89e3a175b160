"""KIP-848 consumer groups through Apache Kafka's own tools: the console consumer with
`group.protocol=consumer`, and kafka-consumer-groups --list --type / --describe (offsets, members,
state) / --reset-offsets on a consumer-protocol group."""

import re
import subprocess

from confluent_kafka import Producer

from cairn_compat import SCRIPTS, kafka_tool, wait_until

# The minimums (45 s and 5 s by default) bound the defaults, so they are lowered too.
ENABLED = {"group.coordinator.rebalance.protocols": "classic,consumer",
           "group.consumer.heartbeat.interval.ms": "500",
           "group.consumer.min.session.timeout.ms": "6000",
           "group.consumer.min.heartbeat.interval.ms": "500"}
PARTITIONS = 3
PER_PARTITION = 10


def groups_tool(broker, *args, check=True):
    return kafka_tool("kafka-consumer-groups", "--bootstrap-server", broker.bootstrap, *args,
                      check=check)


def rows(out, key):
    """The tool's table rows that mention `key` (every table starts with a GROUP header). Rows
    with an empty cell (no host, no instance id) are cut at the header's column positions."""
    table, header = [], None
    for line in out.splitlines():
        cells = line.split()
        if cells[:1] == ["GROUP"]:
            header = [(name, line.index(name)) for name in cells]
        elif header and key in cells:
            if len(cells) == len(header):
                table.append({name: cell for (name, _), cell in zip(header, cells)})
            else:
                ends = [start for _, start in header[1:]] + [None]
                table.append({name: line[start:end].strip()
                              for (name, start), end in zip(header, ends)})
    return table


def setup_topic(broker, topic):
    kafka_tool("kafka-topics", "--bootstrap-server", broker.bootstrap, "--create", "--topic",
               topic, "--partitions", str(PARTITIONS))
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(PARTITIONS * PER_PARTITION):
        p.produce(topic, value=f"m{i}".encode(), partition=i % PARTITIONS)
    assert p.flush(30) == 0


def records(out):
    """The records the console consumer printed (newer tools also print deprecation notes)."""
    return sorted(line for line in out.split() if re.fullmatch(r"m[0-9]+", line))


def console_consumer(broker, topic, group, *extra, client_id="cli-member"):
    return ["kafka-console-consumer", "--bootstrap-server", broker.bootstrap, "--topic", topic,
            "--group", group, "--consumer-property", "group.protocol=consumer",
            "--consumer-property", f"client.id={client_id}", *extra]


def test_console_consumer_then_describe_list_and_reset(broker_with, topic_name):
    broker = broker_with(ENABLED)
    topic, group = topic_name, f"group-{topic_name}"
    setup_topic(broker, topic)
    total = PARTITIONS * PER_PARTITION
    out = kafka_tool(*console_consumer(broker, topic, group, "--from-beginning", "--max-messages",
                                       str(total), "--timeout-ms", "60000"), timeout=120).stdout
    assert records(out) == sorted(f"m{i}" for i in range(total))

    listed = groups_tool(broker, "--list", "--type", "consumer").stdout
    assert group in listed.split()
    assert group not in groups_tool(broker, "--list", "--type", "classic").stdout.split()

    described = rows(groups_tool(broker, "--describe", "--group", group).stdout, topic)
    assert {int(r["PARTITION"]): int(r["CURRENT-OFFSET"]) for r in described} == \
        {p: PER_PARTITION for p in range(PARTITIONS)}
    assert all(r["LAG"] == "0" for r in described)

    reset = groups_tool(broker, "--reset-offsets", "--group", group, "--topic", topic,
                        "--to-earliest", "--execute").stdout
    assert {int(r["PARTITION"]): int(r["NEW-OFFSET"]) for r in rows(reset, topic)} == \
        {p: 0 for p in range(PARTITIONS)}
    described = rows(groups_tool(broker, "--describe", "--group", group).stdout, topic)
    assert all(r["CURRENT-OFFSET"] == "0" for r in described)
    # The group reads everything again from the reset offsets.
    again = kafka_tool(*console_consumer(broker, topic, group, "--max-messages", str(total),
                                         "--timeout-ms", "60000"), timeout=120).stdout
    assert records(again) == sorted(f"m{i}" for i in range(total))


def test_describe_an_active_consumer_protocol_member(broker_with, topic_name):
    broker = broker_with(ENABLED)
    topic, group = topic_name, f"group-{topic_name}"
    setup_topic(broker, topic)
    member = subprocess.Popen([str(SCRIPTS / "kafka-tool"),
                               *console_consumer(broker, topic, group, "--from-beginning")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def assigned():
            out = groups_tool(broker, "--describe", "--group", group, "--members",
                              "--verbose", check=False).stdout
            return [r for r in rows(out, group) if r.get("CLIENT-ID") == "cli-member"
                    and r.get("#PARTITIONS") == str(PARTITIONS)]
        members = wait_until(assigned, timeout=90, interval=1, what="the member assigned")
        assert len(members) == 1
        assert members[0]["HOST"] == "/127.0.0.1"
        assert members[0]["CURRENT-ASSIGNMENT"] == members[0]["TARGET-ASSIGNMENT"] == \
            f"{topic}:" + ",".join(str(p) for p in range(PARTITIONS))
        state = groups_tool(broker, "--describe", "--group", group, "--state").stdout
        assert "Stable" in state and "uniform" in state, state
        refused = groups_tool(broker, "--reset-offsets", "--group", group, "--topic", topic,
                              "--to-earliest", "--execute", check=False)
        assert "inactive" in refused.stdout + refused.stderr, refused
    finally:
        member.terminate()
        try:
            member.wait(30)
        except subprocess.TimeoutExpired:
            member.kill()
            member.wait(10)
    # Once the member is gone the group is empty and resettable.
    wait_until(lambda: "Empty" in groups_tool(broker, "--describe", "--group", group,
                                              "--state").stdout,
               timeout=30, interval=0.5, what="the group to be empty")


def members_of(broker, group):
    """{client id: row} of the group's members, from --describe --members --verbose."""
    out = groups_tool(broker, "--describe", "--group", group, "--members", "--verbose",
                      check=False).stdout
    return {r["CLIENT-ID"]: r for r in rows(out, group)}


def test_partitions_added_a_member_killed_and_a_static_member_back(broker_with, topic_name):
    # The session timeout must outlast a console consumer JVM's start on a loaded machine: the
    # static member is away from its SIGTERM until the new JVM joins, and a timeout shorter than
    # that removes it (a new epoch, which is Kafka's behaviour too).
    broker = broker_with({**ENABLED, "group.consumer.session.timeout.ms": "20000"})
    topic, group = topic_name, f"group-{topic_name}"
    setup_topic(broker, topic)

    def start(name, *extra):
        cmd = console_consumer(broker, topic, group, *extra, client_id=name)
        return subprocess.Popen([str(SCRIPTS / "kafka-tool"), *cmd], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    def counts():
        return {name: int(r["#PARTITIONS"]) for name, r in members_of(broker, group).items()}

    static = start("static", "--consumer-property", "group.instance.id=static-1")
    other = start("other")
    try:
        wait_until(lambda: sorted(counts().values()) == [1, 2], timeout=60, interval=1,
                   what="three partitions split between the two members")
        kafka_tool("kafka-topics", "--bootstrap-server", broker.bootstrap, "--alter", "--topic",
                   topic, "--partitions", "6")
        wait_until(lambda: sorted(counts().values()) == [3, 3], timeout=60, interval=1,
                   what="six partitions split between the two members")
        other.kill()  # SIGKILL: no leave; the session timeout removes it
        other.wait(10)
        wait_until(lambda: counts() == {"static": 6}, timeout=60, interval=1,
                   what="the killed member's partitions given to the other")
        epoch = members_of(broker, group)["static"]["CURRENT-EPOCH"]
        static.terminate()  # a static member leaving for a while keeps its partitions
        static.wait(30)
        away = members_of(broker, group)
        assert away["static"]["CURRENT-EPOCH"] == "-2" and away["static"]["#PARTITIONS"] == "6"
        static = start("static", "--consumer-property", "group.instance.id=static-1")
        def returned():
            member = members_of(broker, group).get("static")
            return member if member and member["CURRENT-EPOCH"] != "-2" else None
        back = wait_until(returned, timeout=60, interval=1, what="the static member back")
        assert back["#PARTITIONS"] == "6"
        assert back["CURRENT-EPOCH"] == epoch, "the static member's return caused no rebalance"
    finally:
        for p in (static, other):
            if p.poll() is None:
                p.kill()
                p.wait(10)
