"""Issue 17 over the object-storage tier, with the real binary against a real S3 protocol server
(moto_server, started as `test_tier.py` does): a tiered compacted topic restored onto an empty
data directory holds its records only in the bucket, and lookups and a snapshot of it answer
exactly what a model of latest values says (overwrites, tombstones, keys written once).
"""

import json
import random
import shutil
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cairn_compat import TARGET, Broker, free_port, wait_until
from test_keys import read_snapshot
from test_tier import local_segments, new_bucket, s3, tier_args, tiered_end  # noqa: F401

pytestmark = pytest.mark.skipif(TARGET != "cairn", reason="Cairn's key lookups over its tier")

KEYS = 200


def get(http, path):
    """(status, parsed JSON body) of one GET."""
    try:
        with urllib.request.urlopen(http + path, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def lookup(http, topic, key):
    return get(http, f"/v1/topics/{topic}/keys/{urllib.parse.quote(key, safe='')}")



def test_lookups_and_a_snapshot_of_a_compacted_topic_only_the_bucket_holds(s3, tmp_path):
    port, client = s3
    bucket = new_bucket(client)
    http_port = free_port()
    http = f"http://127.0.0.1:{http_port}"
    b = Broker("cairn", tmp_path / "broker")
    b.http = http  # read_snapshot (test_keys.py) reads the broker's HTTP address
    b.extra_args = tier_args(port, bucket) + ["--set", f"cairn.http.listen=127.0.0.1:{http_port}"]
    b.start()
    topic = f"kv-{uuid.uuid4().hex[:6]}"
    model = {}
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic(topic, 1, 1, config={
            "cleanup.policy": "compact", "remote.storage.enable": "true",
            "segment.bytes": "4000", "retention.ms": "-1", "local.retention.bytes": "1",
            "delete.retention.ms": "600000"})])[topic].result(30)
        p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 5})
        rnd = random.Random(17)
        # Round 0 writes every key; later rounds overwrite or delete some, so most keys' latest
        # records lie in old segments and some keys end as tombstones.
        for round_no in range(4):
            for i in range(KEYS):
                key = f"key-{i:04d}"
                if round_no and rnd.random() < 0.6:
                    continue
                if round_no and rnd.random() < 0.15:
                    p.produce(topic, key=key.encode(), value=None)
                    model.pop(key, None)
                else:
                    value = f"value-{i}-{round_no}-" + "z" * rnd.randrange(1, 60)
                    p.produce(topic, key=key.encode(), value=value.encode())
                    model[key] = value
                p.poll(0)
            assert p.flush(30) == 0
        # Every record (the active segment's too, rolled by the uploader) reaches the bucket.
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "kv-end"})
        end = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
        c.close()
        wait_until(lambda: tiered_end(client, bucket, topic) >= end, timeout=90,
                   what="every record in the tier")
    finally:
        b.stop()
    assert b.last_exit_code == 0

    # A restore onto an empty data directory: the records are only in the bucket.
    shutil.rmtree(b.data_dir)
    b.start()
    try:
        assert local_segments(b, topic) == 1
        index_dir = b.data_dir / "cairn-key-index" / f"{topic}-0" / "remote"
        assert not list(index_dir.glob("*.keys"))

        def check_lookups():
            for i in range(KEYS):
                key = f"key-{i:04d}"
                status, body = lookup(http, topic, key)
                if key in model:
                    assert status == 200, (key, status, body)
                    assert body["value"] == model[key], (key, body)
                    # The local log starts at `end`: every answer came from the bucket.
                    assert body["offset"] < end
                else:
                    assert status == 404, (key, status, body)

        # The tier's manifest is read shortly after the start; until then lookups say 503.
        wait_until(lambda: lookup(http, topic, "no-such-key")[0] != 503, timeout=30,
                   what="the tier's manifest read")
        # A snapshot first (the key files of the bucket's segments were built by the lookup
        # above, which searched them all, or by the snapshot's plan).
        snapshot, offsets = read_snapshot(b, topic)
        assert snapshot == model
        assert offsets == {0: end}
        assert list(index_dir.glob("*.keys"))
        check_lookups()
    finally:
        b.stop()
    # Restarted without any key file: lookups first (each builds what it needs from the
    # bucket), then a snapshot.
    shutil.rmtree(b.data_dir / "cairn-key-index")
    b.start()
    try:
        wait_until(lambda: lookup(http, topic, "no-such-key")[0] != 503, timeout=30,
                   what="the tier's manifest read")
        check_lookups()
        assert list(index_dir.glob("*.keys"))
        snapshot, offsets = read_snapshot(b, topic)
        assert snapshot == model
        assert offsets == {0: end}
    finally:
        b.stop()
