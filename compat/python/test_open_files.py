"""Years of segments on one machine (RELIABILITY.md, W8), as a new user would try it.

The real broker runs under `prlimit --nofile=1024:1024` (soft and hard limit 1024, so Cairn cannot
raise it). confluent-kafka creates 10 topics of 1,000 partitions, produces one record to every
partition, the broker restarts, and a consumer reads every record back. Before the cache of open
segment files, creation stopped at about a third of that with KAFKA_STORAGE_ERROR "Too many open
files". The descriptors, RSS and start-up time are printed (pytest -s) for RELIABILITY.md.
"""

import os
import stat
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cairn_compat import REPO, TARGET, Broker

pytestmark = pytest.mark.skipif(TARGET != "cairn", reason="runs Cairn's own binary under a limit")

TOPICS = 10
PARTITIONS = 1000
LIMIT = 1024


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture
def limited_broker(tmp_path, monkeypatch):
    real = os.environ.get("CAIRN_BIN", str(REPO / "target" / "release" / "cairn"))
    wrapper = tmp_path / "cairn-nofile-1024"
    wrapper.write_text(f'#!/bin/sh\nexec prlimit --nofile={LIMIT}:{LIMIT} -- "{real}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("CAIRN_BIN", str(wrapper))
    b = Broker(TARGET, tmp_path / "broker")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def test_ten_thousand_partitions_under_an_open_files_limit_of_1024(limited_broker):
    b = limited_broker
    limits = Path(f"/proc/{b.proc.pid}/limits").read_text()
    assert any(line.startswith("Max open files") and f"{LIMIT}" in line
               for line in limits.splitlines()), limits
    names = [f"w8-{t}" for t in range(TOPICS)]
    admin = AdminClient({"bootstrap.servers": b.bootstrap, "socket.timeout.ms": 300000})
    started = time.monotonic()
    for name in names:
        futures = admin.create_topics([NewTopic(name, PARTITIONS, 1)], operation_timeout=300,
                                      request_timeout=300)
        futures[name].result(timeout=600)
    created = time.monotonic() - started

    failures = []

    def delivered(err, msg):
        if err is not None:
            failures.append((msg.topic(), msg.partition(), str(err)))

    producer = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 20,
                         "message.timeout.ms": 300000})
    for name in names:
        for p in range(PARTITIONS):
            producer.produce(name, value=f"{name}/{p}".encode(), partition=p,
                             on_delivery=delivered)
            producer.poll(0)
    assert producer.flush(300) == 0
    assert failures == []
    fds_written, rss_written = descriptors(b.proc.pid), rss_mib(b.proc.pid)
    del producer, admin

    # A clean stop closes 10,000 partitions, each with a durable producer snapshot.
    b.stop(timeout=600)
    assert b.last_exit_code == 0, b.log_tail()
    started = time.monotonic()
    b.start(timeout=300)
    restarted = time.monotonic() - started
    fds_started, rss_started = descriptors(b.proc.pid), rss_mib(b.proc.pid)

    consumer = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "w8-reader",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 100})
    consumer.assign([TopicPartition(n, p, 0) for n in names for p in range(PARTITIONS)])
    seen = {}
    deadline = time.monotonic() + 600
    while len(seen) < TOPICS * PARTITIONS and time.monotonic() < deadline:
        for msg in consumer.consume(1000, timeout=1.0):
            assert msg.error() is None, msg.error()
            seen[(msg.topic(), msg.partition(), msg.offset())] = msg.value().decode()
    consumer.close()
    want = {(n, p, 0): f"{n}/{p}" for n in names for p in range(PARTITIONS)}
    assert seen == want
    fds_read, rss_read = descriptors(b.proc.pid), rss_mib(b.proc.pid)
    print(f"\nW8: {TOPICS * PARTITIONS} partitions under nofile {LIMIT}: created in {created:.1f} s; "
          f"after producing {fds_written} fds, {rss_written:.0f} MiB RSS; restart in "
          f"{restarted:.1f} s, then {fds_started} fds, {rss_started:.0f} MiB RSS; after reading "
          f"every record {fds_read} fds, {rss_read:.0f} MiB RSS")
    assert "Too many open files" not in b.log_path.read_text(errors="replace")
