"""`scripts/bench --partitions`: how the brokers' cost grows with the number of partitions
(issue 18, item 6), Cairn beside Apache Kafka in the same run.

One topic of N partitions is created on each broker, for N = 1, 100, 1,000 and 10,000 in turn
(the topics stay, so by the 10,000 row each broker holds 11,101 partitions; Kafka refuses to
create 10,000 at once, so that topic is created with 5,000 and grown with CreatePartitions); then
kafka-producer-perf-test writes the same number of 1 KiB records into it with acks=all and the
round-robin partitioner, so every partition gets batches (the default sticky partitioner would
fill one partition at a time and hide the per-partition cost). After each row: the broker's
resident memory (VmRSS), its open file descriptors against its limit (`/proc/<pid>/limits`), and
its CPU per MiB produced. Page-cache pairing (Kafka's defaults, Cairn's page-cache mode), as the
produce rows of the full run.

Each row after the first names the resource that would run out first if the number of partitions
kept growing, and at about how many partitions: descriptors against the process's limit, resident
memory against the machine's memory, each projected from what the partitions added since the first
row (see first_to_run_out).
"""

import os

# (partitions per row, records per row)
PROFILES = {
    "full": dict(partitions=(1, 100, 1000, 10_000), records=100_000),
    "smoke": dict(partitions=(1, 10, 50), records=2000),
}
PRODUCER_PROPS = ["partitioner.class=org.apache.kafka.clients.producer.RoundRobinPartitioner", "linger.ms=5"]
MIB = 1024 * 1024
# Partitions created by one CreateTopics; more are added with CreatePartitions.
CREATE_AT_ONCE = 5000


def open_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def fd_limit(pid):
    """The soft limit on open files of a process (`Max open files` in /proc/<pid>/limits)."""
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    return int(line.split()[3])
    except (OSError, ValueError, IndexError):
        return None
    return None


def mem_total_mib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024
    return None


def run(bench, h):
    """The `--partitions` phase. `bench` is scripts/bench's Bench; `h` its helpers: produce,
    ordered, log, BenchError, create_topic, partitions_served, wait_until, RECORD_SIZE."""
    prof = PROFILES["smoke" if bench.args.smoke else "full"]
    results = bench.results
    records = prof["records"]
    mib = records * h.RECORD_SIZE / MIB
    bench.start_all(cairn_mode="pc")
    held = 0
    for i, n in enumerate(prof["partitions"]):
        held += n
        for b in h.ordered(bench.brokers, i):
            what = f"{n} partitions on {b.name}"
            h.log(what)

            def row(b=b, n=n, held=held):
                topic = f"scale-{n}"
                # Kafka's controller refuses one request that makes more than 10,000 metadata records
                # ("excessively large batch operation"): a topic of 10,000 partitions is created in
                # halves, the second with CreatePartitions (kafka-topics --alter), on both brokers.
                first = n if n <= CREATE_AT_ONCE else n // 2
                h.create_topic(b.port, topic, first, {}, timeout=900)
                if first < n:
                    rc, _out, path = bench.runner.tool(
                        "kafka-topics", ["--bootstrap-server", b.bootstrap, "--alter", "--topic", topic,
                                         "--partitions", n], timeout=900, label=f"scale-{n}-alter-{b.name}")
                    if rc != 0:
                        raise h.BenchError(f"kafka-topics --alter --partitions {n} failed on {b.name} (log: {path})")
                    want = {topic: list(range(n))}
                    h.wait_until(lambda: h.partitions_served(b.port, want)[0], 900, 0.2, f"{topic} to be served")
                b.topics[topic] = n
                res, cpu = b.measured(lambda: h.produce(bench.runner, b, topic, records,
                                                        extra_props=PRODUCER_PROPS, label=f"scale-{n}-{b.name}"),
                                      mib)
                results.add(f"scale.produce.{n}", b.name, res["mib_per_s"])
                if cpu is not None:
                    results.add(f"scale.cpu.{n}", b.name, cpu)
                results.add(f"scale.rss.{n}", b.name, b.rss_kib() / 1024)
                fds, limit = open_fds(b.pid), fd_limit(b.pid)
                if fds is not None:
                    results.add(f"scale.fds.{n}", b.name, fds)
                if limit:
                    results.add(f"scale.fdlimit.{n}", b.name, limit)
                results.add(f"scale.held.{n}", b.name, held)

            bench.attempt(what, row)
    results.notes.append(
        f"partitions: one topic per row, the topics of earlier rows kept; {records} records of 1 KiB per row, "
        f"acks=all, {' '.join(PRODUCER_PROPS)}; page-cache pairing; one round")


