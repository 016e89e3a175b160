"""Issue 17 end to end: compacted topics as a key-value store over the HTTP listener.

confluent-kafka (librdkafka's partitioner) and the Java console producer (`parse.key=true`,
Java's murmur2 partitioner) write keys; `urllib` looks them up on every partition, in batches
and raw; bad input gets 400/404/409; a snapshot taken while a producer runs, followed by a
consumer from its hand-off offsets, equals the final latest-value map; lookups survive a clean
restart and a kill -9."""

import base64
import json
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cairn_compat import TARGET, console_flags, free_port, kafka_tool

pytestmark = pytest.mark.skipif(TARGET != "cairn", reason="Cairn's own HTTP key lookups")

FAST_CLEANING = {
    "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "100",
}


@pytest.fixture
def keys_broker(broker_with):
    port = free_port()
    b = broker_with({"cairn.http.listen": f"127.0.0.1:{port}", "log.cleaner.backoff.ms": "100"})
    b.http = f"http://127.0.0.1:{port}"
    return b


def create_topic(broker, topic, partitions, config):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1,
                                  config=config)], operation_timeout=30)[topic].result(timeout=30)


def http(broker, path, body=None, accept=None, timeout=30):
    """(status, headers, body bytes) of one request."""
    req = urllib.request.Request(broker.http + path, data=body,
                                 method="POST" if body is not None else "GET")
    if accept:
        req.add_header("Accept", accept)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def lookup(broker, topic, key: bytes, extra=""):
    path = f"/v1/topics/{topic}/keys/{urllib.parse.quote(key, safe='')}{extra}"
    status, _, body = http(broker, path)
    return status, json.loads(body)


