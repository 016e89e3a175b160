"""confluent-kafka (librdkafka) over SASL_SSL against Cairn: SCRAM-SHA-512 users created with
the admin API (AlterUserScramCredentials), PLAIN users from the JAAS config, produce and consume
over both, and a wrong password refused without the password reaching the broker's log.

Cairn only: these tests start their own broker from a server.properties with a PLAINTEXT,
a SASL_SSL listener and certificates made by scripts/make-test-certs (openssl)."""

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import (AdminClient, NewTopic, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialUpsertion)

from cairn_compat import REPO, SCRIPTS, TARGET, api_versions_answers, free_port

pytestmark = pytest.mark.skipif(TARGET != "cairn",
                                reason="starts its own Cairn broker with SASL_SSL listeners")

JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
        'username="admin" password="admin-pw" user_admin="admin-pw" user_paula="paula-pw-5521";')


class SecureBroker:
    def __init__(self, workdir: Path):
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
        return {
            "bootstrap.servers": f"127.0.0.1:{self.sasl_port}",
            "security.protocol": "SASL_SSL",
            "ssl.ca.location": str(self.certs / "ca.pem"),
            "sasl.mechanism": mechanism,
            "sasl.username": user,
            "sasl.password": password,
        }

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture
def secure(tmp_path):
    broker = SecureBroker(tmp_path)
    yield broker
    broker.stop()


def add_scram_user(broker, user, password):
    """Over the PLAINTEXT listener, as an operator bootstraps the first users."""
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{broker.plain_port}"})
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    futures = admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion(user, info, password.encode())])
    futures[user].result(timeout=30)
    described = admin.describe_user_scram_credentials([user])[user].result(timeout=30)
    infos = described.scram_credential_infos
    assert [(i.mechanism, i.iterations) for i in infos] == [(ScramMechanism.SCRAM_SHA_512, 8192)]


def round_trip(conf: dict, topic: str, n: int = 20):
    """Creates topic, produces n records and reads them back, all over `conf`."""
    admin = AdminClient(conf)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic] \
        .result(timeout=30)
    delivered, errors = [], []
    producer = Producer({**conf, "linger.ms": 5})
    for i in range(n):
        producer.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(),
                         on_delivery=lambda err, msg: (errors if err else delivered).append(
                             err or msg.offset()))
    assert producer.flush(30) == 0
    assert errors == [] and sorted(delivered) == list(range(n))
    consumer = Consumer({**conf, "group.id": f"g-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    values, deadline = [], time.monotonic() + 60
    while len(values) < n and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        values.append(msg.value().decode())
    consumer.commit(asynchronous=False)
    consumer.close()
    assert values == [f"v{i}" for i in range(n)]


def test_scram_sha_512_over_sasl_ssl(secure):
    add_scram_user(secure, "alice", "alice-scram-pw-8831")
    round_trip(secure.sasl("SCRAM-SHA-512", "alice", "alice-scram-pw-8831"), "scram-topic")
    assert "principal=User:alice" in secure.log_text()


def test_plain_over_sasl_ssl(secure):
    round_trip(secure.sasl("PLAIN", "paula", "paula-pw-5521"), "plain-topic")
    assert "principal=User:paula" in secure.log_text()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
def test_wrong_password_is_refused_and_not_logged(secure, mechanism):
    add_scram_user(secure, "alice", "alice-scram-pw-8831")
    user = "alice" if mechanism.startswith("SCRAM") else "paula"
    errors = []
    producer = Producer({**secure.sasl(mechanism, user, "not-the-pw-4417"),
                         "error_cb": errors.append})
    deadline = time.monotonic() + 20
    while not errors and time.monotonic() < deadline:
        producer.poll(0.2)
    assert errors, "no error reported for a wrong password"
    assert errors[0].code() == KafkaError._AUTHENTICATION, errors[0]
    assert "Invalid username or password" in errors[0].str(), errors[0]
    deadline = time.monotonic() + 10
    while "authentication failed" not in secure.log_text():
        assert time.monotonic() < deadline, secure.log_text()
        time.sleep(0.1)
    log = secure.log_text()
    for secret in ("not-the-pw-4417", "alice-scram-pw-8831", "paula-pw-5521", "admin-pw"):
        assert secret not in log
