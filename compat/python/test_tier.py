"""The object-storage tier (issue 13) against a real S3 protocol server (moto_server).

Cairn copies sealed segments of tiered topics, every internal topic and all topic metadata to
an S3 bucket. These tests check, with confluent-kafka: the restore drill (stop, delete the data
directory, start on the same bucket: every uploaded record at its offset, the topic's configs
and the group's committed offset come back), one writer per bucket prefix, a store outage
(produce goes on, nothing local is deleted before it is in the bucket, uploads resume), a
corrupt object never served, kill -9 during uploads, a DeleteRecords into the tier's data
that survives kill -9 right after its answer and a restore (and fails retriably while the store
is down), timestamp lookups and reads from the middle of hundreds of remote-only segments
(served through the segments' uploaded offset and time indexes), and read_committed reads of
remote-only transactions (through the segments' uploaded transaction indexes).
"""

import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, OffsetSpec

from cairn_compat import REPO, TARGET, Broker, free_port, kafka_tool, wait_until

pytestmark = pytest.mark.skipif(TARGET != "cairn", reason="Cairn's object-storage tier")

boto3 = pytest.importorskip("boto3")


class Proxy:
    """A TCP relay in front of the S3 server that the test can cut (store unreachable)."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.port = free_port()
        self.up = False
        self.listener = None
        self.conns: list[socket.socket] = []

    def start(self):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(64)
        self.up = True
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self):
        self.up = False
        # shutdown, not only close: a thread blocked in accept (or recv) on a closed socket
        # would go on accepting (relaying).
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self.conns.clear()


def start_moto(port: int, log) -> subprocess.Popen:
    """moto_server on loopback `port` (it keeps everything in memory)."""
    proc = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                            stderr=subprocess.STDOUT)

    def answers():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    wait_until(answers, timeout=30, what="moto_server")
    return proc


def s3_client(port: int):
    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        region_name="us-east-1")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    proc = start_moto(port, log)
    yield port, s3_client(port)
    proc.terminate()
    proc.wait(10)
    log.close()


def new_bucket(client) -> str:
    name = f"cairn-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name


# The bucket lease of a broker killed with -9 expires this long after its last heartbeat
# (30 s by default); short here, so that a restore onto another data directory need not wait.
LEASE_TIMEOUT_MS = 5000


def tier_args(port: int, bucket: str, prefix: str = "cluster") -> list[str]:
    args = {
        "remote.log.storage.system.enable": "true",
        "cairn.remote.storage.url": f"s3://{bucket}/{prefix}",
        "cairn.remote.storage.s3.endpoint": f"http://127.0.0.1:{port}",
        "cairn.remote.storage.s3.region": "us-east-1",
        "cairn.remote.storage.s3.access.key.id": "test",
        "cairn.remote.storage.s3.secret.access.key": "test",
        "cairn.remote.storage.s3.allow.http": "true",
        "cairn.remote.upload.interval.ms": "1000",
        "cairn.remote.lease.timeout.ms": str(LEASE_TIMEOUT_MS),
        "log.retention.check.interval.ms": "500",
        "offsets.topic.num.partitions": "3",
        "group.initial.rebalance.delay.ms": "0",
    }
    return [a for k, v in args.items() for a in ("--set", f"{k}={v}")]


def tiered_broker(workdir: Path, port: int, bucket: str) -> Broker:
    b = Broker("cairn", workdir)
    b.extra_args = tier_args(port, bucket)
    b.start()
    return b


def create_topic(bootstrap, topic, **configs):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    cfg = {"remote.storage.enable": "true", "segment.bytes": "2000", **configs}
    admin.create_topics([NewTopic(topic, 1, 1, config=cfg)])[topic].result(30)


def produce(bootstrap, topic, n, start=0, ts0=1_700_000_000_000):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    acked = {}

    def done(err, msg):
        assert err is None, err
        acked[msg.offset()] = msg.value().decode()

    for i in range(start, start + n):
        p.produce(topic, key=f"k{i}", value=f"value-{i}", timestamp=ts0 + i * 1000,
                  on_delivery=done)
        if i % 20 == 0:
            p.flush(30)
    assert p.flush(30) == 0
    return acked


def consume_from(bootstrap, topic, offset, until, group=None, isolation="read_committed"):
    """Values read from `offset` until the record at offset `until` (read_committed, the
    client's default, unless `isolation` says otherwise)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group or f"r-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "isolation.level": isolation})
    got = {}
    try:
        c.assign([TopicPartition(topic, 0, offset)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and until not in got:
            for m in c.consume(num_messages=500, timeout=0.5):
                assert m.error() is None, m.error()
                got[m.offset()] = m.value().decode()
    finally:
        c.close()
    return got


def manifests(client, bucket, topic):
    """The latest manifest of each partition of `topic` in the bucket: {partition: manifest}."""
    objs = client.list_objects_v2(Bucket=bucket, Prefix="cluster/topics/").get("Contents", [])
    topic_id = None
    for o in objs:
        text = client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().decode()
        if f"name={topic}\n" in text:
            topic_id = o["Key"].rsplit("/", 1)[1].removesuffix(".topic")
    if topic_id is None:
        return {}
    out = {}
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"cluster/partitions/{topic_id}/"):
        for o in page.get("Contents", []):
            if "/manifest/" not in o["Key"]:
                continue
            try:
                m = json.loads(client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
            except client.exceptions.NoSuchKey:
                continue  # an old version deleted since the listing
            if m["partition"] not in out or out[m["partition"]]["version"] < m["version"]:
                out[m["partition"]] = m
    return out


def tiered_end(client, bucket, topic, partition=0):
    m = manifests(client, bucket, topic).get(partition)
    return m["segments"][-1]["end_offset"] if m and m["segments"] else -1


def test_restore_drill_brings_back_records_configs_and_committed_offsets(s3, tmp_path):
    port, client = s3
    bucket = new_bucket(client)
    b = tiered_broker(tmp_path / "broker", port, bucket)
    topic, group = f"events-{uuid.uuid4().hex[:6]}", "drill-group"
    try:
        create_topic(b.bootstrap, topic, **{"retention.ms": "-1"})
        acked = produce(b.bootstrap, topic, 400)
        assert sorted(acked) == list(range(400))
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                      "enable.auto.commit": False})
        c.commit(offsets=[TopicPartition(topic, 0, 321)], asynchronous=False)
        c.close()
        # Everything acknowledged reaches the bucket within a few upload intervals.
        wait_until(lambda: tiered_end(client, bucket, topic) >= 400, timeout=60,
                   what="every record in the tier")
        wait_until(lambda: any(m["segments"] for m in
                               manifests(client, bucket, "__consumer_offsets").values()),
                   timeout=60, what="the committed offset in the tier")
        segments = manifests(client, bucket, topic)[0]["segments"]
        assert len(segments) >= 5, "a small segment.bytes makes several segments"
    finally:
        b.stop()
    assert b.last_exit_code == 0
    import shutil
    shutil.rmtree(b.data_dir)

    b.start()
    try:
        log = b.log_path.read_text(errors="replace")
        assert "restore from the tier done" in log and f"restored topic topic={topic}" in log
        # Nothing was downloaded but the producer state: the records come from the bucket.
        assert local_segments(b, topic) == 1
        got = consume_from(b.bootstrap, topic, 0, 399)
        assert got == acked
        # Configs and committed offsets came back.
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        res = ConfigResource(ConfigResource.Type.TOPIC, topic)
        cfg = admin.describe_configs([res])[res].result(30)
        assert cfg["remote.storage.enable"].value == "true"
        assert cfg["segment.bytes"].value == "2000"
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                      "enable.auto.commit": False})
        committed = c.committed([TopicPartition(topic, 0)], timeout=30)
        assert committed[0].offset == 321
        # Timestamp lookups and the earliest/latest offsets on the restored topic.
        found = c.offsets_for_times([TopicPartition(topic, 0, 1_700_000_000_000 + 250_500)],
                                    timeout=30)
        assert found[0].offset == 251
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        assert (low, high) == (0, 400)
        c.close()
        # A group reset to earliest reads everything again; new records follow at 400.
        more = produce(b.bootstrap, topic, 10, start=400)
        assert sorted(more) == list(range(400, 410))
        reader = consume_from(b.bootstrap, topic, 0, 409, group="reset-group")
        assert len(reader) == 410
    finally:
        b.stop()


