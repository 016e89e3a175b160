"""KIP-848 consumer groups through Apache Kafka's own tools: the console consumer with
`group.protocol=consumer`, and kafka-consumer-groups --list --type / --describe (offsets, members,
state) / --reset-offsets on a consumer-protocol group."""

import subprocess

from confluent_kafka import Producer

from cairn_compat import SCRIPTS, kafka_tool, wait_until

ENABLED = {"group.coordinator.rebalance.protocols": "classic,consumer",
           "group.consumer.heartbeat.interval.ms": "500"}
PARTITIONS = 3
PER_PARTITION = 10


def groups_tool(broker, *args, check=True):
    return kafka_tool("kafka-consumer-groups", "--bootstrap-server", broker.bootstrap, *args,
                      check=check)


def rows(out, topic):
    """The tool's table rows for `topic` (every table starts with a GROUP header)."""
    table, header = [], None
    for line in out.splitlines():
        cells = line.split()
        if cells[:1] == ["GROUP"]:
            header = cells
        elif header and len(cells) == len(header) and topic in cells:
            table.append(dict(zip(header, cells)))
    return table


def setup_topic(broker, topic):
    kafka_tool("kafka-topics", "--bootstrap-server", broker.bootstrap, "--create", "--topic",
               topic, "--partitions", str(PARTITIONS))
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(PARTITIONS * PER_PARTITION):
        p.produce(topic, value=f"m{i}".encode(), partition=i % PARTITIONS)
    assert p.flush(30) == 0


def console_consumer(broker, topic, group, *extra):
    return ["kafka-console-consumer", "--bootstrap-server", broker.bootstrap, "--topic", topic,
            "--group", group, "--consumer-property", "group.protocol=consumer",
            "--consumer-property", "client.id=cli-member", *extra]


def test_console_consumer_then_describe_list_and_reset(broker_with, topic_name):
    broker = broker_with(ENABLED)
    topic, group = topic_name, f"group-{topic_name}"
    setup_topic(broker, topic)
    total = PARTITIONS * PER_PARTITION
    out = kafka_tool(*console_consumer(broker, topic, group, "--from-beginning", "--max-messages",
                                       str(total), "--timeout-ms", "60000"), timeout=120).stdout
    assert sorted(out.split()) == sorted(f"m{i}" for i in range(total))

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
    assert sorted(again.split()) == sorted(f"m{i}" for i in range(total))


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
