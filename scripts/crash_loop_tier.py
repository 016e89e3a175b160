"""`scripts/crash-loop --tier`: kill -9 of Cairn, and of the S3 server, while a tiered topic
uploads, writes manifests, deletes and cleans remote segments, and while Cairn restores an empty
data directory from the bucket; after every restart every acknowledged record is read back (at
its offset, once, in order).

A moto S3 server (`moto_server`, in memory) on loopback holds the bucket. Cairn runs with the
tier on (uploads every second, a short retention check) and two tiered topics:
  - `tier` (2 partitions, 8 KiB segments, local.retention.bytes=16384, retention.ms=-1): most of
    the log lives only in the bucket, and nothing may ever be missing from offset 0;
  - `tier-ret` (1 partition, 4 KiB segments, local.retention.bytes=4096, retention.bytes=32768,
    file.delete.delay.ms=0): remote segments expire all the time, so the bucket sees deletions;
  - `tier-compact` (1 partition, cleanup.policy=compact,delete keeping everything, 16 KiB
    segments, local.retention.bytes=16384, min.cleanable.dirty.ratio=0.01): keyed records (40
    keys) whose remote-only segments the tier's cleaner rewrites (a multipart upload per cleaned
    segment, then a manifest swapping them in; replaced objects are deleted a minute later).
An idempotent and a plain producer (acks=all) write to all three. Each cycle kills at a chosen
moment, in turn: at random; right after the S3 server answered a segment upload (the manifest
naming it not written yet); right after a manifest write; right after a remote deletion; right
after a cleaned segment's upload completed (before the manifest naming it); right after the
manifest write that follows a cleaned upload (the swap, before the replaced objects are
collected) (moto's request log shows each); during a restore: producers stopped, a group's
offsets committed, the bucket caught up with every partition, Cairn stopped, its data directory
deleted, Cairn started on the empty directory and killed after one to three manifest reads of
the restore (its broker log shows the restore begun and not done), then started again, which
must restore from scratch; and a kill -9 of the S3 server itself, restarted (empty: moto keeps
everything in memory) and the bucket created again while Cairn runs, before Cairn is killed too.
After each restart of Cairn (orphaned objects must not block it) it checks:
  - every acknowledged record of `tier` is at its acknowledged offset, the log still starts at
    0, and offsets hold the same record across cycles; idempotent records are stored once;
  - on `tier-ret` a record may be missing only below the log start, which never goes back;
  - on `tier-compact` a record may be missing only when a later record of its key is there, and
    the last record of each key is its last acknowledged one (or a later one sent, stored, its
    answer lost to the kill);
  - after the restore, every topic's configs and the group's committed offsets are back;
  - after a kill of the S3 server, records that were then only in the bucket are lost with the
    server's memory (a real store keeps them): they are counted, never excused otherwise.
"""

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

TIER, TIER_RET, TIER_COMPACT = "tier", "tier-ret", "tier-compact"
PARTS = {TIER: 2, TIER_RET: 1, TIER_COMPACT: 1}
TOPIC_CONFIGS = {
    TIER: {"remote.storage.enable": "true", "segment.bytes": "8192",
           "local.retention.bytes": "16384", "retention.ms": "-1"},
    TIER_RET: {"remote.storage.enable": "true", "segment.bytes": "4096",
               "local.retention.bytes": "4096", "retention.bytes": "32768",
               "retention.ms": "-1", "file.delete.delay.ms": "0"},
    # Compacted and tiered: local retention leaves most of it only in the bucket, where the
    # tier's cleaner rewrites it; replaced objects wait a minute before they are deleted.
    TIER_COMPACT: {"remote.storage.enable": "true", "cleanup.policy": "compact,delete",
                   "segment.bytes": "16384", "local.retention.bytes": "16384",
                   "retention.ms": "-1", "retention.bytes": "-1",
                   "min.cleanable.dirty.ratio": "0.01", "file.delete.delay.ms": "60000"},
}
KEYS = 40  # distinct keys of the compacted topic
MOMENTS = ("random", "upload", "manifest", "deletion", "clean-upload", "clean-swap", "restore",
           "s3-server")