def test_a_second_broker_on_the_same_prefix_is_refused(s3, tmp_path):
    port, client = s3
    bucket = new_bucket(client)
    first = tiered_broker(tmp_path / "first", port, bucket)
    try:
        # The S3 secret is never sent back by DescribeConfigs.
        admin = AdminClient({"bootstrap.servers": first.bootstrap})
        res = ConfigResource(ConfigResource.Type.BROKER, "1")
        secret = admin.describe_configs([res])[res].result(30)[
            "cairn.remote.storage.s3.secret.access.key"]
        assert secret.is_sensitive and secret.value is None
        binary = REPO / "target" / "release" / "cairn"
        second = subprocess.run(
            [str(binary), "--listen", f"127.0.0.1:{free_port()}", "--data-dir",
             str(tmp_path / "second"), *tier_args(port, bucket)],
            capture_output=True, text=True, timeout=60)
        assert second.returncode != 0
        assert "held by another broker" in second.stderr, second.stderr
    finally:
        first.stop()
    # A clean stop releases the lease: another broker may now take the prefix at once.
    other = tiered_broker(tmp_path / "other", port, bucket)
    other.stop()
    assert other.last_exit_code == 0


def low_watermark(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)[0]
    finally:
        c.close()


def test_store_outage_keeps_produce_going_and_local_data_until_uploaded(s3, tmp_path):
    port, client = s3
    bucket = new_bucket(client)
    proxy = Proxy(port)
    proxy.start()
    b = Broker("cairn", tmp_path / "broker")
    b.extra_args = tier_args(proxy.port, bucket)
    b.start()
    topic = f"outage-{uuid.uuid4().hex[:6]}"
    try:
        # retention.bytes=1: retention deletes every sealed segment it may, which for a tiered
        # topic means every segment the bucket already holds.
        create_topic(b.bootstrap, topic, **{"retention.bytes": "1"})
        produce(b.bootstrap, topic, 100)
        wait_until(lambda: low_watermark(b.bootstrap, topic) >= 50, timeout=60,
                   what="segments uploaded, then deleted locally")
        proxy.cut()
        acked = produce(b.bootstrap, topic, 200, start=100)
        assert sorted(acked) == list(range(100, 300))
        # Once the uploader found the store unreachable, several retention passes run (every
        # 500 ms). That retention deletes nothing cannot be awaited, only watched for a while.
        wait_until(lambda: "cannot copy to the tier" in b.log_path.read_text(errors="replace"),
                   timeout=60, what="an upload failing on the outage")
        time.sleep(2)
        # Nothing the bucket lacks was deleted locally: every record acknowledged during the
        # outage is still served.
        low = low_watermark(b.bootstrap, topic)
        assert low <= 100
        got = consume_from(b.bootstrap, topic, low, 299)
        assert {o: got[o] for o in acked} == acked
        proxy.start()
        wait_until(lambda: low_watermark(b.bootstrap, topic) >= 250, timeout=90,
                   what="uploads resumed after the outage (then local retention)")
        log = b.log_path.read_text(errors="replace")
        assert log.count("cannot copy to the tier") == 1, "logged once, not per try"
        assert "copying to the tier resumed" in log
    finally:
        b.stop()


