"""Shared pytest plugin for Cairn's non-Rust compatibility suites.

Owns: starting and stopping the broker under test (Cairn's release binary, or
real Apache Kafka through scripts/kafka-server for validating the suites), the
helpers that run the Java CLI tools and kcat, and the allow-list of known gaps
read from compat/FINDINGS.md. It must not depend on Cairn's internals: the
suites talk to the broker only over the wire, like any user would.

Environment:
  COMPAT_TARGET     cairn (default) | kafka | external
  CAIRN_BIN         Cairn binary (default: <repo>/target/release/cairn)
  COMPAT_BOOTSTRAP  host:port of an already running broker (COMPAT_TARGET=external)
  COMPAT_RUN_GAPS   1 = also run the allow-listed known gaps (as non-strict xfail)
  KAFKA_VERSION     the Apache Kafka release of the Java tools (and of COMPAT_TARGET=kafka's
                    broker); default: the `suite` line of compat/versions
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
FINDINGS = REPO / "compat" / "FINDINGS.md"
TARGET = os.environ.get("COMPAT_TARGET", "cairn")
VERSIONS = REPO / "compat" / "versions"


def listed_versions(client: str) -> list[str]:
    """The versions of `client` (suite, kafka, confluent-kafka) listed in compat/versions."""
    found = []
    for line in VERSIONS.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) == 2 and fields[0] == client:
            found.append(fields[1])
    return found


# Every Java tool the suites run (scripts/kafka-tool) and COMPAT_TARGET=kafka's broker
# (scripts/kafka-server) are of this release, unless KAFKA_VERSION says otherwise.
KAFKA_VERSION = os.environ.setdefault("KAFKA_VERSION", listed_versions("suite")[0])


# ---------------------------------------------------------------- the broker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_versions_answers(port: int, timeout: float = 2.0) -> bool:
    """True when 127.0.0.1:port answers an ApiVersions v0 request with error 0."""
    client_id = b"cairn-compat"
    body = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(struct.pack(">i", len(body)) + body)
            head = _recv_exact(s, 4)
            (size,) = struct.unpack(">i", head)
            if size < 6 or size > 1 << 20:
                return False
            resp = _recv_exact(s, size)
            correlation_id, error_code = struct.unpack(">ih", resp[:6])
            return correlation_id == 7 and error_code == 0
    except OSError:
        return False


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


class _PortTaken(Exception):
    pass


_live: set = set()  # started Cairn brokers, whose log tails go into failure reports


class Broker:
    """One broker under test, on 127.0.0.1 with its own data directory."""

    def __init__(self, kind: str, workdir: Path, port: int | None = None,
                 settings: dict[str, str] | None = None):
        self.kind = kind
        self.settings = dict(settings or {})  # broker configs, by Kafka's names
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.last_exit_code: int | None = None
        self.started_once = False
        # More arguments for Cairn, e.g. ["--set", "key=value"].
        self.extra_args: list[str] = []
        # More environment variables for Cairn's process, e.g. {"CAIRN_CRASH_AT": "..."}.
        self.env: dict[str, str] = {}
        self._log = None
        if kind == "external":
            host, _, port_s = os.environ["COMPAT_BOOTSTRAP"].rpartition(":")
            self.host, self.port = host, int(port_s)
        else:
            self.host = "127.0.0.1"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        return self.workdir / ("cairn.log" if self.kind == "cairn" else "server.log")

    def start(self, timeout: float = 60.0) -> None:
        if self.kind == "external":
            return
        if self.kind == "kafka":
            props = "\n".join(f"{k}={v}" for k, v in self.settings.items())
            run_checked([str(SCRIPTS / "kafka-server"), "start", str(self.workdir), str(self.port)],
                        timeout=180, env={**os.environ, "KAFKA_SERVER_PROPS": props})
            return
        binary = Path(os.environ.get("CAIRN_BIN", REPO / "target" / "release" / "cairn"))
        if not binary.exists():
            raise RuntimeError(f"Cairn binary {binary} not found: run `cargo build --release` first")
        self.workdir.mkdir(parents=True, exist_ok=True)
        # A free port can be taken by someone else before Cairn binds it: on a first start,
        # try again on another port. A restart keeps its port (clients know it).
        attempts = 1 if self.started_once else 3
        for attempt in range(attempts):
            try:
                self._spawn(binary, timeout)
                self.started_once = True
                _live.add(self)
                return
            except _PortTaken:
                if attempt == attempts - 1:
                    raise RuntimeError(f"port {self.port} in use:\n{self.log_tail()}") from None
                self.port = free_port()

    def _spawn(self, binary: Path, timeout: float) -> None:
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(binary), "--listen", self.bootstrap, "--data-dir", str(self.data_dir),
             *(arg for k, v in self.settings.items() for arg in ("--set", f"{k}={v}")),
             *self.extra_args],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.close()
                self._log = None
                self.proc = None
                tail = self.log_path.read_bytes()[log_start:].decode(errors="replace")
                if "in use" in tail.lower():
                    raise _PortTaken()
                raise RuntimeError(f"cairn exited during startup:\n{self.log_tail()}")
            if api_versions_answers(self.port):
                return
            time.sleep(0.1)
        self.proc.kill()
        self.proc.wait(10)
        raise RuntimeError(f"cairn did not answer ApiVersions on {self.bootstrap} in {timeout}s:\n"
                           f"{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop (SIGTERM); remembers the exit code in last_exit_code."""
        if self.kind == "external":
            return
        if self.kind == "kafka":
            run_checked([str(SCRIPTS / "kafka-server"), "stop", str(self.workdir)], timeout=60)
            self.last_exit_code = 0
            return
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.last_exit_code = self.proc.returncode
        self.proc = None
        _live.discard(self)
        if self._log:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        if self.kind == "external":
            pytest.skip("cannot restart an external broker")
        self.stop()
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


