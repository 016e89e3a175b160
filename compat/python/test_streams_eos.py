"""Kafka Streams with processing.guarantee=exactly_once_v2 against Cairn.

compat/streams/WordCount.java (built against org.apache.kafka:kafka-streams of the suite's Kafka
release, fetched from Maven Central by compat/streams/fetch) counts the words of `in` and writes
every new count to `out`, with no cache: one output record per input record. The input arrives
in three parts; during the run Cairn is killed with SIGKILL and restarted twice, and the
Streams JVM is killed with SIGKILL and restarted once. Exactly once means that, as
read_committed shows `out`, every word's counts read 1, 2, ..., n: a gap would be a lost
record, a repeat a record counted twice (an aborted transaction's output seen, or state
restored from an uncommitted changelog)."""

import os
import random
import signal
import struct
import subprocess
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cairn_compat import KAFKA_VERSION, REPO, run_checked

PARTITIONS = 3
WORDS = [f"w{i:02d}" for i in range(40)]
PART_SIZE = 70000  # records in each of the three parts of the input (210,000 in all)


def build_app(tmp_path):
    libs = run_checked([str(REPO / "compat" / "streams" / "fetch")], timeout=900,
                       env={**os.environ, "KAFKA_VERSION": KAFKA_VERSION}).stdout.strip().splitlines()[-1]
    classes = tmp_path / "classes"
    classes.mkdir()
    run_checked(["javac", "-cp", f"{libs}/*", "-d", str(classes),
                 str(REPO / "compat" / "streams" / "WordCount.java")], timeout=300)
    return f"{classes}:{libs}/*"


class App:
    """The Streams JVM: started, killed with SIGKILL, started again on the same state dir."""

    def __init__(self, classpath, broker, workdir):
        self.classpath, self.broker, self.workdir = classpath, broker, workdir
        self.proc = None

    def start(self):
        log = open(self.workdir / "streams.log", "ab")
        self.proc = subprocess.Popen(
            ["java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", self.classpath, "WordCount",
             self.broker.bootstrap, "in", "out", "wordcount", str(self.workdir / "state")],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def log_tail(self):
        return (self.workdir / "streams.log").read_text(errors="replace")[-4000:]


def kill_and_restart(broker):
    broker.proc.send_signal(signal.SIGKILL)
    broker.proc.wait(30)
    broker.proc = None
    broker.start()


def output_end(broker):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "eos-probe"})
    try:
        return sum(c.get_watermark_offsets(TopicPartition("out", p), timeout=10)[1]
                   for p in range(PARTITIONS))
    except Exception:
        return 0
    finally:
        c.close()


def wait_for_output(broker, app, at_least, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if output_end(broker) >= at_least:
            return
        assert app.proc.poll() is None, f"the Streams application exited:\n{app.log_tail()}"
        time.sleep(0.3)
    raise AssertionError(f"no output progress to {at_least}:\n{app.log_tail()}")


def produce_part(broker, rng, expected):
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    for _ in range(PART_SIZE):
        word = rng.choice(WORDS)
        expected[word] = expected.get(word, 0) + 1
        p.produce("in", key=word, value="x")
        p.poll(0)
    assert p.flush(60) == 0


def read_counts(broker, expected, app, timeout=240):
    """word -> the counts read_committed shows in `out`, once every word's last count is there."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "eos-check",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "isolation.level": "read_committed"})
    c.assign([TopicPartition("out", p, 0) for p in range(PARTITIONS)])
    counts = {}
    deadline = time.monotonic() + timeout
    done_at = None
    try:
        while time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                if m.error():
                    continue
                counts.setdefault(m.key().decode(), []).append(struct.unpack(">q", m.value())[0])
            if done_at is None and all(counts.get(w, [0])[-1] >= n for w, n in expected.items()):
                done_at = time.monotonic()
            if done_at is not None and time.monotonic() - done_at > 3:
                return counts
    finally:
        c.close()
    last = {w: (v[-1] if v else 0) for w, v in counts.items()}
    raise AssertionError(f"counts never reached {expected}; last seen {last}:\n{app.log_tail()}")


def test_word_count_exactly_once_through_broker_and_application_kills(broker_with, tmp_path):
    classpath = build_app(tmp_path)
    broker = broker_with({"group.initial.rebalance.delay.ms": "0",
                          "transaction.abort.timed.out.transaction.cleanup.interval.ms": "500"})
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for topic in ("in", "out"):
        admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)],
                            operation_timeout=30)[topic].result(timeout=30)
    rng = random.Random(15)
    expected = {}
    app = App(classpath, broker, tmp_path)
    try:
        app.start()
        produce_part(broker, rng, expected)
        # Killed mid-run: Cairn, once the application has written some output.
        wait_for_output(broker, app, PART_SIZE // 4)
        kill_and_restart(broker)
        produce_part(broker, rng, expected)
        # The application itself: its open transaction is left to the broker to abort.
        wait_for_output(broker, app, PART_SIZE + PART_SIZE // 4, timeout=180)
        app.kill()
        app.start()
        produce_part(broker, rng, expected)
        wait_for_output(broker, app, 2 * PART_SIZE + PART_SIZE // 4, timeout=180)
        kill_and_restart(broker)
        counts = read_counts(broker, expected, app)
    finally:
        if app.proc and app.proc.poll() is None:
            app.kill()
    wrong = {w: (len(v), v[:3], v[-3:]) for w, v in counts.items()
             if v != list(range(1, expected.get(w, 0) + 1))}
    assert not wrong, f"counts not exactly once (word: (records, first, last)): {wrong}"
    assert sorted(counts) == sorted(expected)