RESTORE_GROUP = "tier-crash-restore"
BUCKET, PREFIX = "cairn-crash", "cluster"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    """moto_server on one loopback port for the whole run; its request log is what tells the
    kill moments (each request is one line: `"PUT /bucket/key HTTP/1.1" 200`)."""

    def __init__(self, log_path):
        self.port = free_port()
        self.log_path = log_path
        self.proc = None

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"moto_server did not start; see {self.log_path}")
                time.sleep(0.05)
        import boto3
        client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.port}",
                              aws_access_key_id="test", aws_secret_access_key="test",
                              region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def requests_since(self, pos):
        """(method, key, status) of every request logged after byte `pos`."""
        return self.read_requests(pos)[0]

    def read_requests(self, pos):
        """requests_since(pos), and the position after the last whole line read."""
        with open(self.log_path, "rb") as f:
            f.seek(pos)
            data = f.read()
        data = data[:data.rfind(b"\n") + 1]
        return self.parse(data.decode(errors="replace")), pos + len(data)

    @staticmethod
    def parse(text):
        # S3 deletes come as DeleteObjects (`POST /bucket?delete`): the key is then `?delete`.
        return re.findall(r'"(PUT|DELETE|POST|GET|HEAD) /' + BUCKET + r'/?(\S*) HTTP/[\d.]+" (\d+)', text)


def is_delete(method, key):
    return method == "DELETE" or (method == "POST" and key.startswith("?delete"))


def tier_settings(moto_port):
    return [
        "remote.log.storage.system.enable=true",
        f"cairn.remote.storage.url=s3://{BUCKET}/{PREFIX}",
        f"cairn.remote.storage.s3.endpoint=http://127.0.0.1:{moto_port}",
        "cairn.remote.storage.s3.region=us-east-1",
        "cairn.remote.storage.s3.access.key.id=test",
        "cairn.remote.storage.s3.secret.access.key=test",
        "cairn.remote.storage.s3.allow.http=true",
        "cairn.remote.upload.interval.ms=1000",
        "log.retention.check.interval.ms=200",
        "group.initial.rebalance.delay.ms=0",
        "offsets.topic.num.partitions=1",
    ]


def producer_conf(bootstrap, idempotent):
    # The client's default in-flight count (5): a kill with several requests stored but not
    # answered makes the idempotent producer retry older batches after the restart, which
    # Cairn must answer as duplicates (RELIABILITY.md, finding 1). A fatal error is counted.
    return {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2, "log_level": 0,
            "enable.idempotence": idempotent, "message.timeout.ms": 60000,
            "socket.timeout.ms": 5000, "reconnect.backoff.max.ms": 200}


class Acks:
    def __init__(self):
        self.acked = {}          # value -> (topic, partition, offset)
        self.sent_keys = {}      # value -> key, for every record sent to the compacted topic
        self.idempotent = set()
        self.fatal = []          # fatal producer errors (the producer is replaced by a new one)
        self.lock = threading.Lock()


def produce(bootstrap, acks, stop, idempotent, name, counter, rate):
    """Round-robin over the partitions of the topics (one record in four to `tier-ret`, one in
    eight to `tier-compact` with one of KEYS keys, also in the value), about `rate` records/s,
    each with a payload of about 100 bytes."""
    fatal = []

    def on_error(err):
        if err.fatal():
            fatal.append(err.name())

    def new_producer():
        return Producer({**producer_conf(bootstrap, idempotent), "error_cb": on_error})

    p = new_producer()
    retired = []

    def delivered(err, msg):
        if err is None:
            with acks.lock:
                acks.acked[msg.value().decode()] = (msg.topic(), msg.partition(), msg.offset())
                if idempotent:
                    acks.idempotent.add(msg.value().decode())

    t0, sent = time.time(), 0
    while not stop.is_set():
        counter[0] += 1
        sent += 1
        n = counter[0]
        topic = {0: TIER_RET, 3: TIER_RET, 1: TIER_COMPACT}.get(n % 8, TIER)
        key = None
        if topic == TIER_COMPACT:
            key = f"k{(n // 8) % KEYS}"
            value = f"{name}-{n}-{key}-" + "x" * 70
            with acks.lock:
                acks.sent_keys[value] = key
        else:
            value = f"{name}-{n}-" + "x" * 80
        try:
            p.produce(topic, value=value.encode(), key=key and key.encode(),
                      partition=n % PARTS[topic], on_delivery=delivered)
        except BufferError:
            p.poll(0.05)
        except KafkaException:
            pass  # fatal: handled below
        p.poll(0)
        if fatal:
            # Counted and reported; what it had not acknowledged is simply not acknowledged.
            # OUT_OF_ORDER_SEQUENCE_NUMBER (a retry of a batch stored before the kill refused
            # after the restart: RELIABILITY.md, finding 1) is a violation, checked below.
            with acks.lock:
                acks.fatal += fatal
            fatal.clear()
            # Destroying a producer waits for what it still holds: drop that first.
            p.purge()
            retired.append(p)
            p = new_producer()
        ahead = sent / rate - (time.time() - t0)
        if ahead > 0:
            stop.wait(ahead)
    p.flush(5)
    for old in retired:
        old.purge()


