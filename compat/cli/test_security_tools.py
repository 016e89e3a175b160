"""Apache Kafka's CLI tools against Cairn over SASL_SSL with a client properties file:
kafka-configs manages SCRAM users (AlterUserScramCredentials / DescribeUserScramCredentials),
then kafka-topics, the console producer and consumer and kafka-consumer-groups authenticate
with SCRAM-SHA-512 through a client properties file (--command-config, or before 4.2 the
console tools' --producer.config / --consumer.config).

Cairn only (the secure_broker fixture starts a broker with a PLAINTEXT and a SASL_SSL
listener)."""

from cairn_compat import console_flags, kafka_tool


def configs(bootstrap, *args, command_config=None, check=True):
    extra = ["--command-config", command_config] if command_config else []
    return kafka_tool("kafka-configs", "--bootstrap-server", bootstrap, *extra, *args,
                      check=check)


def test_scram_users_and_tools_over_sasl_ssl(secure_broker):
    b = secure_broker
    # The first user over the PLAINTEXT listener, as an operator bootstraps one.
    out = configs(b.plain_bootstrap, "--alter", "--entity-type", "users", "--entity-name", "alice",
                  "--add-config", "SCRAM-SHA-512=[iterations=8192,password=alice-cli-pw-6610]")
    assert "Completed updating config for user alice." in out.stdout
    alice = b.java_client_config("SCRAM-SHA-512", "alice", "alice-cli-pw-6610")

    # From here on alice works over SASL_SSL: she adds bob with both mechanisms.
    configs(b.sasl_bootstrap, "--alter", "--entity-type", "users", "--entity-name", "bob",
            "--add-config", "SCRAM-SHA-256=[password=bob-pw],SCRAM-SHA-512=[password=bob-pw]",
            command_config=alice)

    topic = "secure-tools"
    out = kafka_tool("kafka-topics", "--bootstrap-server", b.sasl_bootstrap,
                     "--command-config", alice, "--create", "--topic", topic,
                     "--partitions", "1").stdout
    assert f"Created topic {topic}." in out
    assert topic in kafka_tool("kafka-topics", "--bootstrap-server", b.sasl_bootstrap,
                               "--command-config", alice, "--list").stdout.split()

    kafka_tool("kafka-console-producer", "--bootstrap-server", b.sasl_bootstrap,
               console_flags()["producer-config"], alice, "--topic", topic, input="one\ntwo\nthree\n")
    bob = b.java_client_config("SCRAM-SHA-256", "bob", "bob-pw")
    consumed = kafka_tool("kafka-console-consumer", "--bootstrap-server", b.sasl_bootstrap,
                          console_flags()["consumer-config"], bob, "--topic", topic, "--group", "secure-g",
                          "--from-beginning", "--max-messages", "3",
                          "--timeout-ms", "30000").stdout.split()
    assert consumed == ["one", "two", "three"]
    reset = kafka_tool("kafka-consumer-groups", "--bootstrap-server", b.sasl_bootstrap,
                       "--command-config", alice, "--group", "secure-g", "--topic", topic,
                       "--reset-offsets", "--to-earliest", "--execute").stdout
    assert "secure-g" in reset and topic in reset

    # bob's SCRAM-SHA-256 credential deleted: bob can no longer log in with it.
    configs(b.sasl_bootstrap, "--alter", "--entity-type", "users", "--entity-name", "bob",
            "--delete-config", "SCRAM-SHA-256", command_config=alice)
    refused = kafka_tool("kafka-topics", "--bootstrap-server", b.sasl_bootstrap,
                         "--command-config", bob, "--list", check=False, timeout=120)
    assert refused.returncode != 0
    assert "Authentication failed" in refused.stdout + refused.stderr

    log = b.log_text()
    for secret in ("alice-cli-pw-6610", "bob-pw"):
        assert secret not in log


def test_configs_describes_scram_users(secure_broker):
    """`kafka-configs --describe --entity-type users` shows the user's SCRAM credentials and
    asks for its client quotas too (DescribeClientQuotas)."""
    b = secure_broker
    configs(b.plain_bootstrap, "--alter", "--entity-type", "users", "--entity-name", "alice",
            "--add-config", "SCRAM-SHA-512=[iterations=8192,password=alice-cli-pw-6610]")
    configs(b.plain_bootstrap, "--alter", "--entity-type", "users", "--entity-name", "alice",
            "--add-config", "consumer_byte_rate=20000")
    alice = b.java_client_config("SCRAM-SHA-512", "alice", "alice-cli-pw-6610")
    described = configs(b.sasl_bootstrap, "--describe", "--entity-type", "users",
                        "--entity-name", "alice", command_config=alice).stdout
    assert ("SCRAM credential configs for user-principal 'alice' are "
            "SCRAM-SHA-512=iterations=8192") in described, described
    assert ("Quota configs for user-principal 'alice' are consumer_byte_rate=20000.0"
            in described), described