def test_corrupt_object_is_detected_and_never_served(s3, tmp_path):
    port, client = s3
    bucket = new_bucket(client)
    b = tiered_broker(tmp_path / "broker", port, bucket)
    topic = f"corrupt-{uuid.uuid4().hex[:6]}"
    try:
        # The records' timestamps are from 2023: retention.ms=-1 keeps them.
        create_topic(b.bootstrap, topic, **{"retention.ms": "-1"})
        acked = produce(b.bootstrap, topic, 200)
        wait_until(lambda: tiered_end(client, bucket, topic) >= 200, timeout=60,
                   what="every record in the tier")
    finally:
        b.stop()
    segments = manifests(client, bucket, topic)[0]["segments"]
    victim = segments[1]
    key = f"cluster/{victim['log']['key']}"
    body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    client.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    import shutil
    shutil.rmtree(b.data_dir)
    b.start()
    try:
        # The restored topic is served from the bucket: the records before the damaged batch
        # and after the object are; the damaged batch never is (the consumer is told to retry).
        got = consume_up_to_the_damage(b, topic, victim)
        assert_served_up_to_the_damage(got, acked, victim)
        after = consume_from(b.bootstrap, topic, victim["end_offset"], 199)
        assert after == {o: acked[o] for o in range(victim["end_offset"], 200)}
        log = b.log_path.read_text(errors="replace")
        assert "corrupt object in the tier" in log and victim["log"]["key"] in log
    finally:
        b.stop()


def assert_served_up_to_the_damage(got, acked, victim):
    """A reader from 0 got every record up to the damaged batch (inside the victim object),
    exactly as produced, and nothing from the damaged batch on."""
    assert got == {o: acked[o] for o in range(len(got))}
    assert victim["base_offset"] <= len(got) < victim["end_offset"]


def consume_up_to_the_damage(b, topic, victim, linger=1.0):
    """Every record read from offset 0, ignoring (retriable) errors, until the consumer reached
    the damaged object and the broker refused it (its log names the corrupt object), then
    `linger` seconds more of the consumer retrying: nothing past the damage may come."""
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": f"r-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got = {}
    deadline = time.monotonic() + 60
    refused_at = None
    try:
        while time.monotonic() < deadline:
            for m in c.consume(num_messages=500, timeout=0.2):
                if m.error() is None:
                    got[m.offset()] = m.value().decode()
            if refused_at is None and len(got) >= victim["base_offset"] and \
                    "corrupt object in the tier" in b.log_path.read_text(errors="replace"):
                refused_at = time.monotonic()
            if refused_at is not None and time.monotonic() - refused_at >= linger:
                break
    finally:
        c.close()
    assert refused_at is not None, "the consumer never reached the damaged object"
    return got


def test_kill_9_during_uploads_blocks_nothing_and_loses_nothing(s3, tmp_path):
    port, client = s3
    bucket = new_bucket(client)
    b = tiered_broker(tmp_path / "broker", port, bucket)
    topic = f"kill-{uuid.uuid4().hex[:6]}"
    acked = {}
    try:
        create_topic(b.bootstrap, topic, **{"retention.ms": "-1"})
        for round_ in range(3):
            acked.update(produce(b.bootstrap, topic, 150, start=150 * round_))
            b.proc.kill()  # kill -9, uploads in flight
            b.proc.wait(10)
            b.proc = None
            b.start()  # the same data directory takes its own lease back at once
        wait_until(lambda: tiered_end(client, bucket, topic) >= 450, timeout=60,
                   what="every record in the tier after the restarts")
        got = consume_from(b.bootstrap, topic, 0, 449)
        assert got == acked
        check_consistent(client, bucket, topic)
        # An object no manifest names (an upload a crash cut off) is collected on the next start.
        seg_key = manifests(client, bucket, topic)[0]["segments"][0]["log"]["key"]
        orphan = f"cluster/{seg_key.rsplit('/', 1)[0]}/00000000000000000000-0rphan.log"
        client.put_object(Bucket=bucket, Key=orphan, Body=b"left by a crash")
        b.proc.kill()
        b.proc.wait(10)
        b.proc = None
        b.start()

        def collected():
            return "Contents" not in client.list_objects_v2(Bucket=bucket, Prefix=orphan)

        wait_until(collected, timeout=30, what="the orphan object collected")
        check_consistent(client, bucket, topic)
        assert consume_from(b.bootstrap, topic, 0, 449) == acked
    finally:
        b.stop()


def lease_expired(client, bucket) -> bool:
    """True when the newest claim on the bucket's lease is released or its heartbeat is older
    than the lease timeout: another data directory may take the prefix."""
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="cluster/lease/")
            .get("Contents", [])]
    claims = sorted(k for k in keys if k.endswith(".claim"))
    if not claims:
        return True
    top = claims[-1].removesuffix(".claim")
    if f"{top}.released" in keys:
        return True
    if f"{top}.heartbeat" in keys:
        beat = int(client.get_object(Bucket=bucket, Key=f"{top}.heartbeat")["Body"].read())
    else:
        beat = json.loads(client.get_object(Bucket=bucket, Key=claims[-1])["Body"].read())[
            "claimed_ms"]
    # A little margin: the broker's clock is read a moment after ours.
    return time.time() * 1000 - beat > LEASE_TIMEOUT_MS + 200


def start_after_the_lease_expires(b: Broker, client, bucket):
    """Starts `b` on a new (empty) data directory once the lease of a broker killed with -9
    on the same prefix has expired: another data directory may not take it before."""
    wait_until(lambda: lease_expired(client, bucket), timeout=60, what="the lease expired")
    b.start()


def test_kill_9_mid_upload_then_a_restore_onto_an_empty_disk_brings_back_every_uploaded_record(
        s3, tmp_path):
    port, client = s3
    bucket = new_bucket(client)
    b = tiered_broker(tmp_path / "broker", port, bucket)
    topic = f"kill-restore-{uuid.uuid4().hex[:6]}"
    acked = {}
    try:
        create_topic(b.bootstrap, topic, **{"retention.ms": "-1"})
        for round_ in range(4):
            acked.update(produce(b.bootstrap, topic, 120, start=120 * round_))
            time.sleep(0.3 * round_)  # the kills land at different points of the uploads
            b.proc.kill()  # kill -9, uploads in flight
            b.proc.wait(10)
            b.proc = None
            if round_ < 3:
                b.start()
        assert sorted(acked) == list(range(480))
        # What the bucket held when the broker died is what a lost disk keeps.
        uploaded = tiered_end(client, bucket, topic)
        assert uploaded > 0
        check_consistent(client, bucket, topic)
        shutil.rmtree(b.data_dir)
        start_after_the_lease_expires(b, client, bucket)
        assert "restore from the tier done" in b.log_path.read_text()
        assert low_watermark(b.bootstrap, topic) == 0
        got = consume_from(b.bootstrap, topic, 0, uploaded - 1)
        assert got == {o: v for o, v in acked.items() if o < uploaded}
    finally:
        b.stop()