def read_all(bootstrap):
    """(topic, partition) -> ({offset: value}, offsets in the order read, log start)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "tier-crash-verify", "log_level": 0,
                  "enable.auto.commit": False, "socket.timeout.ms": 10000,
                  "auto.offset.reset": "earliest"})
    out = {}
    try:
        for topic, n in PARTS.items():
            for p in range(n):
                tp = TopicPartition(topic, p)
                low, high = c.get_watermark_offsets(tp, timeout=30)
                got, order = {}, []
                if high > low:
                    c.assign([TopicPartition(topic, p, low)])
                    deadline = time.time() + 180
                    while time.time() < deadline:
                        msg = c.poll(1.0)
                        if msg is None:
                            continue
                        if msg.error():
                            if msg.error().fatal():
                                raise RuntimeError(f"consume error: {msg.error()}")
                            continue
                        order.append(msg.offset())
                        got.setdefault(msg.offset(), msg.value().decode())
                        if msg.offset() >= high - 1:
                            break
                    else:
                        raise RuntimeError(f"{topic}-{p}: reading {low}..{high} timed out "
                                           f"at {order[-1] if order else low}")
                    c.unassign()
                low = max(low, c.get_watermark_offsets(tp, timeout=30)[0])
                out[(topic, p)] = (got, order, low)
    finally:
        c.close()
    return out


def local_starts(data_dir):
    """(topic, partition) -> the base offset of the oldest local segment (what the disk holds)."""
    out = {}
    for topic, n in PARTS.items():
        for p in range(n):
            d = os.path.join(data_dir, f"{topic}-{p}")
            bases = [int(f[:-4]) for f in os.listdir(d) if f.endswith(".log")] if os.path.isdir(d) else []
            out[(topic, p)] = min(bases) if bases else 0
    return out


def retention_starts_until_noticed(log_path, pos):
    """(topic, partition) -> the highest log start local retention logged after byte `pos` of the
    broker log and before Cairn noticed that the store lost the partition's manifest (until
    then it takes the dead store's copy for uploaded and deletes local segments)."""
    with open(log_path, "rb") as f:
        f.seek(pos)
        text = re.sub(r"\x1b\[[0-9;]*m", "", f.read().decode(errors="replace"))
    starts, noticed = {}, set()
    for line in text.splitlines():
        m = re.search(r'topic="?([\w-]+)"? partition=(\d+)', line)
        if not m:
            continue
        tp = (m.group(1), int(m.group(2)))
        if "the tier lost this partition's manifest" in line:
            noticed.add(tp)
        elif "retention deleted segments" in line and tp not in noticed:
            start = re.search(r"log_start_offset=(\d+)", line)
            if start:
                starts[tp] = max(starts.get(tp, 0), int(start.group(1)))
    return starts


