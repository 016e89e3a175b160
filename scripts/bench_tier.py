"""`scripts/bench --tier`: what the object-storage tier costs (issue 13's benchmarks), Cairn alone.

For each store, `file://` (a directory on the same disk) and a moto S3 server on loopback (moto
keeps objects in memory, in Python), on a fresh data directory:

  - consume from offset 0 (kafka-consumer-perf-test, 8 partitions, 1 KiB records) a topic whose
    data lives only in the tier (`local.retention.ms=1`, every segment uploaded, rolled by
    `cairn.remote.upload.interval.ms`, then deleted locally) against the same amount of data in a
    local topic; both cold: Cairn restarted (its cache of remote data is in memory) and the page
    cache of the data directory and of the store directory dropped before each read;
  - produce (kafka-producer-perf-test, acks=all, 8 partitions, Cairn's default fsync before
    ack, as for every row here: only durable data is uploaded, and in page-cache mode the active
    segment is never rolled for the tier) into a tiered topic whose segments are uploaded (then deleted locally) while it runs,
    against an untiered one; rounds alternate, and each starts with no upload pending.

Goals: tier consume ≥ 0.8× local on `file://`; produce with uploads ≤ 10% slower. The rows go
into their own table (local or no uploads / tier or uploads / ratio / goal).
"""

import os
import subprocess
import time

MIB = 1024 * 1024

# (figure, label, unit, goal): the "base" value is local / no uploads, "tier" the other.
TIER_FIGURES = [
    ("tier.consume.file", "consume from offset 0, cold, 8 partitions: local topic / tier only (`file://`)",
     "MiB/s", ("ratio>=", 0.8)),
    ("tier.consume.s3", "consume from offset 0, cold, 8 partitions: local topic / tier only (moto S3)",
     "MiB/s", None),
    ("tier.produce.file", "produce 1 KiB acks=all, 8 partitions, fsync before ack: untiered / tiered with uploads running (`file://`)",
     "MiB/s", ("ratio>=", 0.9)),
    ("tier.produce.s3", "produce 1 KiB acks=all, 8 partitions, fsync before ack: untiered / tiered with uploads running (moto S3)",
     "MiB/s", ("ratio>=", 0.9)),
    ("tier.cpu.consume.file", "broker CPU per MiB consumed: local / tier (`file://`)", "ms/MiB", None),
    ("tier.cpu.consume.s3", "broker CPU per MiB consumed: local / tier (moto S3)", "ms/MiB", None),
    ("tier.cpu.produce.file", "broker CPU per MiB produced: untiered / tiered with uploads (`file://`)", "ms/MiB", None),
    ("tier.cpu.produce.s3", "broker CPU per MiB produced: untiered / tiered with uploads (moto S3)", "ms/MiB", None),
]

PROFILES = {
    # MiB read per consume (per store), records per produce, rounds, segment.bytes.
    "full": dict(consume_mib={"file": 512, "s3": 128}, produce_records={"file": 100_000, "s3": 50_000}, rounds=3,
                 segment_bytes=16 * MIB),
    "smoke": dict(consume_mib={"file": 8, "s3": 8}, produce_records={"file": 4000, "s3": 4000}, rounds=1,
                  segment_bytes=MIB),
}
PARTITIONS = 8
BUCKET = "cairn-bench"


class Moto:
    def __init__(self, port, log_path):
        self.port, self.log_path = port, log_path
        self.proc = None

    def start(self, wait_until):
        out = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=out, stderr=subprocess.STDOUT)
        out.close()
        import socket

        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                return False

        wait_until(up, 30, 0.05, "moto_server")
        import boto3
        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.port}", aws_access_key_id="test",
                     aws_secret_access_key="test", region_name="us-east-1").create_bucket(Bucket=BUCKET)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.proc = None


