"""Dynamic broker configs with kafka-configs: per broker (--entity-name) and cluster-wide
(--entity-default), described with Kafka's sources, refused with Kafka's errors, applied to
topics at once (retention deletes old segments without a restart) and kept across a restart."""

import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from cairn_compat import kafka_tool, wait_until


def brokers(broker, *args, check=True):
    return kafka_tool("kafka-configs", "--bootstrap-server", broker.bootstrap,
                      "--entity-type", "brokers", *args, check=check)


def described(out):
    """{name: (value, rest of the line)} from `kafka-configs --describe` lines."""
    result = {}
    for line in out.splitlines():
        line = line.strip()
        if "=" in line and " sensitive=" in line:
            name, _, rest = line.partition("=")
            value, _, tail = rest.partition(" sensitive=")
            result[name] = (value, tail)
    return result


def earliest(broker, topic):
    out = kafka_tool("kafka-get-offsets", "--bootstrap-server", broker.bootstrap,
                     "--topic", topic, "--time", "-2").stdout.split()
    return int(out[0].rsplit(":", 1)[1])


def test_broker_configs_alter_describe_refuse_apply_and_survive_a_restart(broker_with, topic_name):
    b = broker_with({"log.retention.check.interval.ms": "200"})

    out = brokers(b, "--entity-default", "--alter", "--add-config", "log.retention.ms=3600000").stdout
    assert "Completed updating default config for brokers in the cluster." in out
    out = brokers(b, "--entity-name", "1", "--alter", "--add-config",
                  "max.connections=500,log.cleanup.policy=[delete,compact]").stdout
    assert "Completed updating config for broker 1." in out

    mine = described(brokers(b, "--entity-name", "1", "--describe").stdout)
    assert mine["max.connections"][0] == "500"
    assert "DYNAMIC_BROKER_CONFIG:max.connections=500" in mine["max.connections"][1]
    assert mine["log.cleanup.policy"][0] == "delete,compact"
    cluster = described(brokers(b, "--entity-default", "--describe").stdout)
    assert cluster == {"log.retention.ms": ("3600000", cluster["log.retention.ms"][1])}
    every = described(brokers(b, "--entity-name", "1", "--describe", "--all").stdout)
    assert every["log.retention.ms"][0] == "3600000"
    assert "DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=3600000" in every["log.retention.ms"][1]
    assert every["num.partitions"][0] == "1"

    # A topic without its own value inherits the new defaults, and says where they come from.
    # Tiny segments (below what kafka-topics' own check allows), so each record seals the last.
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(topic_name, 1, 1, config={"segment.bytes": "100"})])[
        topic_name].result(30)
    topic = described(kafka_tool("kafka-configs", "--bootstrap-server", b.bootstrap,
                                 "--entity-type", "topics", "--entity-name", topic_name,
                                 "--describe", "--all").stdout)
    assert topic["retention.ms"][0] == "3600000"
    assert "DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=3600000" in topic["retention.ms"][1]
    assert topic["cleanup.policy"][0] == "delete,compact"

    # Kafka's refusals.
    for config, words in [("log.dirs=/elsewhere", "Cannot update these configs dynamically"),
                          ("log.retention.hours=1", "Cannot update these configs dynamically"),
                          ("max.connections=0", "max.connections")]:
        bad = brokers(b, "--entity-name", "1", "--alter", "--add-config", config, check=False)
        assert bad.returncode != 0, config
        assert "InvalidRequestException" in bad.stdout + bad.stderr, bad.stdout + bad.stderr
        assert words in bad.stdout + bad.stderr, bad.stdout + bad.stderr

    # Applied live: a retention default of one byte deletes every sealed segment.
    brokers(b, "--entity-name", "1", "--alter", "--delete-config", "log.cleanup.policy")
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0})
    for i in range(5):
        p.produce(topic_name, value="x" * 100, timestamp=int(time.time() * 1000))
        assert p.flush(30) == 0
    assert earliest(b, topic_name) == 0
    brokers(b, "--entity-default", "--alter", "--add-config", "log.retention.bytes=1")
    wait_until(lambda: earliest(b, topic_name) >= 4, what="retention to follow the new default")

    b.restart()
    mine = described(brokers(b, "--entity-name", "1", "--describe").stdout)
    assert mine["max.connections"][0] == "500"
    assert "log.cleanup.policy" not in mine
    cluster = described(brokers(b, "--entity-default", "--describe").stdout)
    assert {k: v[0] for k, v in cluster.items()} == {"log.retention.ms": "3600000",
                                                     "log.retention.bytes": "1"}