class Verifier:
    def __init__(self):
        self.seen = {}        # (topic, partition, offset) -> value, across cycles
        self.log_start = {(t, p): 0 for t, n in PARTS.items() for p in range(n)}
        self.lost_with_store = {}  # (topic, partition) -> offsets below this were only in a killed S3 server
        self.excused = 0
        self.below_start = 0
        self.retention_seen = 0  # the most acknowledged records below the log start in a cycle
        self.duplicates = 0

    def check_compacted(self, data, acked, sent_keys):
        """On the compacted topic, the latest record of each key is exact: an acknowledged record
        may be missing only when a later record of its key is there, and the last record read for
        a key is its last acknowledged one, or a later one that was sent (stored, its answer lost
        to the kill)."""
        problems = []
        got, _, _ = data[(TIER_COMPACT, 0)]
        latest = {}  # key -> (offset, value) read last
        for off in sorted(got):
            key = sent_keys.get(got[off])
            if key is None:
                problems.append(f"{TIER_COMPACT}-0 offset {off} holds {got[off][:20]!r}, never sent")
                continue
            latest[key] = (off, got[off])
        lost_below = self.lost_with_store.get((TIER_COMPACT, 0), 0)
        acked = {v: at for v, at in acked.items() if at[0] == TIER_COMPACT and at[2] >= lost_below}
        acked_latest = {}
        for value, (topic, _, off) in acked.items():
            if topic == TIER_COMPACT:
                key = sent_keys[value]
                if off > acked_latest.get(key, (-1, None))[0]:
                    acked_latest[key] = (off, value)
        for key, (off, value) in acked_latest.items():
            read = latest.get(key)
            if read is None or read[0] < off:
                problems.append(f"{TIER_COMPACT}: key {key}: last acknowledged {value[:20]!r} at offset {off}, "
                                f"read last {read and read[1][:20]!r} at {read and read[0]}")
            elif read[0] == off and read[1] != value:
                problems.append(f"{TIER_COMPACT}: key {key} at offset {off} holds {read[1][:20]!r}, not {value[:20]!r}")
        for value, (topic, _, off) in acked.items():
            if topic == TIER_COMPACT and got.get(off) is None:
                read = latest.get(sent_keys[value])
                if read is None or read[0] <= off:
                    problems.append(f"acknowledged {value[:20]!r} missing at {TIER_COMPACT}-0 offset {off} "
                                    "with no later record of its key")
        return problems

    def check(self, acks, bootstrap):
        data = read_all(bootstrap)
        problems = []
        where = Counter()
        for (topic, p), (got, order, low) in data.items():
            if order != sorted(order) or len(order) != len(set(order)):
                problems.append(f"{topic}-{p}: offsets read out of order or twice")
            if low < self.log_start[(topic, p)]:
                problems.append(f"{topic}-{p}: log start went back from {self.log_start[(topic, p)]} to {low}")
            self.log_start[(topic, p)] = max(self.log_start[(topic, p)], low)
            lost_below = self.lost_with_store.get((topic, p), 0)
            if topic == TIER and low > lost_below:
                problems.append(f"{topic}-{p}: log start {low} on a topic that keeps everything")
            for off, value in got.items():
                at = (topic, p, off)
                if at in self.seen and self.seen[at] != value:
                    problems.append(f"{topic}-{p} offset {off} held {self.seen[at][:20]!r}, now {value[:20]!r}")
                self.seen[at] = value
                where[value] += 1
        excused = below = dups = 0
        with acks.lock:
            acked = dict(acks.acked)
            idempotent = set(acks.idempotent)
            sent_keys = dict(acks.sent_keys)
        problems += self.check_compacted(data, acked, sent_keys)
        for value, (topic, p, off) in acked.items():
            got, _, low = data[(topic, p)]
            stored = got.get(off)
            if stored == value:
                if where[value] > 1:
                    if value in idempotent:
                        problems.append(f"idempotent record {value[:20]!r} stored {where[value]} times")
                    else:
                        dups += 1
                continue
            if stored is not None:
                problems.append(f"acknowledged {value[:20]!r} at {topic}-{p} offset {off}, which holds {stored[:20]!r}")
            elif topic == TIER_COMPACT and off >= self.lost_with_store.get((topic, p), 0):
                pass  # check_compacted: a later record of its key replaced it
            elif off < self.lost_with_store.get((topic, p), 0):
                excused += 1
            elif off < self.log_start[(topic, p)] and topic == TIER_RET:
                below += 1
            else:
                problems.append(f"acknowledged {value[:20]!r} missing at {topic}-{p} offset {off} (log start {low})")
        self.excused, self.below_start, self.duplicates = excused, below, dups
        self.retention_seen = max(self.retention_seen, below)
        return problems, sum(len(g) for g, _, _ in data.values()), len(acked)