def test_lookups_batch_get_and_bad_input(keys_broker, topic_name):
    b = keys_broker
    create_topic(b, topic_name, 3, {"cleanup.policy": "compact"})
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 5})
    latest = {}
    for version in range(3):
        for i in range(60):
            key, value = f"key/{i} é".encode(), f"value-{i}-{version}".encode()
            p.produce(topic_name, key=key, value=value, headers=[("h", b"x")])
            latest[key] = value
    for i in range(5):
        p.produce(topic_name, key=f"key/{i} é".encode(), value=None)
        latest.pop(f"key/{i} é".encode())
    binary = b"\xff\x00\xfe"
    p.produce(topic_name, key=binary, value=b"\xff\x01")
    assert p.flush(30) == 0

    # acks=all: every acknowledged write is visible to the next lookup, on whatever partition.
    for i in range(60):
        key = f"key/{i} é".encode()
        status, body = lookup(b, topic_name, key)
        if key in latest:
            assert status == 200, body
            assert body["value"] == latest[key].decode()
            assert body["value_encoding"] == "utf8"
            assert body["key"] == key.decode()
            assert body["headers"] == [{"key": "h", "value": "x", "value_encoding": "utf8"}]
            assert body["partition"] in (0, 1, 2) and body["offset"] >= 0
            # Narrowed to its partition it is found; on another it is not.
            status, _ = lookup(b, topic_name, key, f"?partition={body['partition']}")
            assert status == 200
            other = (body["partition"] + 1) % 3
            assert lookup(b, topic_name, key, f"?partition={other}")[0] == 404
        else:
            assert status == 404, f"tombstoned {key!r}: {body}"
    assert lookup(b, topic_name, b"never-written")[0] == 404

    # Binary keys by base64; the value raw with Accept: application/octet-stream.
    q = urllib.parse.quote(base64.b64encode(binary).decode())
    status, headers, raw = http(b, f"/v1/topics/{topic_name}/keys?key_base64={q}",
                                accept="application/octet-stream")
    assert status == 200 and raw == b"\xff\x01"
    assert headers["Content-Type"] == "application/octet-stream"
    assert int(headers["X-Cairn-Offset"]) >= 0
    status, _, body = http(b, f"/v1/topics/{topic_name}/keys?key_base64={q}")
    assert status == 200
    assert json.loads(body)["value"] == base64.b64encode(b"\xff\x01").decode()
    assert json.loads(body)["value_encoding"] == "base64"
    assert json.loads(body)["key_encoding"] == "base64"

    # batchGet.
    keys = [f"key/{i} é" for i in (0, 7, 59)] + ["nope"]
    status, _, body = http(b, f"/v1/topics/{topic_name}/keys:batchGet",
                           body=json.dumps({"keys": keys,
                                            "keys_base64": [base64.b64encode(binary).decode()]}
                                           ).encode())
    assert status == 200, body
    results = json.loads(body)["results"]
    assert [r["found"] for r in results] == [False, True, True, False, True]
    assert results[1]["value"] == latest["key/7 é".encode()].decode()

    # Bad input.
    assert lookup(b, "no-such-topic", b"k")[0] == 404
    plain = topic_name + "-plain"
    create_topic(b, plain, 1, {})
    status, body = lookup(b, plain, b"k")
    assert status == 409 and "compact" in body["error"]
    assert lookup(b, topic_name, b"x" * 5000)[0] == 400
    assert http(b, f"/v1/topics/{topic_name}/keys?key_base64=!!!")[0] == 400
    too_many = json.dumps({"keys": [str(i) for i in range(1001)]}).encode()
    assert http(b, f"/v1/topics/{topic_name}/keys:batchGet", body=too_many)[0] == 400
    assert http(b, f"/v1/topics/{topic_name}/keys:batchGet", body=b"{not json")[0] == 400
    assert lookup(b, topic_name, b"k", "?partition=7")[0] == 404
    assert http(b, f"/v1/topics/{topic_name}/snapshot?as_of=0:999999")[0] == 400

    # A non-compacted topic with cairn.key.index.enable=true is indexed.
    flagged = topic_name + "-flagged"
    create_topic(b, flagged, 1, {"cairn.key.index.enable": "true"})
    p.produce(flagged, key=b"a", value=b"1")
    p.produce(flagged, key=b"a", value=b"2")
    assert p.flush(30) == 0
    status, body = lookup(b, flagged, b"a")
    assert status == 200 and body["value"] == "2"

    # A clean restart, then a kill -9: lookups answer the same.
    for crash in (False, True):
        if crash:
            b.proc.kill()
            b.proc.wait(10)
            b.proc = None
        else:
            b.stop()
        b.start()
        for i in (0, 4, 5, 30, 59):
            key = f"key/{i} é".encode()
            status, body = lookup(b, topic_name, key)
            if key in latest:
                assert status == 200 and body["value"] == latest[key].decode()
            else:
                assert status == 404


def test_keys_from_the_java_console_producer(keys_broker, topic_name):
    b = keys_broker
    create_topic(b, topic_name, 3, {"cleanup.policy": "compact"})
    reader = console_flags()["reader"]
    lines = "".join(f"jkey-{i}:first-{i}\n" for i in range(30))
    lines += "".join(f"jkey-{i}:second-{i}\n" for i in range(0, 30, 2))
    kafka_tool("kafka-console-producer", "--bootstrap-server", b.bootstrap, "--topic", topic_name,
               reader, "parse.key=true", reader, "key.separator=:", input=lines)
    partitions_used = set()
    for i in range(30):
        status, body = lookup(b, topic_name, f"jkey-{i}".encode())
        assert status == 200, body
        assert body["value"] == (f"second-{i}" if i % 2 == 0 else f"first-{i}")
        partitions_used.add(body["partition"])
        hits = [lookup(b, topic_name, f"jkey-{i}".encode(), f"?partition={n}")[0]
                for n in range(3)]
        assert sorted(hits) == [200, 404, 404], hits
    assert len(partitions_used) > 1, "Java's partitioner spread 30 keys over 3 partitions"


