"""Operator tools that inspect a running broker: kafka-broker-api-versions and kafka-log-dirs."""

import json

from confluent_kafka import Producer

from cairn_compat import kafka_tool


def test_broker_api_versions_lists_usable_apis(broker):
    out = kafka_tool("kafka-broker-api-versions", "--bootstrap-server", broker.bootstrap).stdout
    assert f"{broker.bootstrap} (id: " in out, out
    for api in ("Produce", "Fetch", "ListOffsets", "Metadata", "ApiVersions", "CreateTopics"):
        line = next((seg for seg in out.split("\n") if seg.strip().startswith(api + "(")), None)
        assert line is not None, f"{api} missing from:\n{out}"
        assert "[usable:" in line and "UNSUPPORTED" not in line, line


def test_log_dirs_describes_partition_sizes(broker, topic_name):
    kafka_tool("kafka-topics", "--bootstrap-server", broker.bootstrap, "--create",
               "--topic", topic_name, "--partitions", "2")
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(100):
        p.produce(topic_name, value=b"x" * 100, partition=0)
    assert p.flush(30) == 0
    out = kafka_tool("kafka-log-dirs", "--bootstrap-server", broker.bootstrap, "--describe",
                     "--topic-list", topic_name).stdout
    doc = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    [b] = doc["brokers"]
    parts = {p["partition"]: p for d in b["logDirs"] for p in d["partitions"]}
    assert set(parts) == {f"{topic_name}-0", f"{topic_name}-1"}
    assert parts[f"{topic_name}-0"]["size"] > 100 * 100
    assert parts[f"{topic_name}-1"]["size"] == 0