def first_to_run_out(results, sizes, n, broker):
    """("descriptors" | "memory", projected partitions) for the row of n partitions, or None.

    Projected from what each partition added since the first row (so the fixed cost of an idle
    broker is not counted per partition): the partitions held when the resource would reach its
    limit (the process's descriptor limit; the machine's memory). Cairn's descriptors are not a
    limit: its open-files cache (`cairn.log.open.files.max`, half the limit) closes cold files.
    """
    first = sizes[0]
    if n == first:
        return None
    held, held0 = results.median(f"scale.held.{n}", broker), results.median(f"scale.held.{first}", broker)
    if not held or held0 is None or held <= held0:
        return None
    left = []
    total = mem_total_mib()
    rss, rss0 = results.median(f"scale.rss.{n}", broker), results.median(f"scale.rss.{first}", broker)
    if rss is not None and rss0 is not None and total and rss > rss0:
        left.append((held + (total - rss) / ((rss - rss0) / (held - held0)), "memory"))
    fds, fds0 = results.median(f"scale.fds.{n}", broker), results.median(f"scale.fds.{first}", broker)
    limit = results.median(f"scale.fdlimit.{n}", broker)
    if broker != "cairn" and fds is not None and fds0 is not None and limit and fds > fds0:
        left.append((held + (limit - fds) / ((fds - fds0) / (held - held0)), "descriptors"))
    if not left:
        return None
    partitions, what = min(left)
    return what, partitions


def render_table(results, fmt):
    """The scaling rows as a markdown table, or [] when none was measured."""
    sizes = sorted({int(k.rsplit(".", 1)[1]) for k in results.values if k.startswith("scale.produce.")})
    if not sizes:
        return []
    lines = ["", "| partitions (held by then) | produce MiB/s: Kafka / Cairn / ratio | CPU ms per MiB: Kafka / Cairn "
                 "| VmRSS MiB: Kafka / Cairn / ratio | open files (limit): Kafka / Cairn | first to run out "
                 "(projected partitions): Kafka / Cairn |",
             "|---|---|---|---|---|---|"]

    def pair(key, ratio=True):
        k, c = results.median(key, "kafka"), results.median(key, "cairn")
        cells = f"{fmt(k)} / {fmt(c)}"
        if ratio:
            cells += " / " + ("n/a" if not k or c is None else f"{c / k:.2f}×")
        return cells

    def fds(n, broker):
        used, limit = results.median(f"scale.fds.{n}", broker), results.median(f"scale.fdlimit.{n}", broker)
        return "n/a" if used is None else f"{used:.0f} ({limit:.0f})" if limit else f"{used:.0f}"

    def out(n, broker):
        got = first_to_run_out(results, sizes, n, broker)
        return "n/a" if got is None else f"{got[0]} (~{got[1]:,.0f})"

    for n in sizes:
        held = results.median(f"scale.held.{n}", "cairn") or results.median(f"scale.held.{n}", "kafka")
        lines.append(f"| {n:,} ({held or 0:,.0f}) | {pair(f'scale.produce.{n}')} | {pair(f'scale.cpu.{n}', False)} "
                     f"| {pair(f'scale.rss.{n}')} | {fds(n, 'kafka')} / {fds(n, 'cairn')} "
                     f"| {out(n, 'kafka')} / {out(n, 'cairn')} |")
    return lines