def store_settings(store, store_dir, moto_port):
    common = ["remote.log.storage.system.enable=true", "cairn.remote.upload.interval.ms=1000",
              "log.retention.check.interval.ms=500"]
    if store == "file":
        return common + [f"cairn.remote.storage.url=file://{store_dir}"]
    return common + [f"cairn.remote.storage.url=s3://{BUCKET}/bench",
                     f"cairn.remote.storage.s3.endpoint=http://127.0.0.1:{moto_port}",
                     "cairn.remote.storage.s3.region=us-east-1",
                     "cairn.remote.storage.s3.access.key.id=test",
                     "cairn.remote.storage.s3.secret.access.key=test",
                     "cairn.remote.storage.s3.allow.http=true"]


def local_log_bytes(data_dir, topic):
    total = 0
    for p in range(PARTITIONS):
        d = os.path.join(data_dir, f"{topic}-{p}")
        if os.path.isdir(d):
            total += sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".log"))
    return total


def run(bench, h):
    """The `--tier` phase. `bench` is scripts/bench's Bench (Cairn only); `h` its helpers:
    produce, consume, evict_page_cache, free_port, log, BenchError, wait_until, RECORD_SIZE."""
    prof = PROFILES["smoke" if bench.args.smoke else "full"]
    if bench.args.rounds is not None:
        prof = dict(prof, rounds=bench.args.rounds)
    cairn, results = bench.cairn, bench.results
    moto = Moto(h.free_port(), os.path.join(bench.workdir, "logs", "moto.log"))
    results.notes.append(
        f"tier: segment.bytes={prof['segment_bytes'] // MIB} MiB, {PARTITIONS} partitions, 1 KiB records; "
        f"consume {prof['consume_mib']['file']} MiB (file://) and {prof['consume_mib']['s3']} MiB (moto S3) "
        f"per read; produce {prof['produce_records']['file']} records (file://) and {prof['produce_records']['s3']} (moto S3); {prof['rounds']} rounds (medians); "
        f"remote reads: 1 MiB ranged GETs into the remote cache (`cairn.remote.cache.bytes`), "
        f"batches found through the uploaded offset indexes and written to the socket from the "
        f"cached chunks; a partition's first scrub cycle (every remote object read back) runs "
        f"once after its upload, the next one a day later (`cairn.remote.scrub.interval.ms`, "
        f"remembered across restarts in the manifest)")
    for store in ("file", "s3"):
        store_dir = os.path.join(bench.workdir, "cairn", f"store-{store}")
        os.makedirs(store_dir, exist_ok=True)
        cairn.data_dir = os.path.join(bench.workdir, "cairn", f"data-{store}")
        os.makedirs(cairn.data_dir, exist_ok=True)
        cairn.topics = {}
        cairn.extra_settings = store_settings(store, store_dir, moto.port)
        try:
            if store == "s3":
                h.log("starting moto_server")
                moto.start(h.wait_until)
            h.log(f"tier ({store}): starting cairn")
            cairn.start(mode="fs")
            bench.attempt(f"tier consume ({store})", lambda: consume_rows(bench, h, prof, store, store_dir))
            bench.attempt(f"tier produce ({store})", lambda: produce_rows(bench, h, prof, store))
        except h.BenchError as e:
            results.fail(f"tier ({store})", e)
        finally:
            cairn.stop()
            cairn.extra_settings = []
            moto.stop()


