"""kcat over SASL_SSL against Cairn: a SCRAM-SHA-256 user (made with kafka-configs) and a PLAIN
user produce and consume back exactly; a wrong password is refused. Cairn only (the
secure_broker fixture)."""

from cairn_compat import kafka_tool, kcat


def sasl_args(broker, mechanism, user, password):
    return ["-b", broker.sasl_bootstrap, "-X", "security.protocol=SASL_SSL",
            "-X", f"ssl.ca.location={broker.certs / 'ca.pem'}",
            "-X", f"sasl.mechanism={mechanism}", "-X", f"sasl.username={user}",
            "-X", f"sasl.password={password}"]


def test_kcat_produces_and_consumes_over_sasl_ssl(secure_broker):
    b = secure_broker
    kafka_tool("kafka-configs", "--bootstrap-server", b.plain_bootstrap, "--alter",
               "--entity-type", "users", "--entity-name", "kim",
               "--add-config", "SCRAM-SHA-256=[password=kim-kcat-pw-3390]")
    for mechanism, user, password, topic in [
        ("SCRAM-SHA-256", "kim", "kim-kcat-pw-3390", "kcat-scram"),
        ("PLAIN", "paula", "paula-pw-5521", "kcat-plain"),
    ]:
        conn = sasl_args(b, mechanism, user, password)
        lines = "".join(f"k{i}:v{i}\n" for i in range(5))
        kcat(*conn, "-P", "-t", topic, "-K", ":", input=lines)
        out = kcat(*conn, "-C", "-t", topic, "-o", "beginning", "-e", "-q",
                   "-f", "%k=%s\\n").stdout
        assert out.split() == [f"k{i}=v{i}" for i in range(5)], out

    refused = kcat(*sasl_args(b, "SCRAM-SHA-256", "kim", "wrong-kcat-pw"), "-L", "-m", "10",
                   check=False)
    assert refused.returncode != 0
    assert "Authentication failed" in refused.stdout + refused.stderr
    log = b.log_text()
    assert "wrong-kcat-pw" not in log and "kim-kcat-pw-3390" not in log