def read_snapshot(b, topic):
    """(latest-value map, hand-off offsets) from a streamed snapshot."""
    req = urllib.request.Request(b.http + f"/v1/topics/{topic}/snapshot")
    state, end = {}, None
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.headers["Content-Type"] == "application/x-ndjson"
        for line in r:
            item = json.loads(line)
            assert "error" not in item, item
            assert end is None, "nothing after the end line"
            if item.get("end"):
                end = {o["partition"]: o["offset"] for o in item["offsets"]}
                continue
            assert item["key"] not in state, f"key {item['key']} twice in the snapshot"
            state[item["key"]] = item["value"]
    assert end is not None, "the snapshot ended with its offsets"
    return state, end


def test_snapshot_while_producing_then_follow(keys_broker, topic_name):
    b = keys_broker
    # Tombstones stay for 10 minutes: a consumer must catch up within delete.retention.ms to
    # see deletes (Kafka's contract), and this one starts after the snapshot.
    create_topic(b, topic_name, 2, {"cleanup.policy": "compact", **FAST_CLEANING,
                                    "delete.retention.ms": "600000"})
    final = {}
    stop = threading.Event()

    def produce():
        p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all",
                      "enable.idempotence": True, "linger.ms": 2})
        rnd = random.Random(17)
        n = 0
        while not stop.is_set() or n < 3000:
            key = f"k{rnd.randrange(300)}"
            if rnd.random() < 0.1:
                p.produce(topic_name, key=key.encode(), value=None)
                final.pop(key, None)
            else:
                value = f"v{n}"
                p.produce(topic_name, key=key.encode(), value=value.encode())
                final[key] = value
            n += 1
            if n % 200 == 0:
                p.poll(0)
                time.sleep(0.01)
        assert p.flush(30) == 0

    t = threading.Thread(target=produce)
    t.start()
    time.sleep(1.5)
    snapshot, offsets = read_snapshot(b, topic_name)
    stop.set()
    t.join(60)
    assert not t.is_alive()

    # Follow from the hand-off offsets to the end: the result is the final map, exactly.
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "keys-follow",
                  "enable.auto.commit": False})
    try:
        highs = {p: c.get_watermark_offsets(TopicPartition(topic_name, p), timeout=10)[1]
                 for p in offsets}
        c.assign([TopicPartition(topic_name, p, o) for p, o in offsets.items()])
        # Taken mid-stream: the snapshot holds records and the consumer has more to read.
        assert snapshot and sum(offsets.values()) > 0
        assert any(offsets[p] < highs[p] for p in offsets), (offsets, highs)
        state = dict(snapshot)
        done = {p for p in offsets if offsets[p] >= highs[p]}
        deadline = time.monotonic() + 60
        while len(done) < len(offsets) and time.monotonic() < deadline:
            for m in c.consume(num_messages=5000, timeout=0.5):
                assert m.error() is None, m.error()
                if m.value() is None:
                    state.pop(m.key().decode(), None)
                else:
                    state[m.key().decode()] = m.value().decode()
                if m.offset() >= highs[m.partition()] - 1:
                    done.add(m.partition())
        assert len(done) == len(offsets), "the consumer reached the high watermarks"
    finally:
        c.close()
    diff = {k: (state.get(k), final.get(k), snapshot.get(k)) for k in set(state) | set(final)
            if state.get(k) != final.get(k)}
    assert state == final, (diff, offsets, highs)

    # A snapshot now is the final map, and so is every lookup.
    now, _ = read_snapshot(b, topic_name)
    assert now == final
    for key in random.Random(3).sample(sorted(set(final) | {f"k{i}" for i in range(300)}), 40):
        status, body = lookup(b, topic_name, key.encode())
        if key in final:
            assert status == 200 and body["value"] == final[key]
        else:
            assert status == 404


