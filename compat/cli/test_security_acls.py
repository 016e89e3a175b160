"""kafka-acls against Cairn with ACLs on (authorizer.class.name = StandardAuthorizer), over
SASL_SSL with PLAIN users from the JAAS config: a super user (admin) adds, lists and removes
ACLs with --command-config, and another user (paula) is refused, then allowed, then refused
again by the console producer and consumer as the ACLs change.

Cairn only (starts its own broker with SASL listeners)."""

import pytest

from cairn_compat import TARGET, SecureBroker, console_flags, kafka_tool

AUTHORIZER = "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer"


@pytest.fixture
def acl_broker(tmp_path):
    if TARGET != "cairn":
        pytest.skip("starts its own Cairn broker with SASL listeners and ACLs")
    broker = SecureBroker(tmp_path, extra=(AUTHORIZER, "super.users=User:admin"))
    yield broker
    broker.stop()


def acls(b, admin, *args, check=True):
    return kafka_tool("kafka-acls", "--bootstrap-server", b.sasl_bootstrap,
                      "--command-config", admin, *args, check=check)


def produce(b, config, topic, lines):
    return kafka_tool("kafka-console-producer", "--bootstrap-server", b.sasl_bootstrap,
                      console_flags()["producer-config"], config, "--topic", topic,
                      console_flags()["producer"], "max.block.ms=10000",
                      console_flags()["producer"], "delivery.timeout.ms=10000",
                      console_flags()["producer"], "request.timeout.ms=5000",
                      input=lines, check=False, timeout=120)


def consume(b, config, topic, group, n):
    return kafka_tool("kafka-console-consumer", "--bootstrap-server", b.sasl_bootstrap,
                      console_flags()["consumer-config"], config, "--topic", topic,
                      "--group", group, "--from-beginning", "--max-messages", str(n),
                      "--timeout-ms", "20000", check=False, timeout=120)


def test_kafka_acls_add_list_remove_and_the_console_tools(acl_broker):
    b = acl_broker
    admin = b.java_client_config("PLAIN", "admin", "admin-pw")
    paula = b.java_client_config("PLAIN", "paula", "paula-pw-5521")
    topic = "acl-orders"
    out = kafka_tool("kafka-topics", "--bootstrap-server", b.sasl_bootstrap,
                     "--command-config", admin, "--create", "--topic", topic,
                     "--partitions", "1").stdout
    assert f"Created topic {topic}." in out

    # No ACLs: paula may not write, and does not even see the topic.
    refused = produce(b, paula, topic, "one\n")
    assert "TopicAuthorizationException" in refused.stdout + refused.stderr, refused
    listed = kafka_tool("kafka-topics", "--bootstrap-server", b.sasl_bootstrap,
                        "--command-config", paula, "--list").stdout.split()
    assert topic not in listed

    acls(b, admin, "--add", "--allow-principal", "User:paula", "--producer", "--topic", topic)
    acls(b, admin, "--add", "--allow-principal", "User:paula", "--consumer", "--topic", topic,
         "--group", "acl-g")
    listing = acls(b, admin, "--list", "--topic", topic).stdout
    assert "User:paula" in listing and "WRITE" in listing and "READ" in listing, listing

    written = produce(b, paula, topic, "one\ntwo\n")
    assert "Exception" not in written.stdout + written.stderr, written
    consumed = consume(b, paula, topic, "acl-g", 2)
    assert consumed.stdout.split() == ["one", "two"], consumed

    acls(b, admin, "--remove", "--force", "--allow-principal", "User:paula",
         "--operation", "Read", "--topic", topic)
    listing = acls(b, admin, "--list", "--topic", topic).stdout
    assert "READ" not in listing and "WRITE" in listing, listing
    again = consume(b, paula, topic, "acl-g2", 2)
    assert again.returncode != 0 or again.stdout.split() != ["one", "two"]
    assert "TopicAuthorizationException" in again.stdout + again.stderr or \
        "GroupAuthorizationException" in again.stdout + again.stderr, again
