"""A three-broker Cairn cluster coordinated by a real etcd (issue 19).

Starts one etcd (Debian's etcd-server) and three Cairn brokers on free loopback ports, each with
its own data directory, and checks what a user sees: the Java kafka-topics tool spreads leaders
over the brokers, confluent-kafka produces to and consumes from every partition with a group,
a stopped broker leaves Metadata and comes back with its records, a duplicate node.id is
refused, a replication factor above the live brokers is refused, a replicated partition
survives the kill -9 of its leader under an acks=all producer with nothing lost or duplicated,
and a stalled follower leaves the ISR and rejoins it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cairn_compat import REPO, TARGET, free_port, kafka_tool, wait_until

pytestmark = [
    pytest.mark.skipif(TARGET != "cairn", reason="a Cairn cluster only"),
    pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd-server is not installed"),
]

CAIRN = Path(os.environ.get("CAIRN_BIN", REPO / "target" / "release" / "cairn"))
SESSION_TIMEOUT_MS = 3000


class Etcd:
    def __init__(self, workdir: Path):
        self.client_port = free_port()
        peer_port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.client_port}"
        self.log = open(workdir / "etcd.log", "w")
        self.proc = subprocess.Popen(
            ["etcd", "--name", "test", "--data-dir", str(workdir / "etcd"),
             "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
             "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
             "--initial-cluster", f"test=http://127.0.0.1:{peer_port}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self._healthy, timeout=30, what="etcd to answer")

    def _healthy(self) -> bool:
        import urllib.request
        try:
            with urllib.request.urlopen(f"{self.endpoint}/health", timeout=1) as r:
                return b"true" in r.read()
        except OSError:
            return False

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


class Node:
    def __init__(self, workdir: Path, node_id: int, etcd: Etcd, data_dir: Path | None = None):
        self.node_id = node_id
        self.port = free_port()
        self.data_dir = data_dir or workdir / f"broker-{node_id}"
        self.log_path = workdir / f"broker-{node_id}-{time.monotonic_ns()}.log"
        self.args = [str(CAIRN), "--listen", f"127.0.0.1:{self.port}",
                     "--data-dir", str(self.data_dir),
                     "--set", f"node.id={node_id}",
                     "--set", f"cairn.cluster.etcd.endpoints={etcd.endpoint}",
                     "--set", f"broker.session.timeout.ms={SESSION_TIMEOUT_MS}",
                     "--set", "cairn.http.listen="]
        self.proc = None

    def start(self, wait: bool = True):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "RUST_LOG": "info"})
        if wait:
            wait_until(lambda: "started" in self.log_text() or self.proc.poll() is not None,
                       timeout=60, what=f"broker {self.node_id} to start")
            assert self.proc.poll() is None, self.log_text()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def cluster(tmp_path):
    etcd = Etcd(tmp_path)
    nodes = [Node(tmp_path, i, etcd) for i in (1, 2, 3)]
    try:
        for n in nodes:
            n.start()
        admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
        wait_until(lambda: len(admin.list_topics(timeout=5).brokers) == 3, timeout=30,
                   what="three brokers in Metadata")
        yield etcd, nodes, tmp_path
    finally:
        for n in nodes:
            n.stop(signal.SIGKILL)
        etcd.stop()


def bootstrap(nodes) -> str:
    return ",".join(n.bootstrap for n in nodes if n.proc and n.proc.poll() is None)


def live_broker_ids(nodes) -> set[int]:
    admin = AdminClient({"bootstrap.servers": bootstrap(nodes)})
    return set(admin.list_topics(timeout=5).brokers)


def leaders(nodes, topic: str) -> dict[int, int]:
    admin = AdminClient({"bootstrap.servers": bootstrap(nodes)})
    t = admin.list_topics(topic, timeout=5).topics[topic]
    return {p: m.leader for p, m in t.partitions.items()}


def produce_everywhere(nodes, topic: str, partitions: int, tag: str) -> list[tuple[int, bytes]]:
    producer = Producer({"bootstrap.servers": bootstrap(nodes), "acks": "all",
                         "enable.idempotence": True})
    acked = []

    def delivered(err, msg):
        assert err is None, err
        acked.append((msg.partition(), msg.value()))

    for p in range(partitions):
        for i in range(5):
            producer.produce(topic, value=f"{tag}-{p}-{i}".encode(), partition=p,
                             on_delivery=delivered)
    assert producer.flush(30) == 0
    return acked


def consume(nodes, topic: str, group: str, expected: int) -> list[tuple[int, bytes]]:
    consumer = Consumer({"bootstrap.servers": bootstrap(nodes), "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got = []
    deadline = time.time() + 60
    while len(got) < expected and time.time() < deadline:
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        got.append((msg.partition(), msg.value()))
    consumer.commit(asynchronous=False)
    committed = consumer.committed([TopicPartition(topic, p) for p in range(6)], timeout=10)
    consumer.close()
    assert sum(max(tp.offset, 0) for tp in committed) == len(got), committed
    return got


def test_topics_spread_over_brokers_and_clients_produce_and_consume(cluster):
    etcd, nodes, _ = cluster
    kafka_tool("kafka-topics", "--bootstrap-server", nodes[1].bootstrap, "--create",
               "--topic", "spread", "--partitions", "6", "--replication-factor", "1")
    described = kafka_tool("kafka-topics", "--bootstrap-server", nodes[2].bootstrap,
                           "--describe", "--topic", "spread").stdout
    leader_ids = {int(line.split("Leader:")[1].split()[0])
                  for line in described.splitlines() if "Partition:" in line}
    assert leader_ids == {1, 2, 3}, described
    assert set(leaders(nodes, "spread").values()) == {1, 2, 3}

    acked = produce_everywhere(nodes, "spread", 6, "a")
    assert len(acked) == 30
    got = consume(nodes, "spread", "spread-group", 30)
    assert sorted(got) == sorted(acked)


def test_replication_factor_above_the_live_brokers_is_refused(cluster):
    _, nodes, _ = cluster
    admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
    with pytest.raises(Exception) as refused:
        admin.create_topics([NewTopic("rf4", 3, 4)])["rf4"].result(30)
    assert "INVALID_REPLICATION_FACTOR" in str(refused.value), refused.value


def describe(nodes, topic: str) -> dict[int, tuple[int, list[int], list[int]]]:
    """kafka-topics --describe: partition -> (leader, replicas, isr)."""
    # A stopped (SIGSTOP) broker still runs but answers nothing: ask another.
    live = [n for n in nodes if n.proc and n.proc.poll() is None and not getattr(n, "paused", False)]
    out = kafka_tool("kafka-topics", "--bootstrap-server", live[0].bootstrap,
                     "--describe", "--topic", topic).stdout
    parts = {}
    for line in out.splitlines():
        if "Partition:" not in line:
            continue
        field = lambda name: line.split(f"{name}:")[1].split()[0]
        ids = lambda text: [int(x) for x in text.split(",") if x.strip() not in ("", "none")]
        leader = -1 if field("Leader") == "none" else int(field("Leader"))
        parts[int(field("Partition"))] = (leader, ids(field("Replicas")),
                                          ids(field("Isr")))
    return parts


def test_leader_kill_9_under_acks_all_loses_and_duplicates_nothing(cluster):
    """Issue 19's first fault: kill -9 of a partition leader while an idempotent acks=all
    producer writes; a follower takes over, the producer carries on, every acknowledged record
    is read back exactly once, and the old leader rejoins the ISR when it returns."""
    _, nodes, _ = cluster
    kafka_tool("kafka-topics", "--bootstrap-server", nodes[0].bootstrap, "--create",
               "--topic", "ha", "--partitions", "1", "--replication-factor", "3",
               "--config", "min.insync.replicas=2")
    wait_until(lambda: sorted(describe(nodes, "ha")[0][2]) == [1, 2, 3], timeout=30,
               what="all three replicas in sync")
    leader, replicas, _ = describe(nodes, "ha")[0]
    assert sorted(replicas) == [1, 2, 3]

    acked, failed = [], []
    producer = Producer({"bootstrap.servers": bootstrap(nodes), "acks": "all",
                         "enable.idempotence": True, "linger.ms": 5,
                         "message.timeout.ms": 60000})

    def delivered(err, msg):
        (failed if err else acked).append(err or int(msg.value()))

    def produce_for(seconds: float, start: int) -> int:
        n, until = start, time.time() + seconds
        while time.time() < until:
            producer.produce("ha", value=str(n).encode(), partition=0, on_delivery=delivered)
            producer.poll(0.002)
            n += 1
        return n

    n = produce_for(2.0, 0)
    assert acked, "nothing acknowledged before the failure"
    victim = next(x for x in nodes if x.node_id == leader)
    victim.stop(signal.SIGKILL)
    killed = time.time()
    n = produce_for(1.0, n)
    wait_until(lambda: describe(nodes, "ha")[0][0] not in (leader, -1), timeout=30,
               what="a follower to take over the partition")
    took_over = time.time() - killed
    before = len(acked)
    n = produce_for(2.0, n)
    assert producer.flush(90) == 0
    assert not failed, failed[:5]
    assert len(acked) > before, "nothing acknowledged after the failover"
    new_leader, _, isr = describe(nodes, "ha")[0]
    assert new_leader != leader and leader not in isr and len(isr) == 2, (new_leader, isr)

    consumer = Consumer({"bootstrap.servers": bootstrap(nodes), "group.id": "ha-check",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition("ha", 0, 0)])
    _, high = consumer.get_watermark_offsets(TopicPartition("ha", 0), timeout=10)
    read = []
    deadline = time.time() + 60
    while (not read or read[-1][0] < high - 1) and time.time() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and not msg.error():
            read.append((msg.offset(), int(msg.value())))
    consumer.close()
    values = [v for _, v in read]
    assert len(values) == len(set(values)), "a record is stored twice"
    missing = set(acked) - set(values)
    assert not missing, (len(missing), sorted(missing)[:10], took_over)
    assert took_over < 20, took_over
    # The killed leader returns as a follower: it cuts whatever it had past the new leader's
    # log (never acknowledged), catches up, and the leader takes it back into the ISR.
    victim.start()
    wait_until(lambda: sorted(describe(nodes, "ha")[0][2]) == [1, 2, 3], timeout=60,
               what="the old leader to rejoin the ISR")
    print(f"{len(acked)} acknowledged, {n} sent, new leader {new_leader} after {took_over:.1f}s")


def test_duplicate_node_id_is_refused(cluster):
    etcd, nodes, tmp_path = cluster
    dup = Node(tmp_path, 2, etcd, data_dir=tmp_path / "another-dir")
    dup.start(wait=False)
    assert dup.proc.wait(timeout=60) != 0
    assert "node.id 2 is already registered" in dup.log_text()
    assert live_broker_ids(nodes) == {1, 2, 3}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_stopped_broker_leaves_and_returns_with_its_records(cluster, sig):
    _, nodes, _ = cluster
    kafka_tool("kafka-topics", "--bootstrap-server", nodes[0].bootstrap, "--create",
               "--topic", "stay", "--partitions", "6", "--replication-factor", "1")
    acked = produce_everywhere(nodes, "stay", 6, "before")
    victim = nodes[2]
    victim.stop(sig)
    wait_until(lambda: live_broker_ids(nodes) == {1, 2}, timeout=30,
               what="the stopped broker to leave Metadata")
    # Its partitions have no leader meanwhile (one replica each: no replica to fail over to).
    assert all(l in (1, 2, -1) for l in leaders(nodes, "stay").values())
    victim.start()
    wait_until(lambda: live_broker_ids(nodes) == {1, 2, 3}, timeout=30,
               what="the restarted broker to rejoin")
    wait_until(lambda: set(leaders(nodes, "stay").values()) == {1, 2, 3}, timeout=30,
               what="the restarted broker to lead its partitions again")
    acked += produce_everywhere(nodes, "stay", 6, "after")
    got = consume(nodes, "stay", f"stay-{sig}", len(acked))
    by_partition = {p: sum(1 for q, _ in got if q == p) for p in range(6)}
    assert sorted(got) == sorted(acked), (by_partition, leaders(nodes, "stay"),
                                          victim.log_text()[-3000:])


def test_a_stalled_follower_leaves_the_isr_and_rejoins(tmp_path):
    """ISR shrink and expand by the leader: a follower that stops fetching (SIGSTOP, its etcd
    lease still live) leaves the ISR after replica.lag.time.max.ms, acks=all with
    min.insync.replicas=2 carries on with the other two, and the follower rejoins once it
    resumes (SIGCONT) and catches up."""
    etcd = Etcd(tmp_path)
    nodes = [Node(tmp_path, i, etcd) for i in (1, 2, 3)]
    for n in nodes:
        n.args += ["--set", "replica.lag.time.max.ms=1500",
                   "--set", "broker.session.timeout.ms=60000"]
    try:
        for n in nodes:
            n.start()
        admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
        wait_until(lambda: len(admin.list_topics(timeout=5).brokers) == 3, timeout=30,
                   what="three brokers in Metadata")
        kafka_tool("kafka-topics", "--bootstrap-server", nodes[0].bootstrap, "--create",
                   "--topic", "lag", "--partitions", "1", "--replication-factor", "3",
                   "--config", "min.insync.replicas=2")
        wait_until(lambda: sorted(describe(nodes, "lag")[0][2]) == [1, 2, 3], timeout=30,
                   what="all three replicas in sync")
        leader = describe(nodes, "lag")[0][0]
        stalled = next(n for n in nodes if n.node_id != leader)
        stalled.proc.send_signal(signal.SIGSTOP)
        stalled.paused = True
        try:
            # Each poll starts a JVM (kafka-topics): on a loaded machine a few seconds each.
            wait_until(lambda: stalled.node_id not in describe(nodes, "lag")[0][2], timeout=60,
                       what="the stalled follower to leave the ISR")
            assert describe(nodes, "lag")[0][0] == leader
            producer = Producer({"bootstrap.servers": nodes[leader - 1].bootstrap,
                                 "acks": "all", "enable.idempotence": True})
            errors = []
            for i in range(20):
                producer.produce("lag", value=b"%d" % i, partition=0,
                                 on_delivery=lambda err, _: errors.append(err) if err else None)
            assert producer.flush(30) == 0
            assert not errors, errors
        finally:
            stalled.proc.send_signal(signal.SIGCONT)
            stalled.paused = False
        wait_until(lambda: sorted(describe(nodes, "lag")[0][2]) == [1, 2, 3], timeout=90,
                   what="the follower to rejoin the ISR")
    finally:
        for n in nodes:
            n.stop(signal.SIGKILL)
        etcd.stop()