def local_segments(b: Broker, topic: str) -> int:
    return len(list((b.data_dir / f"{topic}-0").glob("*.log")))


def test_records_only_in_the_tier_are_served_after_local_retention(s3, tmp_path):
    port, client = s3
    bucket = new_bucket(client)
    b = tiered_broker(tmp_path / "broker", port, bucket)
    topic = f"history-{uuid.uuid4().hex[:6]}"
    try:
        # Keep everything (retention.ms=-1) but almost nothing locally: every sealed segment
        # goes once the tier holds it.
        create_topic(b.bootstrap, topic, **{"retention.ms": "-1", "local.retention.bytes": "1"})
        acked = produce(b.bootstrap, topic, 500)
        # Offset 500 carries the largest timestamp, and will be only in the tier.
        acked.update(produce(b.bootstrap, topic, 1, start=500, ts0=1_700_000_000_000 + 10**9))
        acked.update(produce(b.bootstrap, topic, 499, start=501))
        wait_until(lambda: tiered_end(client, bucket, topic) >= 1000, timeout=60,
                   what="every record in the tier")
        wait_until(lambda: local_segments(b, topic) <= 2, timeout=30,
                   what="local retention deleted the tiered segments")
        # segment.bytes=2000 holds about 80 of these records (more segments when the upload
        # interval rolls one early, which depends on timing).
        assert len(manifests(client, bucket, topic)[0]["segments"]) >= 12
        # The whole log still starts at 0, and a consumer reads it all, exactly, from the tier.
        assert low_watermark(b.bootstrap, topic) == 0
        assert consume_from(b.bootstrap, topic, 0, 999) == acked
        # A group reset to earliest reprocesses it.
        grouped = {}
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "reprocess",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe([topic])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(grouped) < 1000:
            for m in c.consume(num_messages=500, timeout=0.5):
                assert m.error() is None, m.error()
                grouped[m.offset()] = m.value().decode()
        c.close()
        assert grouped == acked
        # A timestamp lookup lands on the right record in the tier.
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "times"})
        found = c.offsets_for_times([TopicPartition(topic, 0, 1_700_000_000_000 + 123_500)],
                                    timeout=30)
        c.close()
        assert found[0].offset == 124
        # ListOffsets' max timestamp covers the tier too.
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        tp = TopicPartition(topic, 0)
        latest = admin.list_offsets({tp: OffsetSpec.max_timestamp()})[tp].result(30)
        assert latest.offset == 500
        # DeleteRecords below the local log start moves the whole log's start.
        deleted = admin.delete_records([TopicPartition(topic, 0, 110)])
        assert deleted[TopicPartition(topic, 0, 110)].result(30).low_watermark == 110
        assert low_watermark(b.bootstrap, topic) == 110
        wait_until(lambda: manifests(client, bucket, topic)[0]["log_start_offset"] >= 110,
                   timeout=30, what="the manifest trimmed by DeleteRecords")
    finally:
        b.stop()
    # After a restart the tier's records are served from the first request on.
    b.start()
    try:
        # 110 lies inside a segment: the start is kept exactly, not rounded to a segment.
        assert low_watermark(b.bootstrap, topic) == 110
        assert consume_from(b.bootstrap, topic, 110, 999) == {
            o: v for o, v in acked.items() if o >= 110}
    finally:
        b.stop()


def test_read_committed_skips_aborted_transactions_only_the_tier_holds(s3, tmp_path):
    port, client = s3
    bucket = new_bucket(client)
    b = tiered_broker(tmp_path / "broker", port, bucket)
    topic = f"txns-{uuid.uuid4().hex[:6]}"
    try:
        create_topic(b.bootstrap, topic, **{"retention.ms": "-1", "local.retention.bytes": "1",
                                            "segment.bytes": "1000"})
        p = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": f"t-{topic}",
                      "linger.ms": 0})
        p.init_transactions(30)
        # One producer, so the offsets are known: each transaction's records, then its marker.
        committed, everything, offset = {}, {}, 0
        # Alternating outcomes; the aborted transaction of 150 records spans several segments
        # (its ABORT marker lies segments after its first record), and the last one commits.
        for i, (n, commit) in enumerate([(30, True), (40, False), (25, True), (150, False),
                                         (60, True), (10, False), (80, True)]):
            p.begin_transaction()
            for j in range(n):
                p.produce(topic, value=f"txn{i}-{j}")
                everything[offset + j] = f"txn{i}-{j}"
                if commit:
                    committed[offset + j] = f"txn{i}-{j}"
            p.flush(30)
            if commit:
                p.commit_transaction(30)
            else:
                p.abort_transaction(30)
            offset += n + 1
        wait_until(lambda: tiered_end(client, bucket, topic) >= offset, timeout=60,
                   what="every transaction in the tier")
        wait_until(lambda: local_segments(b, topic) <= 2, timeout=30,
                   what="local retention deleted the tiered segments")
        # Every aborted transaction lies below the local log start: only the tier holds them.
        local_start = min(int(f.stem) for f in (b.data_dir / f"{topic}-0").glob("*.log"))
        assert local_start > 30 + 40 + 25 + 150 + 60 + 10 + 5, local_start
        segments = manifests(client, bucket, topic)[0]["segments"]
        assert len(segments) >= 4
        # Each segment's transaction index went with it; the ones holding ABORT markers list them.
        assert all("txn_index" in s for s in segments), segments
        assert sum(s["txn_index"]["size"] for s in segments) == 3 * 34
        last = max(committed)
        assert consume_from(b.bootstrap, topic, 0, last) == committed
        assert consume_from(b.bootstrap, topic, 0, last, isolation="read_uncommitted") == everything

        # Segments uploaded before transaction indexes were: a manifest naming none. A
        # read_committed fetch builds the aborted transactions from the log objects meanwhile,
        # and the scrub uploads indexes equal to the local log's and puts them in the manifest.
        b.stop()
        m = manifests(client, bucket, topic)[0]
        folder = m["segments"][0]["log"]["key"].rsplit("/segments/", 1)[0]

        def txn_bytes(seg):
            o = seg["txn_index"]
            if o["size"] == 0:
                return b""
            return client.get_object(Bucket=bucket, Key=f"cluster/{o['key']}")["Body"].read()

        original = {s["base_offset"]: txn_bytes(s) for s in m["segments"]}
        for seg in m["segments"]:
            del seg["txn_index"]
        m["version"] += 1
        client.put_object(Bucket=bucket, Key=f"cluster/{folder}/manifest/{m['version']:020}.json",
                          Body=json.dumps(m).encode())
        b.start()
        assert consume_from(b.bootstrap, topic, 0, last) == committed

        def reindexed():
            segments = manifests(client, bucket, topic)[0]["segments"]
            return all("txn_index" in s for s in segments) and segments

        segments = wait_until(reindexed, timeout=60, what="transaction indexes added by the scrub")
        assert {s["base_offset"]: txn_bytes(s) for s in segments} == original
        assert consume_from(b.bootstrap, topic, 0, last) == committed
    finally:
        b.stop()


