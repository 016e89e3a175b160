"""kill -9 of the broker while an idempotent producer (confluent-kafka, max.in.flight 5, the
default) has several requests stored but not yet answered (RELIABILITY.md, finding 1).

A small TCP proxy sits between the client and Cairn (which advertises the proxy's address), so
the test decides what the client sees: it passes everything at first, then holds back Cairn's
answers while the producer sends five requests; once Cairn has stored all five (one segment
each: the topic rolls at every batch, so a producer snapshot lies between them), Cairn is
killed with SIGKILL and restarted, and the proxy passes everything again. The client retries
its five unanswered requests with their original sequences: each must be answered as a
duplicate with its original offsets (no OUT_OF_ORDER_SEQUENCE_NUMBER, which is fatal to the
producer), and in the end every acknowledged record is in the log exactly once, at the offset
its acknowledgement gave.
"""

import socket
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cairn_compat import TARGET, Broker, free_port, wait_until

import pytest

BEFORE = 4   # records acknowledged before the answers are held back
HELD = 5     # requests stored but not answered at the kill (librdkafka's default in-flight)
AFTER = 6    # records queued behind them


class Proxy:
    """Forwards 127.0.0.1:port to the broker; with `hold` set, the broker's answers are dropped.
    A connection whose broker side closes is closed on the client side too."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.hold = threading.Event()
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src, dst, answers):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if answers and self.hold.is_set():
                    continue
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.closed = True
        self.server.close()


def segment_count(broker: Broker, topic: str) -> int:
    return len(list((broker.data_dir / f"{topic}-0").glob("*.log")))


@pytest.mark.skipif(TARGET != "cairn", reason="kills and restarts the broker's process")
def test_idempotent_producer_survives_kill_with_requests_in_flight(tmp_path, topic_name):
    broker_port = free_port()
    proxy = Proxy(broker_port)
    broker = Broker("cairn", tmp_path / "broker", port=broker_port,
                    settings={"advertised.listeners": f"PLAINTEXT://127.0.0.1:{proxy.port}"})
    broker.start()
    try:
        run(broker, proxy, topic_name)
    finally:
        proxy.close()
        broker.stop()


def run(broker: Broker, proxy: Proxy, topic: str):
    bootstrap = f"127.0.0.1:{proxy.port}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    # Every batch (one record of ~80 bytes) goes into a segment of its own: each append rolls,
    # and each roll writes a producer snapshot.
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                  config={"segment.bytes": "100"})],
                        operation_timeout=30)[topic].result(timeout=30)
    fatal, acked, failed = [], {}, []

    def on_error(err):
        if err.fatal():
            fatal.append(str(err))

    def delivered(err, msg):
        if err is None:
            acked[msg.value().decode()] = msg.offset()
        else:
            failed.append((msg.value().decode(), str(err)))

    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 0, "batch.num.messages": 1, "error_cb": on_error,
                  "max.in.flight.requests.per.connection": HELD, "message.timeout.ms": 120000,
                  "reconnect.backoff.max.ms": 200})
    for i in range(BEFORE):
        p.produce(topic, value=f"before-{i}", partition=0, on_delivery=delivered)
    assert p.flush(30) == 0 and len(acked) == BEFORE, (acked, failed, fatal)

    base = segment_count(broker, topic)
    proxy.hold.set()
    for i in range(HELD + AFTER):
        p.produce(topic, value=f"held-{i}", partition=0, on_delivery=delivered)
        p.poll(0)
    # All five requests in flight are stored (a segment each), none is answered.
    wait_until(lambda: segment_count(broker, topic) >= base + HELD, timeout=30,
               what="the held requests to be stored")
    time.sleep(0.5)
    p.poll(0)
    assert len(acked) == BEFORE, "an answer got through the proxy"
    assert segment_count(broker, topic) == base + HELD, "more than five requests were in flight"

    broker.proc.kill()
    broker.proc.wait(10)
    broker.proc = None
    proxy.hold.clear()
    broker.start()

    try:
        left = p.flush(90)
    except Exception as e:  # a fatal error can surface from the delivery callbacks
        left = repr(e)
    # Before the fix: OUT_OF_ORDER_SEQUENCE_NUMBER, fatal, and the queue purged.
    assert (fatal, left, failed) == ([], 0, []), \
        f"after the restart: fatal {fatal}, flush {left}, failed {failed}\n{broker.log_tail()}"
    expected = [f"before-{i}" for i in range(BEFORE)] + [f"held-{i}" for i in range(HELD + AFTER)]
    assert sorted(acked) == sorted(expected)
    # A last record after the retries: the producer goes on with its sequence.
    p.produce(topic, value="last", partition=0, on_delivery=delivered)
    assert p.flush(30) == 0 and fatal == [] and "last" in acked

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{topic}",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    seen = {}
    deadline = time.monotonic() + 30
    try:
        while len(seen) < len(acked) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                raise KafkaException(m.error())
            value = m.value().decode()
            assert value not in seen, f"{value} stored twice: offsets {seen[value]} and {m.offset()}"
            seen[value] = m.offset()
        # Anything beyond would be a duplicate written after the restart.
        m = c.poll(1.0)
        assert m is None or m.error(), f"more records than acknowledged: {m.value()}"
    finally:
        c.close()
    assert seen == acked