def consume_rows(bench, h, prof, store, store_dir):
    cairn, results = bench.cairn, bench.results
    mib = prof["consume_mib"][store]
    records = mib * MIB // h.RECORD_SIZE
    seg = str(prof["segment_bytes"])
    local, tier = f"local-{store}", f"tier-{store}"
    cairn.create_topic(local, PARTITIONS, {"segment.bytes": seg, "retention.ms": "-1"})
    cairn.create_topic(tier, PARTITIONS, {"segment.bytes": seg, "retention.ms": "-1",
                                         "remote.storage.enable": "true", "local.retention.ms": "1"})
    for topic in (local, tier):
        h.log(f"tier ({store}): writing {mib} MiB to {topic}")
        h.produce(bench.runner, cairn, topic, records, label=f"fill-{topic}")
    # Every segment of the tiered topic is uploaded (the active one is rolled by the upload
    # interval), then deleted locally: the data lives only in the store.
    t0 = time.monotonic()
    h.wait_until(lambda: local_log_bytes(cairn.data_dir, tier) == 0, 900, 0.5,
                 f"{tier} uploaded and gone from the local disk")
    results.notes.append(f"tier ({store}): {mib} MiB uploaded and deleted locally "
                         f"{time.monotonic() - t0:.0f} s after the last write")
    for rnd in range(prof["rounds"]):
        order = [(local, "base"), (tier, "tier")]
        for topic, column in (order if rnd % 2 == 0 else list(reversed(order))):
            what = f"tier ({store}) cold consume round {rnd + 1} of {topic}"
            h.log(what)

            def cold(topic=topic):
                cairn.stop()
                h.evict_page_cache(cairn.data_dir)
                h.evict_page_cache(store_dir)
                cairn.start(mode="fs")
                return cairn.measured(lambda: h.consume(bench.runner, cairn, topic, records,
                                                        label=f"cold-{topic}"), mib)

            got = bench.attempt(what, cold)
            if got is not None:
                results.add(f"tier.consume.{store}", column, got[0]["mib_per_s"])
                if got[1] is not None:
                    results.add(f"tier.cpu.consume.{store}", column, got[1])


def produce_rows(bench, h, prof, store):
    cairn, results = bench.cairn, bench.results
    records = prof["produce_records"][store]
    mib = records * h.RECORD_SIZE / MIB
    seg = str(prof["segment_bytes"])
    for rnd in range(prof["rounds"]):
        # The tiered topic keeps nothing it uploaded (as a tiered topic would), so an empty local
        # log says its uploads are done.
        order = [("base", {}), ("tier", {"remote.storage.enable": "true", "local.retention.ms": "1"})]
        for column, extra in (order if rnd % 2 == 0 else list(reversed(order))):
            topic = bench.topic(f"produce-{column}-{store}")
            cairn.create_topic(topic, PARTITIONS, {"segment.bytes": seg, **extra})
            what = f"tier ({store}) produce round {rnd + 1} into {topic}"
            h.log(what)
            got = bench.attempt(what, lambda topic=topic: cairn.measured(
                lambda: h.produce(bench.runner, cairn, topic, records, label=f"produce-{topic}"), mib))
            if got is not None:
                results.add(f"tier.produce.{store}", column, got[0]["mib_per_s"])
                if got[1] is not None:
                    results.add(f"tier.cpu.produce.{store}", column, got[1])
            if column == "tier":
                # Let this topic's uploads finish, so that the next round starts without them.
                h.wait_until(lambda topic=topic: local_log_bytes(cairn.data_dir, topic) == 0, 600, 0.5,
                             f"{topic}'s uploads")


def render_table(results):
    """The tier rows as a markdown table, or [] when none was measured."""
    import statistics

    rows = []
    for key, label, unit, goal in TIER_FIGURES:
        vals = results.values.get(key, {})
        base = statistics.median(vals["base"]) if vals.get("base") else None
        tier = statistics.median(vals["tier"]) if vals.get("tier") else None
        if base is None and tier is None:
            continue
        ratio = tier / base if base and tier is not None else None
        verdict = ""
        if goal is not None:
            kind, x = goal
            verdict = "not measured" if ratio is None else \
                ("met" if ratio >= x else "not met") + f" (goal ≥ {x}×)"
        rows.append(f"| {label} | {unit} | {fmt(base)} | {fmt(tier)} | "
                    f"{'n/a' if ratio is None else f'{ratio:.2f}×'} | {verdict} |")
    if not rows:
        return []
    return ["", "| tier figure | unit | local / no uploads | tier / uploads | ratio | goal |",
            "|---|---|---:|---:|---:|---|"] + rows


def fmt(v):
    if v is None:
        return "n/a"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"