def wait_for_request(moto, pos, moment, earliest, latest):
    """Waits until moto logged the request the moment names, after `earliest`, at most until
    `latest`; returns the moment hit ("random" when it was not seen in time)."""
    while time.time() < earliest:
        time.sleep(0.01)
    if moment == "random":
        return moment
    previous = ("", "")
    cleaned = False
    while time.time() < latest:
        requests, pos = moto.read_requests(pos)
        for method, key, status in requests:
            if not status.startswith("2"):
                continue
            if moment == "upload" and method == "PUT" and key.endswith(".log"):
                return moment
            if moment == "manifest" and method == "PUT" and "/manifest/" in key:
                return moment
            # Retired segments are deleted right after the manifest that dropped them.
            if moment == "deletion" and is_delete(method, key) and (
                    "/manifest/" in previous[1] or is_delete(*previous)):
                return moment
            # The tier's cleaner writes each cleaned segment as a multipart upload (segments are
            # far smaller than one part otherwise): its completion is a POST on `<stem>.log?uploadId=`.
            if method == "POST" and ".log?uploadId=" in key:
                if moment == "clean-upload":
                    return moment
                cleaned = True
            # The manifest that swaps the cleaned segments in; the replaced objects stay a minute.
            if moment == "clean-swap" and cleaned and method == "PUT" and "/manifest/" in key:
                return moment
            previous = (method, key)
        time.sleep(0.002)
    return "random"


def tier_ends(moto):
    """(topic, partition) -> the end offset of the newest manifest in the bucket."""
    import boto3
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{moto.port}",
                          aws_access_key_id="test", aws_secret_access_key="test",
                          region_name="us-east-1")
    newest = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{PREFIX}/partitions/"):
        for obj in page.get("Contents", []):
            folder, _, name = obj["Key"].rpartition("/manifest/")
            if name.endswith(".json") and name > newest.get(folder, ""):
                newest[folder] = name
    ends = {}
    for folder, name in newest.items():
        m = json.loads(client.get_object(Bucket=BUCKET, Key=f"{folder}/manifest/{name}")["Body"].read())
        if m.get("segments"):
            ends[(m["topic"], m["partition"])] = m["segments"][-1]["end_offset"]
    return ends