_shared: Broker | None = None
_shared_dir: str | None = None


def shared_broker() -> Broker:
    global _shared, _shared_dir
    if _shared is None:
        _shared_dir = tempfile.mkdtemp(prefix="cairn-compat-")
        broker = Broker(TARGET, Path(_shared_dir))
        broker.start()
        _shared = broker
    return _shared


def stop_shared_broker() -> None:
    global _shared, _shared_dir
    if _shared is not None:
        _shared.stop()
        _shared = None
    if _shared_dir is not None:
        shutil.rmtree(_shared_dir, ignore_errors=True)
        _shared_dir = None


@pytest.fixture(scope="session")
def broker() -> Broker:
    """The broker shared by all tests of the session (never restarted)."""
    return shared_broker()


@pytest.fixture
def private_broker(tmp_path):
    """A broker of its own, for tests that restart it."""
    if TARGET == "external":
        pytest.skip("needs a broker this suite can restart")
    b = Broker(TARGET, tmp_path / "broker")
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def broker_with(tmp_path):
    """A factory of brokers of their own with given configs: broker_with({"key": "value"})."""
    if TARGET == "external":
        pytest.skip("needs a broker this suite can configure")
    started = []

    def start(settings: dict[str, str]) -> Broker:
        b = Broker(TARGET, tmp_path / f"broker-{len(started)}", settings=settings)
        started.append(b)
        b.start()
        return b

    try:
        yield start
    finally:
        for b in started:
            b.stop()


@pytest.fixture
def topic_name(request) -> str:
    base = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:40].strip("-")
    return f"{base}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------- a broker with SASL


JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
        'username="admin" password="admin-pw" user_admin="admin-pw" user_paula="paula-pw-5521";')


class SecureBroker:
    """A Cairn broker with a PLAINTEXT listener (to bootstrap SCRAM users) and a SASL_SSL one
    offering PLAIN (users admin and paula, from JAAS) and both SCRAM mechanisms; certificates
    from scripts/make-test-certs (openssl). Cairn only."""

    def __init__(self, workdir: Path, extra: tuple = ()):
        self.workdir = workdir
        self.certs = workdir / "certs"
        subprocess.run([str(SCRIPTS / "make-test-certs"), str(self.certs)], check=True)
        self.plain_port, self.sasl_port = free_port(), free_port()
        props = workdir / "server.properties"
        props.write_text("\n".join([
            f"log.dirs={workdir / 'data'}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.plain_port},"
            f"SASL_SSL://127.0.0.1:{self.sasl_port}",
            f"ssl.keystore.location={self.certs / 'server.keystore.pem'}",
            "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
            f"listener.name.sasl_ssl.plain.sasl.jaas.config={JAAS}",
            "connection.failed.authentication.delay.ms=100",
            *extra,
        ]) + "\n")
        self.log_path = workdir / "cairn.log"
        binary = Path(os.environ.get("CAIRN_BIN", REPO / "target" / "release" / "cairn"))
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([str(binary), "--config", str(props)], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not api_versions_answers(self.plain_port):
            assert self.proc.poll() is None, f"cairn exited: {self.log_text()}"
            assert time.monotonic() < deadline, "cairn did not start"
            time.sleep(0.1)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def sasl(self, mechanism: str, user: str, password: str) -> dict:
        """librdkafka settings for the SASL_SSL listener."""
        return {
            "bootstrap.servers": self.sasl_bootstrap,
            "security.protocol": "SASL_SSL",
            "ssl.ca.location": str(self.certs / "ca.pem"),
            "sasl.mechanism": mechanism,
            "sasl.username": user,
            "sasl.password": password,
        }

    def java_client_config(self, mechanism: str, user: str, password: str) -> str:
        """Writes a Java client properties file for the SASL_SSL listener (what the tools take
        as --command-config, --producer.config, --consumer.config); returns its path."""
        module = ("org.apache.kafka.common.security.plain.PlainLoginModule" if mechanism == "PLAIN"
                  else "org.apache.kafka.common.security.scram.ScramLoginModule")
        path = self.workdir / f"client-{mechanism}-{user}.properties"
        path.write_text("\n".join([
            "security.protocol=SASL_SSL",
            f"sasl.mechanism={mechanism}",
            f'sasl.jaas.config={module} required username="{user}" password="{password}";',
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.certs / 'ca.pem'}",
        ]) + "\n")
        return str(path)

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def plain_bootstrap(self) -> str:
        return f"127.0.0.1:{self.plain_port}"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture
def secure_broker(tmp_path):
    if TARGET != "cairn":
        pytest.skip("starts its own Cairn broker with SASL listeners")
    broker = SecureBroker(tmp_path)
    yield broker
    broker.stop()



# ---------------------------------------------------------------- tools


def run_checked(cmd: list[str], input: str | None = None, timeout: float = 120,
                check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    try:
        p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                           env=env)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"timed out after {timeout}s: {' '.join(cmd)}\n"
                             f"stdout:\n{e.stdout}\nstderr:\n{e.stderr}") from None
    if check and p.returncode != 0:
        raise AssertionError(f"exit code {p.returncode}: {' '.join(cmd)}\n"
                             f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def kafka_tool(tool: str, *args: str, input: str | None = None, timeout: float = 120,
               check: bool = True) -> subprocess.CompletedProcess:
    """Run a standard Apache Kafka CLI tool (scripts/kafka-tool)."""
    return run_checked([str(SCRIPTS / "kafka-tool"), tool, *args], input=input, timeout=timeout,
                       check=check)


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version)[:3])


def console_flags(version: str = KAFKA_VERSION) -> dict[str, str]:
    """The console tools' property flags in a Kafka release: KIP-1147 (4.2) renamed them and
    deprecated the old names (4.4's console consumer prints that warning on stdout)."""
    if version_tuple(version) >= (4, 2):
        return {"reader": "--reader-property", "formatter": "--formatter-property",
                "producer": "--command-property", "consumer": "--command-property",
                "producer-config": "--command-config", "consumer-config": "--command-config"}
    return {"reader": "--property", "formatter": "--property",
            "producer": "--producer-property", "consumer": "--consumer-property",
            "producer-config": "--producer.config", "consumer-config": "--consumer.config"}


def kcat(*args: str, input: str | None = None, timeout: float = 60,
         check: bool = True) -> subprocess.CompletedProcess:
    exe = shutil.which("kcat") or shutil.which("kafkacat")
    if exe is None:
        raise RuntimeError("kcat is not installed (apt-get install -y kcat)")
    return run_checked([exe, *args], input=input, timeout=timeout, check=check)


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"):
    """Poll predicate() until it returns a truthy value; return it, or fail after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


# ---------------------------------------------------------------- allow-list


def known_gaps() -> dict[str, str]:
    """Test ids allow-listed as known Cairn gaps in FINDINGS.md, with the reason.

    The section "## Allow-list" holds lines of the form
    - `compat/cli/test_x.py::test_name`: reason
    """
    gaps: dict[str, str] = {}
    try:
        text = FINDINGS.read_text()
    except OSError:
        return gaps
    in_section = False
    for line in text.splitlines():
        if line.startswith("## "):
            in_section = line.strip().lower().startswith("## allow-list")
            continue
        if in_section:
            m = re.match(r"^\s*[-*]\s+`([^`]+::[^`]+)`\s*:?\s*(.*)$", line)
            if m:
                gaps[m.group(1)] = m.group(2).strip() or "known gap"
    return gaps


def pytest_collection_modifyitems(config, items):
    if TARGET != "cairn":
        return
    gaps = known_gaps()
    run_gaps = os.environ.get("COMPAT_RUN_GAPS") == "1"
    for item in items:
        try:
            rel = Path(item.path).resolve().relative_to(REPO).as_posix()
        except ValueError:
            continue
        reason = gaps.get(f"{rel}::{item.name}") or gaps.get(f"{rel}::{item.originalname}")
        if reason:
            item.add_marker(pytest.mark.xfail(reason=f"known Cairn gap (FINDINGS.md): {reason}",
                                              run=run_gaps, strict=False))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for b in list(_live):
            rep.sections.append((f"cairn log tail ({b.bootstrap})", b.log_tail(60)))


def pytest_sessionfinish(session, exitstatus):
    stop_shared_broker()


def pytest_report_header(config):
    return f"compat target: {TARGET}"