def check_consistent(client, bucket, topic):
    """Every manifest version parses, and the latest names only objects present, whole."""
    for m in manifests(client, bucket, topic).values():
        for seg in m["segments"]:
            objects = [seg["log"]] + [seg["indexes"][k] for k in ("offset_index", "time_index")
                                      if seg.get("indexes")]
            for o in objects:
                head = client.head_object(Bucket=bucket, Key=f"cluster/{o['key']}")
                assert head["ContentLength"] == o["size"]


def test_timestamp_lookups_and_reads_across_hundreds_of_remote_only_segments(s3, tmp_path):
    """Every segment goes to the bucket with its offset and time indexes, and a topic whose
    records are only in the tier answers timestamp lookups and reads from the middle exactly
    (through those indexes: the broker log names no damaged index)."""
    port, client = s3
    bucket = new_bucket(client)
    b = tiered_broker(tmp_path / "broker", port, bucket)
    topic = f"indexed-{uuid.uuid4().hex[:6]}"
    n = 8000
    ts0 = 1_700_000_000_000
    try:
        create_topic(b.bootstrap, topic, **{"retention.ms": "-1", "local.retention.bytes": "1",
                                            "segment.bytes": "1000", "index.interval.bytes": "100"})
        acked = produce(b.bootstrap, topic, 4000, ts0=ts0)
        # Offset 4000 carries the largest timestamp, in the middle of the tier.
        acked.update(produce(b.bootstrap, topic, 1, start=4000, ts0=ts0 + 10**9))
        acked.update(produce(b.bootstrap, topic, n - 4001, start=4001, ts0=ts0))
        wait_until(lambda: tiered_end(client, bucket, topic) >= n - 200, timeout=180,
                   what="the records in the tier")
        wait_until(lambda: local_segments(b, topic) <= 3, timeout=60,
                   what="local retention deleted the tiered segments")
        m = manifests(client, bucket, topic)[0]
        assert len(m["segments"]) >= 150, len(m["segments"])
        listed = {}
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix="cluster/partitions/"):
            for o in page.get("Contents", []):
                listed[o["Key"].removeprefix("cluster/")] = o["Size"]
        for seg in m["segments"]:
            ix = seg["indexes"]
            assert ix["interval_bytes"] == 100
            for o in (ix["offset_index"], ix["time_index"]):
                assert listed.get(o["key"]) == o["size"], o
        end = tiered_end(client, bucket, topic)
        low = min(s["base_offset"] for s in m["segments"])
        assert low == 0 and low_watermark(b.bootstrap, topic) == 0
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "times"})
        try:
            def lookup(ts):
                found = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=30)
                return found[0].offset

            for i in list(range(0, end - 1, 397)) + [1, 2, 3999, end - 2]:
                # Between record i's timestamp and record i + 1's: the answer is i + 1, except
                # that from 4000 on the first record that late is 4000 itself.
                expected = i + 1 if i + 1 <= 4000 else 4000
                assert lookup(ts0 + i * 1000 + 500) == expected, i
                # A record's exact timestamp finds it.
                if i < 4000:
                    assert lookup(ts0 + i * 1000) == i, i
            assert lookup(ts0 - 1) == 0
        finally:
            c.close()
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        tp = TopicPartition(topic, 0)
        assert admin.list_offsets({tp: OffsetSpec.max_timestamp()})[tp].result(30).offset == 4000
        # Reads from the middle of the tier, and across it to the local log, exactly.
        for start in (3333, 6789):
            got = consume_from(b.bootstrap, topic, start, n - 1)
            assert got == {o: v for o, v in acked.items() if o >= start}
        log = b.log_path.read_text(errors="replace")
        assert "damaged index object" not in log
        check_consistent(client, bucket, topic)
    finally:
        b.stop()


def test_kill_9_of_the_s3_server_loses_no_acknowledged_record(tmp_path):
    """moto_server keeps its objects in memory: after kill -9 it comes back empty, the worst a
    store can do. Cairn notices the lost manifest, lease claim and metadata, copies the local log
    again, and a restore from the new bucket brings every acknowledged record back."""
    port = free_port()
    moto_log = open(tmp_path / "moto.log", "wb")
    moto = start_moto(port, moto_log)
    client = s3_client(port)
    bucket = new_bucket(client)
    b = tiered_broker(tmp_path / "broker", port, bucket)
    topic = f"s3crash-{uuid.uuid4().hex[:6]}"
    try:
        create_topic(b.bootstrap, topic, **{"retention.ms": "-1"})
        acked = produce(b.bootstrap, topic, 200)
        wait_until(lambda: tiered_end(client, bucket, topic) >= 200, timeout=60,
                   what="the first records in the tier")
        moto.kill()  # kill -9 mid-run
        moto.wait(10)
        # Produce goes on while the store is gone.
        acked.update(produce(b.bootstrap, topic, 200, start=200))
        moto = start_moto(port, moto_log)
        client.create_bucket(Bucket=bucket)
        wait_until(lambda: tiered_end(client, bucket, topic) >= 400, timeout=90,
                   what="the local log copied again to the emptied store")
        check_consistent(client, bucket, topic)
    finally:
        b.stop()
    assert b.last_exit_code == 0
    import shutil
    shutil.rmtree(b.data_dir)
    b.start()
    try:
        assert consume_from(b.bootstrap, topic, 0, 399) == acked
        log = b.log_path.read_text(errors="replace")
        assert "the tier lost this partition's manifest" in log
    finally:
        b.stop()
        moto.terminate()
        moto.wait(10)
        moto_log.close()


