"""Broker-driven workloads for scripts/bench: several kcat (librdkafka, C) producers and consumers
at once, so that the brokers and not one client JVM set the pace.

Each producer process sends its own file of newline-separated records (`kcat -P -l`, acks=all,
sticky partitioning over every partition of the topic); each consumer process reads the whole
topic from offset 0 to its end (`kcat -C -o beginning -e`, no group) and prints one byte per record,
which is counted here, so a short read is an error rather than a fast figure. Throughput is the
records' bytes over the wall time from starting the first process to the end of the last.
"""

import os
import re
import subprocess
import threading
import time


class KcatError(Exception):
    """A kcat process failed or moved fewer records than asked; the message says which."""


def version():
    """kcat's version and its librdkafka's, as `kcat -V` prints them."""
    out = subprocess.run(["kcat", "-V"], capture_output=True, text=True).stdout
    m = re.search(r"Version (\S+) .*?librdkafka (\S+)", out)
    return f"kcat {m.group(1)} (librdkafka {m.group(2)})" if m else "kcat (version unknown)"


def records_file(path, size, count):
    """Writes `count` records of `size` bytes to `path`, one a line (kcat drops the newline)."""
    if os.path.exists(path) and os.path.getsize(path) == (size + 1) * count:
        return path
    with open(path, "w") as f:
        for i in range(count):
            f.write((f"{i:012d}-" + "x" * size)[:size] + "\n")
    return path


def produce(bootstrap, topic, files, logdir, timeout=600):
    """One `kcat -P` per file, all at once; returns the seconds from the first start to the last end."""
    procs = []
    t0 = time.monotonic()
    for n, path in enumerate(files):
        log = open(os.path.join(logdir, f"kcat-produce-{topic}-{n}.log"), "w")
        cmd = ["kcat", "-P", "-b", bootstrap, "-t", topic, "-l", path, "-X", "acks=all",
               "-X", "linger.ms=5", "-X", "batch.size=1000000", "-X", "queue.buffering.max.kbytes=65536"]
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
    failed = []
    for p, log in procs:
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            rc = "timeout"
        log.close()
        if rc != 0:
            failed.append(f"{log.name} (exit {rc})")
    elapsed = time.monotonic() - t0
    if failed:
        raise KcatError(f"kcat -P failed: {', '.join(failed)}")
    return elapsed


def consume(bootstrap, topic, records, consumers, logdir, timeout=600):
    """`consumers` kcat -C processes each read all of `topic` (expected to hold `records`);
    returns the seconds from the first start to the last end."""
    procs = []
    counts = [0] * consumers
    t0 = time.monotonic()
    for n in range(consumers):
        log = open(os.path.join(logdir, f"kcat-consume-{topic}-{n}.log"), "w")
        cmd = ["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "."]
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        procs.append((subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log), log))

    def count(n, stream):
        while True:
            chunk = stream.read(1 << 16)
            if not chunk:
                return
            counts[n] += len(chunk)

    readers = [threading.Thread(target=count, args=(n, p.stdout), daemon=True) for n, (p, _) in enumerate(procs)]
    for r in readers:
        r.start()
    failed = []
    for n, (p, log) in enumerate(procs):
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            rc = "timeout"
        readers[n].join(timeout=30)
        log.close()
        if rc != 0 or counts[n] != records:
            failed.append(f"{log.name} (exit {rc}, {counts[n]} of {records} records)")
    elapsed = time.monotonic() - t0
    if failed:
        raise KcatError(f"kcat -C failed: {', '.join(failed)}")
    return elapsed
