"""A Cairn cluster on a secured etcd (issue 19: "with TLS and credentials options").

Starts one etcd (Debian's etcd-server) that serves clients over TLS only, requires a client
certificate signed by the test CA, and has authentication enabled with a user `cairn` allowed to
read and write `/cairn/` and nothing else. Two Cairn brokers join it with
`cairn.cluster.etcd.tls.*` and `cairn.cluster.etcd.username/password`, and a confluent-kafka
client produces and consumes through both. A broker with a wrong password, without the CA, or
with TLS settings on an http:// endpoint refuses to start with a message naming the key, and the
password appears in no log.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from cairn_compat import REPO, TARGET, free_port, wait_until

pytestmark = [
    pytest.mark.skipif(TARGET != "cairn", reason="a Cairn cluster only"),
    pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd-server is not installed"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
]

CAIRN = Path(os.environ.get("CAIRN_BIN", REPO / "target" / "release" / "cairn"))
PASSWORD = "pw-Zq81-never-logged"


def openssl(*args: str, cwd: Path):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(d: Path):
    """A CA, etcd's server certificate for 127.0.0.1 and a client certificate, all PEM."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")
    # etcd's JSON gateway refuses, once authentication is on, a client certificate with a
    # CommonName (it would be taken as the user name, which the gateway cannot pass on): the
    # broker's certificate names its organisation only, and the user comes from the credentials.
    for name, subject in (("server", "/CN=etcd"), ("client", "/O=cairn-brokers")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", f"{name}.pem", cwd=d)


class SecureEtcd:
    def __init__(self, workdir: Path):
        self.certs = workdir / "certs"
        self.certs.mkdir()
        make_certs(self.certs)
        self.client_port = free_port()
        peer_port = free_port()
        self.endpoint = f"https://127.0.0.1:{self.client_port}"
        self.log = open(workdir / "etcd.log", "w")
        c = self.certs
        self.proc = subprocess.Popen(
            ["etcd", "--name", "test", "--data-dir", str(workdir / "etcd"),
             "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
             "--cert-file", str(c / "server.pem"), "--key-file", str(c / "server.key"),
             "--client-cert-auth", "--trusted-ca-file", str(c / "ca.pem"),
             "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
             "--initial-cluster", f"test=http://127.0.0.1:{peer_port}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.tls = ssl.create_default_context(cafile=str(c / "ca.pem"))
        self.tls.load_cert_chain(str(c / "client.pem"), str(c / "client.key"))
        wait_until(self._healthy, timeout=30, what="etcd to answer over TLS")
        self.token = None
        self._enable_auth()

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/health", timeout=1,
                                        context=self.tls) as r:
                return b"true" in r.read()
        except OSError:
            return False

    def call(self, path: str, body: dict) -> dict:
        req = urllib.request.Request(f"{self.endpoint}{path}", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
        if self.token:
            req.add_header("authorization", self.token)
        with urllib.request.urlopen(req, timeout=10, context=self.tls) as r:
            return json.loads(r.read())

    def _enable_auth(self):
        b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
        self.call("/v3/auth/user/add", {"name": "root", "password": "root-pw"})
        self.call("/v3/auth/role/add", {"name": "root"})
        self.call("/v3/auth/user/grant", {"user": "root", "role": "root"})
        self.call("/v3/auth/role/add", {"name": "cairn"})
        self.call("/v3/auth/role/grant", {"name": "cairn", "perm": {
            "permType": "READWRITE", "key": b64("/cairn/"), "range_end": b64("/cairn0")}})
        self.call("/v3/auth/user/add", {"name": "cairn", "password": PASSWORD})
        self.call("/v3/auth/user/grant", {"user": "cairn", "role": "cairn"})
        self.call("/v3/auth/enable", {})

    def keys_as_root(self) -> list[str]:
        self.token = self.call("/v3/auth/authenticate",
                               {"name": "root", "password": "root-pw"})["token"]
        b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
        reply = self.call("/v3/kv/range", {"key": b64("/"), "range_end": b64("0"),
                                           "keys_only": True})
        return [base64.b64decode(kv["key"]).decode() for kv in reply.get("kvs", [])]

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


class Node:
    def __init__(self, workdir: Path, node_id: int, etcd: SecureEtcd, **overrides: str):
        self.node_id = node_id
        self.port = free_port()
        self.log_path = workdir / f"broker-{node_id}-{time.monotonic_ns()}.log"
        c = etcd.certs
        settings = {
            "node.id": str(node_id),
            "cairn.cluster.etcd.endpoints": etcd.endpoint,
            "cairn.cluster.etcd.tls.ca.file": str(c / "ca.pem"),
            "cairn.cluster.etcd.tls.cert.file": str(c / "client.pem"),
            "cairn.cluster.etcd.tls.key.file": str(c / "client.key"),
            "cairn.cluster.etcd.username": "cairn",
            "cairn.cluster.etcd.password": PASSWORD,
            "broker.session.timeout.ms": "3000",
            "cairn.http.listen": "",
            **overrides,
        }
        self.args = [str(CAIRN), "--listen", f"127.0.0.1:{self.port}",
                     "--data-dir", str(workdir / f"broker-{node_id}")]
        for k, v in settings.items():
            self.args += ["--set", f"{k}={v}"]
        self.proc = None

    def start(self):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "RUST_LOG": "info"})
        wait_until(lambda: "started" in self.log_text() or self.proc.poll() is not None,
                   timeout=60, what=f"broker {self.node_id} to start or exit")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=60)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def etcd(tmp_path):
    e = SecureEtcd(tmp_path)
    yield e
    e.stop()


