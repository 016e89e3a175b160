"""The operator's HTTP listener over TLS (`cairn.http.ssl.enable=true`) with HTTP Basic
authentication, from Python's own HTTPS client: /metrics, the status page and /v1/status answer
over https to a client that trusts the CA, ask for credentials without them, and refuse plain
HTTP. `cairn.http.ssl.keystore.location` gives the HTTP listener its own certificate (the Kafka
listeners keep theirs), and SIGHUP re-reads it without a restart.

Cairn only (starts its own broker with SASL listeners)."""

import base64
import http.client
import shutil
import signal
import ssl
import subprocess

import pytest

from cairn_compat import SCRIPTS, TARGET, SecureBroker, free_port, wait_until


def get(port, path, cafile, user=None, password=None):
    """(status, body) of an https GET that trusts only `cafile`."""
    context = ssl.create_default_context(cafile=str(cafile))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    headers = {}
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


@pytest.fixture
def https_broker(tmp_path):
    if TARGET != "cairn":
        pytest.skip("starts its own Cairn broker with an https listener")
    # The HTTP listener's own certificate, from a second CA (the Kafka listeners use the first).
    http_certs = tmp_path / "http-certs"
    subprocess.run([str(SCRIPTS / "make-test-certs"), str(http_certs)], check=True)
    keystore = tmp_path / "http.keystore.pem"
    shutil.copy(http_certs / "server.keystore.pem", keystore)
    port = free_port()
    broker = SecureBroker(tmp_path, extra=(
        f"cairn.http.listen=127.0.0.1:{port}",
        "cairn.http.ssl.enable=true",
        f"cairn.http.ssl.keystore.location={keystore}",
        "cairn.http.authentication=basic",
    ))
    broker.http_port, broker.http_ca, broker.http_keystore = port, http_certs / "ca.pem", keystore
    yield broker
    broker.stop()


def test_https_with_basic_auth_and_certificate_reload(https_broker):
    b = https_broker
    port, ca = b.http_port, b.http_ca
    wait_until(lambda: get(port, "/metrics", ca)[0] == 401, timeout=30, what="the https listener")

    status, body = get(port, "/metrics", ca, "admin", "admin-pw")
    assert status == 200 and "cairn_connections" in body
    status, body = get(port, "/v1/status", ca, "paula", "paula-pw-5521")
    assert status == 200 and '"cluster_id"' in body
    assert get(port, "/", ca, "admin", "admin-pw")[0] == 200
    assert get(port, "/metrics", ca, "admin", "wrong-pw")[0] == 401
    assert get(port, "/metrics", ca)[0] == 401

    # Plain HTTP on the https port gets no page.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        conn.request("GET", "/metrics")
        conn.getresponse()
    conn.close()

    # Its certificate is its own: a client trusting only the Kafka listeners' CA refuses it.
    with pytest.raises(ssl.SSLCertVerificationError):
        get(port, "/metrics", b.certs / "ca.pem", "admin", "admin-pw")

    # Replace the HTTP certificate with one of the Kafka listeners' CA and send SIGHUP.
    shutil.copy(b.certs / "server.keystore.pem", b.http_keystore)
    b.proc.send_signal(signal.SIGHUP)

    def reloaded():
        try:
            return get(port, "/metrics", b.certs / "ca.pem", "admin", "admin-pw")[0] == 200
        except ssl.SSLError:
            return False

    wait_until(reloaded, timeout=30, what="the new certificate after SIGHUP")
    with pytest.raises(ssl.SSLCertVerificationError):
        get(port, "/metrics", ca, "admin", "admin-pw")
    assert "admin-pw" not in b.log_text()
