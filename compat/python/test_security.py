"""confluent-kafka (librdkafka) over SASL_SSL against Cairn: SCRAM-SHA-512 users created with
the admin API (AlterUserScramCredentials), PLAIN users from the JAAS config, produce and consume
over both, and a wrong password refused without the password reaching the broker's log.

Cairn only: each test starts its own broker with SASL listeners (the secure_broker fixture of
cairn_compat)."""

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import (AdminClient, NewTopic, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialUpsertion)

from cairn_compat import TARGET, SecureBroker


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


def test_scram_sha_512_over_sasl_ssl(secure_broker):
    add_scram_user(secure_broker, "alice", "alice-scram-pw-8831")
    round_trip(secure_broker.sasl("SCRAM-SHA-512", "alice", "alice-scram-pw-8831"), "scram-topic")
    assert "principal=User:alice" in secure_broker.log_text()


def test_plain_over_sasl_ssl(secure_broker):
    round_trip(secure_broker.sasl("PLAIN", "paula", "paula-pw-5521"), "plain-topic")
    assert "principal=User:paula" in secure_broker.log_text()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
def test_wrong_password_is_refused_and_not_logged(secure_broker, mechanism):
    add_scram_user(secure_broker, "alice", "alice-scram-pw-8831")
    user = "alice" if mechanism.startswith("SCRAM") else "paula"
    errors = []
    producer = Producer({**secure_broker.sasl(mechanism, user, "not-the-pw-4417"),
                         "error_cb": errors.append})
    deadline = time.monotonic() + 20
    while not errors and time.monotonic() < deadline:
        producer.poll(0.2)
    assert errors, "no error reported for a wrong password"
    assert errors[0].code() == KafkaError._AUTHENTICATION, errors[0]
    assert "Invalid username or password" in errors[0].str(), errors[0]
    deadline = time.monotonic() + 10
    while "authentication failed" not in secure_broker.log_text():
        assert time.monotonic() < deadline, secure_broker.log_text()
        time.sleep(0.1)
    log = secure_broker.log_text()
    for secret in ("not-the-pw-4417", "alice-scram-pw-8831", "paula-pw-5521", "admin-pw"):
        assert secret not in log


def test_sessions_are_renewed_by_reauthentication(tmp_path):
    """With connections.max.reauth.ms, librdkafka re-authenticates (KIP-368) on its open
    connections and keeps producing past the session lifetime."""
    if TARGET != "cairn":
        pytest.skip("starts its own Cairn broker with SASL listeners")
    broker = SecureBroker(tmp_path, extra=("connections.max.reauth.ms=2000",))
    try:
        conf = broker.sasl("PLAIN", "paula", "paula-pw-5521")
        delivered, errors = [], []
        producer = Producer({**conf, "linger.ms": 0, "error_cb": errors.append})
        deadline = time.monotonic() + 7
        while time.monotonic() < deadline:
            producer.produce("reauth-topic", value=b"x",
                             on_delivery=lambda err, msg: (errors if err else delivered)
                             .append(err or msg.offset()))
            producer.poll(0.25)
        assert producer.flush(30) == 0
        assert errors == []
        assert sorted(delivered) == list(range(len(delivered))) and len(delivered) > 10
        assert "re-authenticated" in broker.log_text()
        assert "after the SASL session expired" not in broker.log_text()
    finally:
        broker.stop()
