"""kcat (librdkafka's command-line client) against the broker under test:
metadata listing, keyed produce, exact consume, every compression codec, headers."""

import json

import pytest

from cairn_compat import kafka_tool, kcat, wait_until


def create_topic(broker, topic, partitions):
    kafka_tool("kafka-topics", "--bootstrap-server", broker.bootstrap, "--create",
               "--topic", topic, "--partitions", str(partitions), "--replication-factor", "1")


def metadata(broker, topic=None):
    args = ["-b", broker.bootstrap, "-L", "-J", "-m", "15"]
    if topic:
        args += ["-t", topic]
    return json.loads(kcat(*args).stdout)


def consume_all(broker, topic, fmt, *extra):
    """Consume the whole topic from the beginning and exit at its end (-e)."""
    return kcat("-b", broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q",
                "-f", fmt, *extra).stdout


def test_metadata_lists_broker_and_topic_partitions(broker, topic_name):
    create_topic(broker, topic_name, 3)
    md = wait_until(lambda: (m := metadata(broker, topic_name))["topics"]
                    and len(m["topics"][0]["partitions"]) == 3 and m,
                    what="3 partitions in metadata")
    assert [(b["id"], b["name"]) for b in md["brokers"]] == [(md["controllerid"], broker.bootstrap)]
    [t] = md["topics"]
    assert t["topic"] == topic_name
    assert "error" not in t
    parts = sorted(t["partitions"], key=lambda p: p["partition"])
    assert [p["partition"] for p in parts] == [0, 1, 2]
    for p in parts:
        assert p["leader"] == md["controllerid"]
        assert [r["id"] for r in p["replicas"]] == [p["leader"]]
        assert [r["id"] for r in p["isrs"]] == [p["leader"]]
    # A full listing (no -t) includes the topic too.
    assert topic_name in [t["topic"] for t in metadata(broker)["topics"]]


def test_produce_keyed_then_consume_exact(broker, topic_name):
    create_topic(broker, topic_name, 1)
    lines = [f"key-{i}:value {i} ünïcödé" for i in range(200)]
    kcat("-b", broker.bootstrap, "-P", "-t", topic_name, "-p", "0", "-K:",
         input="\n".join(lines) + "\n")
    out = consume_all(broker, topic_name, "%p|%o|%k|%s\n")
    got = out.splitlines()
    expected = [f"0|{i}|key-{i}|value {i} ünïcödé" for i in range(200)]
    assert got == expected


def test_produce_to_partitions_keeps_per_partition_order(broker, topic_name):
    create_topic(broker, topic_name, 3)
    for p in range(3):
        kcat("-b", broker.bootstrap, "-P", "-t", topic_name, "-p", str(p), "-K:",
             input="".join(f"p{p}k{i}:p{p}v{i}\n" for i in range(50)))
    out = consume_all(broker, topic_name, "%p %o %k %s\n")
    by_partition = {0: [], 1: [], 2: []}
    for line in out.splitlines():
        part, offset, key, value = line.split(" ")
        by_partition[int(part)].append((int(offset), key, value))
    for p in range(3):
        assert by_partition[p] == [(i, f"p{p}k{i}", f"p{p}v{i}") for i in range(50)]


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_compressed_produce_consume(broker, topic_name, codec):
    create_topic(broker, topic_name, 1)
    lines = [f"k{i}:{'x' * (i % 97)}-{i}" for i in range(1000)]
    kcat("-b", broker.bootstrap, "-P", "-t", topic_name, "-p", "0", "-K:", "-z", codec,
         input="\n".join(lines) + "\n")
    out = consume_all(broker, topic_name, "%o %k:%s\n")
    assert out.splitlines() == [f"{i} {line}" for i, line in enumerate(lines)]


def test_headers_round_trip(broker, topic_name):
    create_topic(broker, topic_name, 1)
    kcat("-b", broker.bootstrap, "-P", "-t", topic_name, "-p", "0",
         "-H", "trace=abc123", "-H", "source=kcat", input="payload\n")
    out = consume_all(broker, topic_name, "%h|%s\n")
    assert out.splitlines() == ["trace=abc123,source=kcat|payload"]


def test_consume_from_offset_and_end(broker, topic_name):
    create_topic(broker, topic_name, 1)
    kcat("-b", broker.bootstrap, "-P", "-t", topic_name, "-p", "0",
         input="".join(f"m{i}\n" for i in range(20)))
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic_name, "-p", "0", "-o", "15", "-e", "-q",
               "-f", "%o:%s\n").stdout
    assert out.splitlines() == [f"{i}:m{i}" for i in range(15, 20)]
    # A relative offset from the end: the last 3 records.
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic_name, "-p", "0", "-o", "-3", "-e", "-q",
               "-f", "%o:%s\n").stdout
    assert out.splitlines() == [f"{i}:m{i}" for i in range(17, 20)]
