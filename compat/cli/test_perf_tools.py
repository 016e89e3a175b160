"""Kafka's load tools run to completion against the broker under test (a smoke test with
small counts; the benchmarks proper live in scripts/bench*): kafka-producer-perf-test,
kafka-consumer-perf-test and the end-to-end latency tool."""

import re

from cairn_compat import kafka_tool

RECORDS = 20_000


def test_producer_then_consumer_perf_test(broker, topic_name):
    kafka_tool("kafka-topics", "--bootstrap-server", broker.bootstrap, "--create",
               "--topic", topic_name, "--partitions", "2")
    out = kafka_tool("kafka-producer-perf-test", "--topic", topic_name,
                     "--num-records", str(RECORDS), "--record-size", "200", "--throughput", "-1",
                     "--producer-props", f"bootstrap.servers={broker.bootstrap}", "acks=all",
                     "linger.ms=5", timeout=180).stdout
    # The final summary line: "20000 records sent, ... records/sec (... MB/sec), ... ms avg latency"
    assert re.search(rf"^{RECORDS} records sent, ", out, re.M), out
    assert "ERROR" not in out

    out = kafka_tool("kafka-consumer-perf-test", "--bootstrap-server", broker.bootstrap,
                     "--topic", topic_name, "--messages", str(RECORDS), "--timeout", "60000",
                     timeout=180)
    # CSV summary: start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, ...
    text = out.stdout
    header = next(line for line in text.splitlines() if "data.consumed.in.nMsg" in line)
    columns = [c.strip() for c in header.split(",")]
    rows = [line.split(",") for line in text.splitlines()
            if line.count(",") == header.count(",") and line != header]
    assert rows, text
    [row] = rows
    assert int(row[columns.index("data.consumed.in.nMsg")].strip()) == RECORDS, text


def test_end_to_end_latency(broker, topic_name):
    kafka_tool("kafka-topics", "--bootstrap-server", broker.bootstrap, "--create",
               "--topic", topic_name, "--partitions", "1")
    # Arguments: broker_list topic num_messages producer_acks message_size_bytes
    out = kafka_tool("kafka-e2e-latency", broker.bootstrap, topic_name, "500", "all", "100",
                     timeout=180).stdout
    assert re.search(r"Avg latency: [0-9.]+ ms", out), out
    assert re.search(r"Percentiles: 50th = \d+, 99th = \d+, 99.9th = \d+", out), out
