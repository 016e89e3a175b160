"""Topic configuration with kafka-configs (alter / describe round trip, delete, validation)
and kafka-delete-records moving the log start offset, seen by kafka-get-offsets and kcat."""

import json

from confluent_kafka import Producer

from cairn_compat import kafka_tool, kcat


def configs(broker, topic, *args, check=True):
    return kafka_tool("kafka-configs", "--bootstrap-server", broker.bootstrap,
                      "--entity-type", "topics", "--entity-name", topic, *args, check=check)


def described(out):
    """{name: value} from `kafka-configs --describe` lines like '  name=value sensitive=...'."""
    result = {}
    for line in out.splitlines():
        line = line.strip()
        if "=" in line and " sensitive=" in line:
            name, _, rest = line.partition("=")
            result[name] = rest.split(" sensitive=")[0]
    return result


def test_configs_alter_describe_round_trip(broker, topic_name):
    kafka_tool("kafka-topics", "--bootstrap-server", broker.bootstrap, "--create",
               "--topic", topic_name, "--partitions", "1")
    out = configs(broker, topic_name, "--alter", "--add-config",
                  "retention.ms=86400000,cleanup.policy=compact,max.message.bytes=2000000").stdout
    assert f"Completed updating config for topic {topic_name}." in out

    dynamic = described(configs(broker, topic_name, "--describe").stdout)
    assert dynamic.get("retention.ms") == "86400000"
    assert dynamic.get("cleanup.policy") == "compact"
    assert dynamic.get("max.message.bytes") == "2000000"

    configs(broker, topic_name, "--alter", "--delete-config", "retention.ms")
    every = described(configs(broker, topic_name, "--describe", "--all").stdout)
    assert every.get("cleanup.policy") == "compact"
    assert every.get("retention.ms") == "604800000", "deleting an override restores the default"
    assert every.get("segment.bytes") == "1073741824"

    bad = configs(broker, topic_name, "--alter", "--add-config", "retention.ms=soon", check=False)
    assert bad.returncode != 0
    assert "retention.ms" in bad.stdout + bad.stderr


def test_delete_records_moves_log_start_offset(broker, topic_name, tmp_path):
    kafka_tool("kafka-topics", "--bootstrap-server", broker.bootstrap, "--create",
               "--topic", topic_name, "--partitions", "2")
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(10):
        p.produce(topic_name, key=f"k{i}", value=f"v{i}", partition=0)
        p.produce(topic_name, key=f"k{i}", value=f"w{i}", partition=1)
    assert p.flush(30) == 0

    plan = tmp_path / "delete.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": topic_name, "partition": 0, "offset": 4},
        {"topic": topic_name, "partition": 1, "offset": -1},  # -1: up to the high watermark
    ]}))
    out = kafka_tool("kafka-delete-records", "--bootstrap-server", broker.bootstrap,
                     "--offset-json-file", str(plan)).stdout
    assert f"partition: {topic_name}-0\tlow_watermark: 4" in out
    assert f"partition: {topic_name}-1\tlow_watermark: 10" in out

    earliest = kafka_tool("kafka-get-offsets", "--bootstrap-server", broker.bootstrap,
                          "--topic", topic_name, "--time", "-2").stdout.split()
    assert sorted(earliest) == [f"{topic_name}:0:4", f"{topic_name}:1:10"]

    # A consumer starting from the beginning now starts at offset 4.
    got = kcat("-b", broker.bootstrap, "-C", "-t", topic_name, "-p", "0", "-o", "beginning",
               "-e", "-q", "-f", "%o:%s\n").stdout.splitlines()
    assert got == [f"{i}:v{i}" for i in range(4, 10)]


def test_broker_configs_describe(broker):
    from confluent_kafka.admin import AdminClient

    broker_id = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(
        timeout=10).controller_id
    out = kafka_tool("kafka-configs", "--bootstrap-server", broker.bootstrap,
                     "--entity-type", "brokers", "--entity-name", str(broker_id),
                     "--describe", "--all").stdout
    every = described(out)
    assert f"All configs for broker {broker_id} are:" in out
    assert every.get("num.partitions") == "1"
    assert every.get("auto.create.topics.enable") == "true"
    assert every.get("log.retention.hours") == "168"
    assert every.get("log.segment.bytes") == "1073741824"
    assert every.get("log.cleanup.policy") == "delete"


def entity_configs(broker, entity_type, name, *args, check=True):
    return kafka_tool("kafka-configs", "--bootstrap-server", broker.bootstrap,
                      "--entity-type", entity_type, "--entity-name", name, *args, check=check)


def test_group_configs_alter_describe_and_bounds(broker):
    """KIP-848 group configs: set within Kafka's bounds, described as the group's own, refused
    outside them, deleted back to the broker default."""
    out = entity_configs(broker, "groups", "cfg-group", "--alter", "--add-config",
                         "consumer.session.timeout.ms=50000,consumer.heartbeat.interval.ms=6000").stdout
    assert "Completed updating config for group cfg-group." in out
    dynamic = described(entity_configs(broker, "groups", "cfg-group", "--describe").stdout)
    assert dynamic == {"consumer.session.timeout.ms": "50000",
                       "consumer.heartbeat.interval.ms": "6000"}

    bad = entity_configs(broker, "groups", "cfg-group", "--alter", "--add-config",
                         "consumer.session.timeout.ms=1000", check=False)
    assert bad.returncode != 0
    assert "InvalidConfigurationException" in bad.stdout + bad.stderr

    entity_configs(broker, "groups", "cfg-group", "--alter", "--delete-config",
                   "consumer.heartbeat.interval.ms")
    every = described(entity_configs(broker, "groups", "cfg-group", "--describe", "--all").stdout)
    assert every["consumer.session.timeout.ms"] == "50000"
    assert every["consumer.heartbeat.interval.ms"] == "5000"


def test_client_metrics_subscription_alter_describe(broker):
    """KIP-714 client-metrics subscriptions: stored and described (kafka-configs lists them with
    ListConfigResources first), an out-of-range push interval refused."""
    entity_configs(broker, "client-metrics", "cfg-sub", "--alter", "--add-config",
                   "interval.ms=1000,metrics=org.apache.kafka.producer.")
    dynamic = described(entity_configs(broker, "client-metrics", "cfg-sub", "--describe").stdout)
    assert dynamic == {"interval.ms": "1000", "metrics": "org.apache.kafka.producer."}

    bad = entity_configs(broker, "client-metrics", "cfg-sub", "--alter", "--add-config",
                         "interval.ms=10", check=False)
    assert bad.returncode != 0
    assert "interval.ms" in bad.stdout + bad.stderr
