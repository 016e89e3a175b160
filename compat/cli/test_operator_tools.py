"""Operator tools that inspect a running broker: kafka-broker-api-versions and kafka-log-dirs."""

import json
import urllib.request

from confluent_kafka import Producer

from cairn_compat import TARGET, free_port, kafka_tool


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


def requests_served(port: int, api: str) -> int:
    """How many requests of `api` the broker has answered, from Cairn's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    prefix = f'cairn_requests_total{{api="{api}"}} '
    return next((int(float(line[len(prefix):])) for line in text.splitlines()
                 if line.startswith(prefix)), 0)


def test_topics_describe_pages_with_describe_topic_partitions(broker_with, topic_name):
    """kafka-topics --describe (4.x) asks DescribeTopicPartitions, paging by the partition limit."""
    http_port = free_port()
    b = broker_with({"cairn.http.listen": f"127.0.0.1:{http_port}"} if TARGET == "cairn" else {})
    for suffix, partitions in (("a", 3), ("b", 2)):
        kafka_tool("kafka-topics", "--bootstrap-server", b.bootstrap, "--create",
                   "--topic", f"{topic_name}-{suffix}", "--partitions", str(partitions))
    before = requests_served(http_port, "DescribeTopicPartitions") if TARGET == "cairn" else 0
    # A page of two partitions: the tool follows the cursor through three pages.
    out = kafka_tool("kafka-topics", "--bootstrap-server", b.bootstrap, "--describe",
                     "--topic", f"{topic_name}-.*", "--partition-size-limit-per-response",
                     "2").stdout
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("Topic:")
            and "Partition:" in line]
    # The tool prints topics in its own order; each topic's partitions in order.
    seen = sorted((r[1], r[3]) for r in rows)
    assert seen == [(f"{topic_name}-a", "0"), (f"{topic_name}-a", "1"), (f"{topic_name}-a", "2"),
                    (f"{topic_name}-b", "0"), (f"{topic_name}-b", "1")], out
    assert "TopicId: " in out and "PartitionCount: 3" in out, out
    if TARGET == "cairn":
        assert requests_served(http_port, "DescribeTopicPartitions") - before >= 3