def test_only_committed_records_with_transactions(keys_broker, topic_name):
    """Lookups, batchGet and snapshots read committed records only: a committed transaction's
    writes appear at its commit, an aborted one's never (a key whose newest record was aborted
    answers its previous committed value), and an open one holds back every later record (the
    last stable offset), through segment rolls, key files and a restart."""
    b = keys_broker
    # Rolls often so the phases land in sealed segments answered through key files; nothing is
    # cleaned (min.compaction.lag.ms) so every record stays where it was written.
    create_topic(b, topic_name, 1, {"cleanup.policy": "compact", "segment.ms": "100",
                                    "min.compaction.lag.ms": "3600000"})
    plain = Producer({"bootstrap.servers": b.bootstrap, "acks": "all"})

    def transactional(tid):
        p = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": tid})
        p.init_transactions(30)
        return p

    def values(keys):
        status, _, body = http(b, f"/v1/topics/{topic_name}/keys:batchGet",
                               body=json.dumps({"keys": keys}).encode())
        assert status == 200, body
        return [r["value"] if r["found"] else None for r in json.loads(body)["results"]]

    def expect(model):
        for key, value in model.items():
            status, body = lookup(b, topic_name, key.encode())
            if value is None:
                assert status == 404, f"{key}: {body}"
            else:
                assert status == 200 and body["value"] == value, f"{key}: {body}"
        assert values(list(model)) == list(model.values())

    for k in ("k1", "k2", "k3"):
        plain.produce(topic_name, key=k.encode(), value=f"{k}-v0".encode())
    assert plain.flush(30) == 0
    time.sleep(0.3)

    committing = transactional(topic_name + "-commit")
    committing.begin_transaction()
    committing.produce(topic_name, key=b"k1", value=b"k1-committed")
    committing.produce(topic_name, key=b"k4", value=b"k4-committed")
    committing.commit_transaction(30)
    time.sleep(0.3)

    aborting = transactional(topic_name + "-abort")
    aborting.begin_transaction()
    aborting.produce(topic_name, key=b"k2", value=b"k2-aborted")
    aborting.produce(topic_name, key=b"k5", value=b"k5-aborted")
    aborting.produce(topic_name, key=b"k1", value=None)
    aborting.flush(30)
    aborting.abort_transaction(30)
    time.sleep(0.3)
    plain.produce(topic_name, key=b"k0", value=b"k0-after-abort")
    assert plain.flush(30) == 0

    model = {"k0": "k0-after-abort", "k1": "k1-committed", "k2": "k2-v0", "k3": "k3-v0",
             "k4": "k4-committed", "k5": None}
    expect(model)
    # Key files written by this broker, then read back from disk after a restart.
    b.stop()
    b.start()
    expect(model)
    state, _ = read_snapshot(b, topic_name)
    assert state == {k: v for k, v in model.items() if v is not None}

    # An open transaction: neither its records nor any record after its first is visible.
    time.sleep(0.3)
    plain = Producer({"bootstrap.servers": b.bootstrap, "acks": "all"})
    opened = transactional(topic_name + "-open")
    opened.begin_transaction()
    opened.produce(topic_name, key=b"k3", value=b"k3-open")
    opened.flush(30)
    plain.produce(topic_name, key=b"k6", value=b"k6-behind-the-open-txn")
    assert plain.flush(30) == 0
    expect({**model, "k6": None})
    state, offsets = read_snapshot(b, topic_name)
    assert state == {k: v for k, v in model.items() if v is not None}
    status, _, _ = http(b, f"/v1/topics/{topic_name}/snapshot?as_of=0:{offsets[0] + 1}")
    assert status == 400, "as_of past the last stable offset"

    # At commit both appear; the snapshot's hand-off, followed read_committed, gives the rest.
    opened.commit_transaction(30)
    model.update({"k3": "k3-open", "k6": "k6-behind-the-open-txn"})
    expect(model)
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "keys-txn-follow",
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic_name, 0, offsets[0])])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(
                state.get(k) == v for k, v in model.items() if v is not None):
            for m in c.consume(num_messages=100, timeout=0.5):
                assert m.error() is None, m.error()
                if m.value() is None:
                    state.pop(m.key().decode(), None)
                else:
                    state[m.key().decode()] = m.value().decode()
    finally:
        c.close()
    assert state == {k: v for k, v in model.items() if v is not None}