def test_a_corrupt_object_read_by_a_consumer_is_refused_and_logged_once(s3, tmp_path):
    port, client = s3
    bucket = new_bucket(client)
    b = tiered_broker(tmp_path / "broker", port, bucket)
    topic = f"rot-{uuid.uuid4().hex[:6]}"
    try:
        create_topic(b.bootstrap, topic, **{"retention.ms": "-1", "local.retention.bytes": "1"})
        acked = produce(b.bootstrap, topic, 300)
        wait_until(lambda: tiered_end(client, bucket, topic) >= 300, timeout=60,
                   what="every record in the tier")
        wait_until(lambda: local_segments(b, topic) <= 2, timeout=30,
                   what="local retention deleted the tiered segments")
        victim = manifests(client, bucket, topic)[0]["segments"][1]
        key = f"cluster/{victim['log']['key']}"
        body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        body[len(body) // 2] ^= 0xFF
        client.put_object(Bucket=bucket, Key=key, Body=bytes(body))
        # The records before the damaged batch are served, the damaged batch never is, and the
        # consumer gets a retriable error rather than a skip.
        got = consume_up_to_the_damage(b, topic, victim)
        assert_served_up_to_the_damage(got, acked, victim)
        # The rest of the log is still served, and the broker is alive.
        after = consume_from(b.bootstrap, topic, victim["end_offset"], 299)
        assert after == {o: acked[o] for o in range(victim["end_offset"], 300)}
        assert b.proc.poll() is None
        log = b.log_path.read_text(errors="replace")
        assert log.count("corrupt object in the tier") == 1, "logged once, with its key"
        assert victim["log"]["key"] in log
        assert "panicked" not in log
        # The scrub checks the object the read found damaged, and, with no local copy to repair
        # it from, reports it once, with its key.
        wait_until(lambda: "no local copy to repair it from" in b.log_path.read_text(errors="replace"),
                   timeout=30, what="the scrub's report")
        time.sleep(2)
        log = b.log_path.read_text(errors="replace")
        assert log.count("no local copy to repair it from") == 1
    finally:
        b.stop()


def compacted_view(bootstrap, topic, until):
    """Every record from offset 0 up to `until`: [(offset, key, value or None)]."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"r-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    out = []
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == -191:  # _PARTITION_EOF
                    break
                continue
            out.append((m.offset(), m.key().decode(), None if m.value() is None else m.value().decode()))
            if m.offset() >= until - 1:
                break
    finally:
        c.close()
    return out


def test_a_restored_compacted_topic_is_cleaned_in_the_tier(s3, tmp_path):
    """Compaction of segments only the bucket holds: written with the cleaner off, restored
    onto an empty disk (every segment remote-only), then cleaned in the tier: a reader from 0
    sees exactly the latest value per key, tombstones gone after delete.retention.ms, and the
    replaced objects are deleted after file.delete.delay.ms."""
    port, client = s3
    bucket = new_bucket(client)
    b = Broker("cairn", tmp_path / "broker")
    b.extra_args = tier_args(port, bucket) + ["--set", "log.cleaner.enable=false"]
    b.start()
    topic = f"table-{uuid.uuid4().hex[:6]}"
    latest = {}
    try:
        create_topic(b.bootstrap, topic, **{"cleanup.policy": "compact",
                                            "delete.retention.ms": "3000",
                                            "file.delete.delay.ms": "1000"})
        p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 0})
        for i in range(600):
            key = f"k{i % 25}"
            # Some keys are deleted and come back, two end deleted.
            deleted = i % 50 == 7 or (i >= 575 and i % 25 in (3, 11))
            value = None if deleted else f"v{i}"
            p.produce(topic, key=key, value=value)
            latest[key] = value
            if i % 25 == 0:
                p.flush(30)
        assert p.flush(30) == 0
        wait_until(lambda: tiered_end(client, bucket, topic) >= 600, timeout=60,
                   what="every record in the tier")
    finally:
        b.stop()
    before = manifests(client, bucket, topic)[0]
    assert len(before["segments"]) >= 5
    old_keys = {s["log"]["key"] for s in before["segments"]}
    import shutil
    shutil.rmtree(b.data_dir)
    b.extra_args = tier_args(port, bucket)  # the cleaner on
    b.start()
    try:
        live = {k: v for k, v in latest.items() if v is not None}
        assert len(live) < len(latest), "some keys end with a tombstone"

        def cleaned():
            view = compacted_view(b.bootstrap, topic, 600)
            return [(k, v) for _, k, v in view] if len({k for _, k, _ in view}) == len(view) else None

        # The first pass keeps one record per key (tombstones included, stamped); once their
        # delete horizon passed, the tombstones go too.
        wait_until(lambda: (v := cleaned()) is not None and dict(v) == latest, timeout=60,
                   what="one record per key, from the tier")
        wait_until(lambda: (v := cleaned()) is not None and dict(v) == live, timeout=60,
                   what="tombstones removed after delete.retention.ms")
        view = compacted_view(b.bootstrap, topic, 600)
        offsets = [o for o, _, _ in view]
        assert offsets == sorted(offsets), "offsets keep their order"
        after = manifests(client, bucket, topic)[0]
        assert after["cleaned_to"] >= 600
        assert [(s["base_offset"], s["end_offset"]) for s in after["segments"]] == [
            (s["base_offset"], s["end_offset"]) for s in before["segments"]]
        check_consistent(client, bucket, topic)

        def replaced_deleted():
            names = set()
            for page in client.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix="cluster/partitions/"):
                names |= {o["Key"].removeprefix("cluster/") for o in page.get("Contents", [])}
            gone = [k for k in old_keys if k not in {s["log"]["key"] for s in after["segments"]}]
            return gone and not any(k in names for k in gone)

        wait_until(replaced_deleted, timeout=30, what="the replaced objects deleted")
        log = b.log_path.read_text(errors="replace")
        assert "cleaned the tier's segments" in log and "panicked" not in log
    finally:
        b.stop()
    # The cleaned tier restores onto an empty disk as it is.
    shutil.rmtree(b.data_dir)
    b.start()
    try:
        view = compacted_view(b.bootstrap, topic, 600)
        assert {k: v for _, k, v in view} == live and len(view) == len(live)
    finally:
        b.stop()


def test_the_scrub_uploads_a_damaged_or_missing_object_again_from_the_local_copy(s3, tmp_path):
    port, client = s3
    bucket = new_bucket(client)
    b = Broker("cairn", tmp_path / "broker")
    b.extra_args = tier_args(port, bucket) + ["--set", "cairn.remote.scrub.interval.ms=1000"]
    b.start()
    topic = f"scrub-{uuid.uuid4().hex[:6]}"
    try:
        create_topic(b.bootstrap, topic, **{"retention.ms": "-1", "file.delete.delay.ms": "1000"})
        acked = produce(b.bootstrap, topic, 300)
        wait_until(lambda: tiered_end(client, bucket, topic) >= 300, timeout=60,
                   what="every record in the tier")
        segments = manifests(client, bucket, topic)[0]["segments"]
        damaged, missing = segments[1], segments[3]
        key = f"cluster/{damaged['log']['key']}"
        body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        body[len(body) // 2] ^= 0xFF
        client.put_object(Bucket=bucket, Key=key, Body=bytes(body))
        client.delete_object(Bucket=bucket, Key=f"cluster/{missing['log']['key']}")

        def repaired():
            now = {(s["base_offset"], s["end_offset"]): s["log"]["key"]
                   for s in manifests(client, bucket, topic)[0]["segments"]}
            return all(now[(s["base_offset"], s["end_offset"])] != s["log"]["key"]
                       for s in (damaged, missing))

        wait_until(repaired, timeout=60, what="both segments uploaded again")
        check_consistent(client, bucket, topic)
        log = b.log_path.read_text(errors="replace")
        assert log.count("uploaded again from the local copy") == 2
        assert "no local copy" not in log
    finally:
        b.stop()
    # The repaired tier restores onto an empty disk: every record is served from it.
    import shutil
    shutil.rmtree(b.data_dir)
    b.start()
    try:
        assert consume_from(b.bootstrap, topic, 0, 299) == acked
    finally:
        b.stop()


def test_a_damaged_index_is_bypassed_and_rebuilt_by_the_scrub_without_a_local_copy(s3, tmp_path):
    """A segment's offset index damaged in the bucket (its CRC no longer matches the manifest):
    reads of the segment walk its batches instead and stay exact, the damage is logged once with
    the object's key, and the scrub builds the index again from the segment object itself,
    though the disk no longer holds the segment."""
    port, client = s3
    bucket = new_bucket(client)
    b = Broker("cairn", tmp_path / "broker")
    b.extra_args = tier_args(port, bucket) + ["--set", "cairn.remote.scrub.interval.ms=1000"]
    b.start()
    topic = f"reindex-{uuid.uuid4().hex[:6]}"
    try:
        create_topic(b.bootstrap, topic, **{"retention.ms": "-1", "local.retention.bytes": "1",
                                            "index.interval.bytes": "100",
                                            "file.delete.delay.ms": "1000"})
        acked = produce(b.bootstrap, topic, 600)
        wait_until(lambda: tiered_end(client, bucket, topic) >= 550, timeout=60,
                   what="the records in the tier")
        wait_until(lambda: local_segments(b, topic) <= 2, timeout=30,
                   what="local retention deleted the tiered segments")
        victim = manifests(client, bucket, topic)[0]["segments"][2]
        index = victim["indexes"]["offset_index"]
        assert index["size"] >= 16, victim
        key = f"cluster/{index['key']}"
        body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        body[5] ^= 0x40
        client.put_object(Bucket=bucket, Key=key, Body=bytes(body))
        middle = (victim["base_offset"] + victim["end_offset"]) // 2
        assert consume_from(b.bootstrap, topic, middle, 599) == {
            o: v for o, v in acked.items() if o >= middle}

        def rebuilt():
            segs = manifests(client, bucket, topic)[0]["segments"]
            now = next(s for s in segs if s["base_offset"] == victim["base_offset"])
            return (now["log"]["key"] == victim["log"]["key"]
                    and now["indexes"]["offset_index"]["key"] != index["key"])

        wait_until(rebuilt, timeout=60, what="the scrub rebuilt the damaged index")
        assert consume_from(b.bootstrap, topic, middle, 599) == {
            o: v for o, v in acked.items() if o >= middle}
        check_consistent(client, bucket, topic)
        log = b.log_path.read_text(errors="replace")
        assert "damaged index object in the tier built again from its segment" in log
        assert "no local copy" not in log
        # Logged at most once by the reads (none when the scrub came first).
        damaged = [line for line in log.splitlines()
                   if "damaged index object in the tier; its segment is read by walking" in line]
        assert len(damaged) <= 1 and all(index["key"] in line for line in damaged), damaged
    finally:
        b.stop()


def list_offsets(bootstrap, topic):
    """ListOffsets of partition 0: earliest and latest (confluent-kafka), and KIP-1005's -4
    (earliest local) and -5 (latest tiered), which librdkafka refuses to send, from
    kafka-get-offsets."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    tp = TopicPartition(topic, 0)
    out = {name: admin.list_offsets({tp: spec})[tp].result(30).offset
           for name, spec in {"earliest": OffsetSpec.earliest(),
                              "latest": OffsetSpec.latest()}.items()}
    for name, spec in {"earliest_local": "-4", "latest_tiered": "-5"}.items():
        shown = kafka_tool("kafka-get-offsets", "--bootstrap-server", bootstrap,
                           "--topic", topic, "--partitions", "0", "--time", spec).stdout
        out[name] = int(shown.strip().rsplit(":", 1)[1])
    return out


def delete_markers(client, bucket):
    objs = client.list_objects_v2(Bucket=bucket, Prefix="cluster/partitions/").get("Contents", [])
    return [o["Key"] for o in objs if "/delete-before/" in o["Key"]]


def test_an_acknowledged_delete_records_into_the_tier_survives_kill_9_and_restore(s3, tmp_path):
    """DeleteRecords below the local log start (records only the bucket holds) is durable in
    the bucket before it is answered: a kill -9 right after the answer, before the next
    manifest write, does not bring the records back, neither on restart nor on a restore
    onto an empty disk."""
    port, client = s3
    bucket = new_bucket(client)
    b = tiered_broker(tmp_path / "broker", port, bucket)
    topic = f"trim-{uuid.uuid4().hex[:6]}"

    def delete_then_kill(offset):
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        assert admin.delete_records([TopicPartition(topic, 0, offset)])[
            TopicPartition(topic, 0, offset)].result(30).low_watermark == offset
        b.proc.kill()  # kill -9 at once: the manifest is written up to 0.5 s later
        b.proc.wait(10)
        b.proc = None
        # The bucket holds the deletion: as a marker, or already in the manifest.
        key = f"/delete-before/{offset:020}"
        assert any(k.endswith(key) for k in delete_markers(client, bucket)) or manifests(
            client, bucket, topic)[0]["log_start_offset"] >= offset

    def check_starts_at(offset):
        assert low_watermark(b.bootstrap, topic) == offset
        offsets = list_offsets(b.bootstrap, topic)
        assert offsets["earliest"] == offset, offsets
        assert offsets["latest"] == 500, offsets
        # KIP-1005: -5 is the last offset the tier holds (its end, exclusive, less one).
        assert offsets["latest_tiered"] == tiered_end(client, bucket, topic) - 1, offsets
        assert 200 < offsets["earliest_local"] <= 500, offsets
        # A consumer from 0 is reset to the new start and reads exactly what is left.
        assert consume_from(b.bootstrap, topic, 0, 499) == {
            o: v for o, v in acked.items() if o >= offset}

    try:
        create_topic(b.bootstrap, topic, **{"retention.ms": "-1", "local.retention.bytes": "1",
                                            "file.delete.delay.ms": "0"})
        acked = produce(b.bootstrap, topic, 500)
        wait_until(lambda: tiered_end(client, bucket, topic) >= 400, timeout=60,
                   what="records in the tier")
        wait_until(lambda: local_segments(b, topic) <= 2, timeout=30,
                   what="local retention deleted the tiered segments")
        first_keys = [s["log"]["key"] for s in manifests(client, bucket, topic)[0]["segments"]]

        delete_then_kill(110)
        b.start()
        check_starts_at(110)
        # The next manifest holds the new start, drops the segments wholly below it, and their
        # objects and the DeleteRecords marker are deleted.
        wait_until(lambda: manifests(client, bucket, topic)[0]["log_start_offset"] == 110,
                   timeout=30, what="the manifest trimmed by DeleteRecords")
        m = manifests(client, bucket, topic)[0]
        assert m["segments"][0]["base_offset"] <= 110 < m["segments"][0]["end_offset"]
        gone = [k for k in first_keys if k not in {s["log"]["key"] for s in m["segments"]}]
        assert gone

        def deleted():
            left = client.list_objects_v2(Bucket=bucket, Prefix="cluster/partitions/")
            keys = {o["Key"] for o in left.get("Contents", [])}
            return not any(f"cluster/{k}" in keys for k in gone) and not delete_markers(
                client, bucket)

        wait_until(deleted, timeout=30, what="trimmed objects and markers deleted")

        # Again, then the disk is lost: the restore from the bucket honours it too.
        delete_then_kill(150)
        shutil.rmtree(b.data_dir)
        start_after_the_lease_expires(b, client, bucket)
        assert "restore from the tier done" in b.log_path.read_text()
        check_starts_at(150)
    finally:
        b.stop()


def test_delete_records_into_the_tier_fails_retriably_while_the_store_is_down(s3, tmp_path):
    """A DeleteRecords the bucket cannot record gets a retriable error in time and deletes
    nothing; once the store is back it succeeds."""
    port, client = s3
    bucket = new_bucket(client)
    proxy = Proxy(port)
    proxy.start()
    b = Broker("cairn", tmp_path / "broker")
    b.extra_args = tier_args(proxy.port, bucket)
    b.start()
    topic = f"trim-outage-{uuid.uuid4().hex[:6]}"
    try:
        create_topic(b.bootstrap, topic, **{"retention.ms": "-1", "local.retention.bytes": "1"})
        acked = produce(b.bootstrap, topic, 300)
        wait_until(lambda: local_segments(b, topic) <= 2, timeout=60,
                   what="local retention deleted the tiered segments")
        proxy.cut()
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        tp = TopicPartition(topic, 0, 50)
        started = time.monotonic()
        with pytest.raises(KafkaException) as failed:
            admin.delete_records([tp], request_timeout=30)[tp].result(40)
        assert time.monotonic() - started < 20
        # KAFKA_STORAGE_ERROR is retriable in Kafka's protocol (librdkafka's per-error
        # retriable flag is not set on an admin result).
        assert failed.value.args[0].code() == KafkaError.KAFKA_STORAGE_ERROR
        proxy.start()
        # Nothing was deleted: the tier still serves from 0.
        assert low_watermark(b.bootstrap, topic) == 0
        assert consume_from(b.bootstrap, topic, 0, 299) == acked
        assert admin.delete_records([tp])[tp].result(30).low_watermark == 50
        assert low_watermark(b.bootstrap, topic) == 50
    finally:
        b.stop()