def restore_drill(broker, moto, rng):
    """Commits offsets, waits until the bucket holds every partition to its end, then loses the
    disk: Cairn stopped, the data directory deleted, Cairn started on the empty directory and
    killed part-way through the restore (after one to three manifest reads). Returns the moment hit
    ("restore", or "random" when the restore was over before the kill), the committed offsets
    and a problem, if any."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": RESTORE_GROUP, "log_level": 0,
                  "enable.auto.commit": False})
    highs, committed = {}, []
    for topic, n in PARTS.items():
        for p in range(n):
            highs[(topic, p)] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            committed.append(TopicPartition(topic, p, highs[(topic, p)] // 2))
    c.commit(offsets=committed, asynchronous=False)
    highs[("__consumer_offsets", 0)] = c.get_watermark_offsets(
        TopicPartition("__consumer_offsets", 0), timeout=30)[1]
    c.close()
    deadline = time.time() + 40
    while True:
        ends = tier_ends(moto)
        behind = {tp: (ends.get(tp), high) for tp, high in highs.items() if high and ends.get(tp, 0) < high}
        if not behind:
            break
        if time.time() > deadline:
            return "random", committed, f"the tier did not catch up before the restore: {behind}"
        time.sleep(0.5)
    # Stopped cleanly, which releases the lease on the prefix: after a kill -9 the next broker
    # (another data directory) would wait for the lease to expire (30 s) first.
    broker.stop()
    shutil.rmtree(broker.data_dir)
    log_from, moto_from = broker.log_size(), moto.log_size()

    def start_quietly():
        try:
            broker.start()
        except RuntimeError:
            pass  # killed before it listened

    starter = threading.Thread(target=start_quietly, daemon=True)
    starter.start()
    reads, wanted, pos = 0, rng.randint(1, 3), moto_from
    deadline = time.time() + 30
    while reads < wanted and time.time() < deadline:
        requests, pos = moto.read_requests(pos)
        reads += sum(1 for m, k, st in requests if m == "GET" and "/manifest/" in k and st.startswith("2"))
        time.sleep(0.001)
    broker.kill9()
    starter.join(60)
    with open(broker.log_path, "rb") as f:
        f.seek(log_from)
        text = re.sub(r"\x1b\[[0-9;]*m", "", f.read().decode(errors="replace"))
    mid = "holds topics: restoring" in text and "restore from the tier done" not in text
    return ("restore" if mid else "random"), committed, None


def check_restored(broker, committed):
    """After the restart that finished the restore: the topics' configs and the committed
    offsets are back."""
    problems = []
    with open(broker.log_path, "rb") as f:
        if b"restore from the tier done" not in f.read():
            problems.append("the restart did not finish the restore")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 0})
    resources = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in PARTS]
    for res, future in admin.describe_configs(resources).items():
        entries = future.result(30)
        for name, value in TOPIC_CONFIGS[res.name].items():
            got = entries.get(name)
            if got is None or got.value != value:
                problems.append(f"{res.name}: {name}={got and got.value} after the restore, not {value}")
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": RESTORE_GROUP, "log_level": 0,
                  "enable.auto.commit": False})
    try:
        got = {(tp.topic, tp.partition): tp.offset for tp in c.committed(committed, timeout=30)}
    finally:
        c.close()
    for tp in committed:
        if got.get((tp.topic, tp.partition)) != tp.offset:
            problems.append(f"committed offset of {tp.topic}-{tp.partition} is "
                            f"{got.get((tp.topic, tp.partition))} after the restore, not {tp.offset}")
    return problems


def clean_upload_was_swapped(moto, pos):
    """True when, after the first cleaned upload logged since `pos`, moto also logged a manifest
    write of the same partition before Cairn died: the kill came after the swap."""
    requests = moto.requests_since(pos)
    for i, (method, key, _) in enumerate(requests):
        if method == "POST" and ".log?uploadId=" in key:
            folder = key.split("/segments/")[0]
            return any(m == "PUT" and k.startswith(folder + "/manifest/") for m, k, _ in requests[i + 1:])
    return False


def run_tier(args, rng, make_broker, work):
    """The tiered crash loop. `make_broker(settings)` builds crash-loop's Broker with these
    broker settings. Returns the exit status."""
    started = time.time()
    moto = Moto(os.path.join(work, "moto.log"))
    moto.start()
    broker = make_broker(tier_settings(moto.port))
    acks = Acks()
    verifier = Verifier()
    kills = Counter()
    s3_kills = 0
    counters = {"idem": [0], "plain": [0]}
    ok = False
    try:
        broker.start()
        admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 0})
        futures = admin.create_topics([NewTopic(t, n, 1, config=TOPIC_CONFIGS[t]) for t, n in PARTS.items()])
        for f in futures.values():
            f.result(30)
        for cycle in range(1, args.cycles + 1):
            if cycle > 1:
                broker.start()
            moto_from = moto.log_size()
            stop = threading.Event()
            threads = [threading.Thread(daemon=True, target=produce, args=(
                broker.bootstrap, acks, stop, idem, f"{name}{cycle}", counters[name], 400))
                for name, idem in (("idem", True), ("plain", False))]
            for t in threads:
                t.start()
            wanted = MOMENTS[(cycle - 1) % len(MOMENTS)]
            t0 = time.time()
            restore_problem, committed = None, None
            if wanted == "restore":
                time.sleep(rng.uniform(1.0, 3.0))
                stop.set()
                for t in threads:
                    t.join(timeout=120)
                moment, committed, restore_problem = restore_drill(broker, moto, rng)
                killed_at = time.time() - t0
                kills[moment] += 1
                broker.start()
            elif wanted == "s3-server":
                time.sleep(rng.uniform(1.0, 3.0))
                # What only the bucket holds dies with moto's memory: note where the disk starts.
                moto.kill9()
                s3_kills += 1
                s3_killed_at = broker.log_size()
                for tp, start in local_starts(broker.data_dir).items():
                    verifier.lost_with_store[tp] = max(verifier.lost_with_store.get(tp, 0), start)
                time.sleep(rng.uniform(0.5, 2.0))
                moto.start()
                moment = wanted
                time.sleep(rng.uniform(1.0, 3.0))
            else:
                # A pass of the tier's cleaner reads the whole compacted partition: it waits longer.
                limit = 40 if wanted.startswith("clean") else 15
                moment = wait_for_request(moto, moto_from, wanted, t0 + rng.uniform(1.0, 4.0), t0 + limit)
            late = ""
            if wanted != "restore":
                killed_at = time.time() - t0
                broker.kill9()
                kills[moment] += 1
                if moment == "clean-upload" and clean_upload_was_swapped(moto, moto_from):
                    late = " (its manifest was written before the kill)"
                stop.set()
                broker.start()
            if moment == "s3-server":
                # Segments uploaded to the killed server's memory and then deleted locally before
                # Cairn saw the store come back empty are gone with it.
                for tp, start in retention_starts_until_noticed(broker.log_path, s3_killed_at).items():
                    if tp in verifier.lost_with_store:
                        verifier.lost_with_store[tp] = max(verifier.lost_with_store[tp], start)
            for t in threads:
                t.join(timeout=120)
                if t.is_alive():
                    print("crash-loop: a producer thread did not finish within 120 s", flush=True)
                    return 1
            problems, stored, acked = verifier.check(acks, broker.bootstrap)
            problems += [f"fatal producer error {e} after a restart"
                         for e in acks.fatal if "OUT_OF_ORDER_SEQUENCE" in e]
            if restore_problem:
                problems.append(restore_problem)
            if wanted == "restore" and committed:
                problems += check_restored(broker, committed)
            reqs = Counter("DELETE" if is_delete(m, k) else m
                           for m, k, s in moto.requests_since(moto_from) if s.startswith("2"))
            starts = {f"{t}-{p}": s for (t, p), s in verifier.log_start.items() if s}
            local = {f"{t}-{p}": s for (t, p), s in local_starts(broker.data_dir).items() if s}
            print(f"cycle {cycle}: kill {moment}{late} at {killed_at:.1f} s; acknowledged {acked}, stored {stored}, "
                  f"non-idempotent duplicates {verifier.duplicates}, below log start {verifier.below_start}, "
                  f"lost with the S3 server's memory {verifier.excused}; fatal producer errors "
                  f"{len(acks.fatal)}; log start {starts}; "
                  f"local disk from {local}; S3 requests PUT {reqs['PUT']} DELETE {reqs['DELETE']} "
                  f"GET {reqs['GET']}", flush=True)
            if problems:
                for p in problems[:20]:
                    print(f"  VIOLATION: {p}", flush=True)
                print(f"crash-loop: FAILED in cycle {cycle} (seed {args.seed}); data kept in {work}")
                return 1
            broker.stop()
        on_disk = local_starts(broker.data_dir)
        tiered_only = sum(1 for (t, p, off) in acks.acked.values()
                          if verifier.log_start[(t, p)] <= off < on_disk.get((t, p), 0))
        with open(broker.log_path, "rb") as f:
            text = f.read().decode(errors="replace")
        orphans = sum(int(n) for n in re.findall(r"collected orphan objects in the tier[^\n]*objects=(\d+)",
                                                 re.sub(r"\x1b\[[0-9;]*m", "", text)))
        print(f"crash-loop: kills of Cairn by chosen moment {dict((m, kills[m]) for m in MOMENTS)}; "
              f"kills of the S3 server {s3_kills}; acknowledged records only in the bucket at the end "
              f"{tiered_only}; acknowledged records deleted by remote retention (most in a cycle) "
              f"{verifier.retention_seen}; "
              f"orphaned objects collected at start-up {orphans}; fatal producer errors (producer "
              f"replaced) {dict(Counter(acks.fatal))}", flush=True)
        gaps = []
        if tiered_only == 0:
            gaps.append("no acknowledged record was left only in the bucket")
        if args.cycles >= len(MOMENTS) and verifier.retention_seen == 0:
            gaps.append("remote retention deleted no acknowledged record")
        if gaps:
            print(f"crash-loop: the run did not exercise everything: {'; '.join(gaps)}", flush=True)
            return 1
        ok = True
        print(f"crash-loop: {args.cycles} cycles survived (tiered), {len(acks.acked)} acknowledged records "
              f"all present but {verifier.excused} lost with the S3 server's memory and "
              f"{verifier.below_start} deleted by retention (at the end), {time.time() - started:.0f} s", flush=True)
        return 0
    finally:
        broker.stop()
        moto.stop()
        if not ok:
            print(f"crash-loop: broker log {broker.log_path}, S3 server log {moto.log_path}", flush=True)