def anon_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise AssertionError("no RssAnon in /proc/PID/status")


def test_a_stalled_snapshot_reader_is_cut_with_bounded_memory(keys_broker, topic_name):
    """A reader that stops reading holds at most a few chunks in the broker (the snapshot
    thread waits on a small channel), and the connection is cut after the idle limit (30 s),
    without the end line; the broker then answers as before."""
    import socket

    b = keys_broker
    create_topic(b, topic_name, 1, {"cleanup.policy": "compact"})
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 20,
                  "compression.type": "lz4"})
    value = "x" * 2000
    keys = 25000
    for i in range(keys):
        p.produce(topic_name, key=f"key-{i}".encode(), value=f"{i}-{value}".encode())
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    full_size = keys * len(value)  # at least this many bytes of NDJSON

    s = socket.create_connection(("127.0.0.1", int(b.http.rsplit(":", 1)[1])))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.sendall(f"GET /v1/topics/{topic_name}/snapshot HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    received = s.recv(64 * 1024)
    assert b"200 OK" in received.split(b"\r\n", 1)[0], received[:200]
    time.sleep(5)
    before = anon_rss_kib(b.proc.pid)
    # Stalled past the idle limit.
    time.sleep(32)
    grown_kib = anon_rss_kib(b.proc.pid) - before
    assert grown_kib < 16 * 1024, f"the broker grew {grown_kib} KiB for a stalled reader"
    s.settimeout(10)
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        received += chunk
    s.close()
    assert b'"end":true' not in received, "the stalled snapshot was cut, not finished"
    assert len(received) < full_size // 2, (len(received), full_size)
    # The broker serves on.
    status, body = lookup(b, topic_name, b"key-7")
    assert status == 200 and body["value"].startswith("7-")


def test_lookups_and_snapshots_answer_from_segments_only_the_tier_holds(broker_with, topic_name,
                                                                        tmp_path):
    """A tiered compacted topic whose old segments local retention deleted (they live only in
    the bucket, a file:// store here): lookups and a snapshot still agree with a model, aborted
    transactions in the tier included, and tombstones there stay 404."""
    port = free_port()
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    b = broker_with({"cairn.http.listen": f"127.0.0.1:{port}",
                     "remote.log.storage.system.enable": "true",
                     "cairn.remote.storage.url": f"file://{bucket}",
                     "cairn.remote.upload.interval.ms": "1000",
                     "log.retention.check.interval.ms": "300"})
    b.http = f"http://127.0.0.1:{port}"
    create_topic(b, topic_name, 1, {"cleanup.policy": "compact,delete",
                                    "remote.storage.enable": "true", "segment.bytes": "2000",
                                    "retention.ms": "-1", "retention.bytes": "-1",
                                    "local.retention.bytes": "1",
                                    "delete.retention.ms": "600000"})
    model = {}
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 0})
    rnd = random.Random(5)
    # Round 0 writes every key; later rounds overwrite or delete some. Keys only round 0 wrote
    # end up in segments only the tier holds.
    for rnd_no in range(4):
        for i in range(150):
            key = f"tk{i}"
            if rnd_no and rnd.random() < 0.6:
                continue
            if rnd_no and rnd.random() < 0.15:
                p.produce(topic_name, key=key.encode(), value=None)
                model.pop(key, None)
            else:
                value = f"value-{i}-{rnd_no}-" + "x" * 20
                p.produce(topic_name, key=key.encode(), value=value.encode())
                model[key] = value
            p.poll(0)
        assert p.flush(30) == 0
        if rnd_no == 1:
            # An aborted transaction: its writes never stand for their keys.
            t = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": "tier-keys"})
            t.init_transactions(30)
            t.begin_transaction()
            for i in range(0, 150, 7):
                t.produce(topic_name, key=f"tk{i}".encode(), value=b"aborted")
            t.flush(30)
            t.abort_transaction(30)
            t.begin_transaction()
            for i in range(3, 150, 11):
                value = f"committed-{i}"
                t.produce(topic_name, key=f"tk{i}".encode(), value=value.encode())
                model[f"tk{i}"] = value
            t.commit_transaction(30)
    end = {}
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "tier-keys"})
    try:
        end = c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10)[1]
    finally:
        c.close()

    # Wait until local retention left only the newest segments locally.
    def local_bases():
        return sorted(int(f.stem) for f in (b.data_dir / f"{topic_name}-0").glob("*.log"))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (not local_bases() or local_bases()[0] < end // 2):
        time.sleep(0.5)
    assert local_bases() and local_bases()[0] >= end // 2, (local_bases(), end)

    def check_lookups():
        for i in range(150):
            key = f"tk{i}"
            status, body = lookup(b, topic_name, key.encode())
            if key in model:
                assert status == 200, (key, body)
                assert body["value"] == model[key], (key, body)
            else:
                assert status == 404, (key, body)

    check_lookups()
    # Some answers came from offsets below the local log start: the tier's.
    remote = [lookup(b, topic_name, k.encode())[1]["offset"] for k in model]
    assert min(remote) < local_bases()[0]
    assert list((b.data_dir / "cairn-key-index" / f"{topic_name}-0" / "remote").glob("*.keys"))
    snapshot, offsets = read_snapshot(b, topic_name)
    assert snapshot == model
    assert offsets == {0: end}
    # Again with the key files of the tier's segments deleted (rebuilt from the bucket).
    for f in (b.data_dir / "cairn-key-index" / f"{topic_name}-0" / "remote").glob("*.keys"):
        f.unlink()
    check_lookups()

    # DeleteRecords into the middle of the tier's part: keys whose latest record lies below the
    # cut are gone (every older record of theirs too), the others answer as before; the files
    # rebuilt meanwhile start at the tier's new start.
    offsets = {k: lookup(b, topic_name, k.encode())[1]["offset"] for k in model}
    cut = sorted(offsets.values())[len(offsets) // 3]
    assert cut < local_bases()[0]
    for f in (b.data_dir / "cairn-key-index" / f"{topic_name}-0" / "remote").glob("*.keys"):
        f.unlink()
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    tp = TopicPartition(topic_name, 0, cut)
    assert admin.delete_records([tp])[tp].result(30).low_watermark == cut
    model = {k: v for k, v in model.items() if offsets[k] >= cut}
    check_lookups()
    snapshot, _ = read_snapshot(b, topic_name)
    assert snapshot == model


def test_connections_are_kept_alive_then_closed_when_idle(keys_broker, topic_name):
    """Lookups on one kept-alive connection; an idle connection is closed after the header
    timeout (5 s), so it cannot hold one of the listener's slots for long."""
    import http.client
    b = keys_broker
    create_topic(b, topic_name, 1, {"cleanup.policy": "compact"})
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all"})
    for i in range(10):
        p.produce(topic_name, key=f"a{i}".encode(), value=f"v{i}".encode())
    assert p.flush(30) == 0
    host, port = b.http.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", f"/v1/topics/{topic_name}/keys/a0")
        first = conn.sock
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["value"] == "v0"
        for i in range(1, 10):
            conn.request("GET", f"/v1/topics/{topic_name}/keys/a{i}")
            assert conn.sock is first, "the same connection serves every request"
            r = conn.getresponse()
            assert r.status == 200 and json.loads(r.read())["value"] == f"v{i}"
        conn.request("GET", f"/v1/topics/{topic_name}/keys/nope")
        r = conn.getresponse()
        assert r.status == 404
        r.read()
        assert conn.sock is first
        # Idle past the limit: the server closes it.
        first.settimeout(15)
        t = time.monotonic()
        assert first.recv(1) == b""
        assert 4 < time.monotonic() - t < 12
    finally:
        conn.close()
