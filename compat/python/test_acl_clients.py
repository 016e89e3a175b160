"""confluent-kafka (librdkafka) against Cairn with ACLs on, over SASL_SSL with PLAIN users: a
user with no ACL on a topic gets TOPIC_AUTHORIZATION_FAILED from the producer and the
consumer, and after a super user grants WRITE with the admin API (CreateAcls) the same
producer succeeds.

Cairn only (starts its own broker with SASL listeners and ACLs)."""

import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                   AclPermissionType, AdminClient, NewTopic, ResourcePatternType,
                                   ResourceType)

from cairn_compat import TARGET, SecureBroker

AUTHORIZER = "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer"


@pytest.fixture
def acl_broker(tmp_path):
    if TARGET != "cairn":
        pytest.skip("starts its own Cairn broker with SASL listeners and ACLs")
    broker = SecureBroker(tmp_path, extra=(AUTHORIZER, "super.users=User:admin"))
    yield broker
    broker.stop()


def produce_one(conf, topic):
    errors = []
    producer = Producer({**conf, "message.timeout.ms": 10000})
    producer.produce(topic, value=b"v", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(30)
    return errors


def test_topic_authorization_failed_then_allowed(acl_broker):
    b = acl_broker
    admin_conf = b.sasl("PLAIN", "admin", "admin-pw")
    paula = b.sasl("PLAIN", "paula", "paula-pw-5521")
    topic = "acl-py"
    admin = AdminClient(admin_conf)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic] \
        .result(timeout=30)

    errors = produce_one(paula, topic)
    assert len(errors) == 1 and errors[0] is not None
    assert errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errors

    consumer = Consumer({**paula, "group.id": "acl-py-g", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    seen, deadline = None, time.monotonic() + 30
    while seen is None and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and msg.error() is not None:
            seen = msg.error().code()
    consumer.close()
    assert seen in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED)

    # paula may not manage ACLs; admin (a super user) may.
    write = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:paula", "*",
                       AclOperation.WRITE, AclPermissionType.ALLOW)
    paula_admin = AdminClient(paula)
    with pytest.raises(KafkaException) as refused:
        paula_admin.create_acls([write])[write].result(timeout=30)
    assert refused.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    admin.create_acls([write])[write].result(timeout=30)
    listed = admin.describe_acls(AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
        AclPermissionType.ANY)).result(timeout=30)
    assert [(a.name, a.principal, a.operation) for a in listed] == \
        [(topic, "User:paula", AclOperation.WRITE)]

    assert produce_one(paula, topic) == [None]