def test_two_brokers_join_an_etcd_with_tls_client_certificates_and_authentication(etcd, tmp_path):
    nodes = [Node(tmp_path, i, etcd) for i in (1, 2)]
    try:
        for n in nodes:
            n.start()
            assert n.proc.poll() is None, n.log_text()
        bootstrap = ",".join(n.bootstrap for n in nodes)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        wait_until(lambda: len(admin.list_topics(timeout=5).brokers) == 2, timeout=30,
                   what="both brokers in Metadata")
        admin.create_topics([NewTopic("secured", num_partitions=4, replication_factor=1)])[
            "secured"].result(30)
        wait_until(lambda: all(p.leader in (1, 2) for p in
                               admin.list_topics("secured", timeout=5).topics["secured"]
                               .partitions.values()),
                   timeout=30, what="a leader for every partition")
        leaders = {p.leader for p in
                   admin.list_topics("secured", timeout=5).topics["secured"].partitions.values()}
        assert leaders == {1, 2}, leaders

        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        for i in range(40):
            producer.produce("secured", value=f"v{i}".encode(), partition=i % 4)
        assert producer.flush(30) == 0
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "g",
                             "auto.offset.reset": "earliest"})
        consumer.subscribe(["secured"])
        got = set()
        deadline = time.time() + 60
        while len(got) < 40 and time.time() < deadline:
            m = consumer.poll(1.0)
            if m is not None and not m.error():
                got.add(m.value())
        consumer.close()
        assert got == {f"v{i}".encode() for i in range(40)}

        # What the brokers wrote is in etcd, under /cairn/ (the only prefix user cairn may use).
        keys = etcd.keys_as_root()
        assert "/cairn/brokers/1" in keys and "/cairn/brokers/2" in keys, keys

        # An administrator turns authentication off and on again: every token issued before is
        # gone, and the brokers authenticate again and carry on (a new topic gets leaders).
        etcd.call("/v3/auth/disable", {})
        etcd.token = None
        etcd.call("/v3/auth/enable", {})
        admin.create_topics([NewTopic("secured-2", num_partitions=4, replication_factor=1)])[
            "secured-2"].result(30)
        wait_until(lambda: all(p.leader in (1, 2) for p in
                               admin.list_topics("secured-2", timeout=5).topics["secured-2"]
                               .partitions.values()),
                   timeout=30, what="a leader for every partition of the second topic")
        wait_until(lambda: any("authenticating again" in n.log_text() for n in nodes),
                   timeout=30, what="a broker to authenticate again")
        keys = etcd.keys_as_root()
        assert "/cairn/brokers/1" in keys and "/cairn/brokers/2" in keys, keys
        assert any(k.startswith("/cairn/topics/secured") for k in keys), keys
        for n in nodes:
            assert PASSWORD not in n.log_text()
    finally:
        for n in nodes:
            n.stop()


@pytest.mark.parametrize("case", ["wrong password", "no CA", "TLS on http"])
def test_a_broker_with_bad_etcd_security_settings_refuses_to_start_naming_the_key(
        etcd, tmp_path, case):
    overrides = {
        "wrong password": {"cairn.cluster.etcd.password": "not-" + PASSWORD},
        "no CA": {"cairn.cluster.etcd.tls.ca.file": ""},
        "TLS on http": {"cairn.cluster.etcd.endpoints": f"http://127.0.0.1:{etcd.client_port}"},
    }[case]
    node = Node(tmp_path, 7, etcd, **overrides)
    try:
        node.start()
        assert node.proc.wait(timeout=30) != 0, node.log_text()
        text = node.log_text()
        expected = {
            "wrong password": "cairn.cluster.etcd.username",
            "no CA": "certificate",
            "TLS on http": "cairn.cluster.etcd.tls",
        }[case]
        assert expected in text, text
        assert "not-" + PASSWORD not in text and PASSWORD not in text, text
    finally:
        node.stop()
