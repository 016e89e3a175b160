"""Client quotas with kafka-configs (AlterClientQuotas / DescribeClientQuotas) for clients,
users, their pairs and defaults, kept across a restart and validated with Kafka's errors; and
enforcement: a producer over its producer_byte_rate is held to it (throttle_time_ms and a muted
connection) while an unthrottled one beside it is not."""

import threading
import time

from confluent_kafka import Producer

from cairn_compat import kafka_tool


def configs(broker, *args, check=True):
    return kafka_tool("kafka-configs", "--bootstrap-server", broker.bootstrap, *args, check=check)


def quota_lines(broker, *entity):
    out = configs(broker, "--describe", *entity).stdout
    return sorted(line.strip() for line in out.splitlines() if line.startswith("Quota configs"))


def test_quotas_alter_describe_and_survive_a_restart(private_broker):
    b = private_broker
    configs(b, "--alter", "--entity-type", "clients", "--entity-name", "app1",
            "--add-config", "producer_byte_rate=1024,consumer_byte_rate=2048")
    configs(b, "--alter", "--entity-type", "clients", "--entity-default",
            "--add-config", "producer_byte_rate=4096")
    out = configs(b, "--alter", "--entity-type", "users", "--entity-name", "alice",
                  "--add-config", "request_percentage=50.5").stdout
    assert "Completed updating config for user alice." in out, out
    configs(b, "--alter", "--entity-type", "users", "--entity-name", "alice",
            "--entity-type", "clients", "--entity-name", "app1",
            "--add-config", "producer_byte_rate=512")
    configs(b, "--alter", "--entity-type", "users", "--entity-default",
            "--add-config", "consumer_byte_rate=10000")

    def check():
        assert quota_lines(b, "--entity-type", "clients", "--entity-name", "app1") == [
            "Quota configs for client-id 'app1' are consumer_byte_rate=2048.0, "
            "producer_byte_rate=1024.0"]
        assert quota_lines(b, "--entity-type", "clients", "--entity-default") == [
            "Quota configs for the default client-id are producer_byte_rate=4096.0"]
        assert quota_lines(b, "--entity-type", "users", "--entity-name", "alice",
                           "--entity-type", "clients", "--entity-name", "app1") == [
            "Quota configs for user-principal 'alice', client-id 'app1' are "
            "producer_byte_rate=512.0"]
        # Every user entity, with the user's own and default ones.
        users = quota_lines(b, "--entity-type", "users")
        assert "Quota configs for user-principal 'alice' are request_percentage=50.5" in users
        assert "Quota configs for the default user-principal are consumer_byte_rate=10000.0" \
            in users

    check()
    b.restart()
    check()

    # Removing a quota; an entity without quotas is gone.
    configs(b, "--alter", "--entity-type", "clients", "--entity-default",
            "--delete-config", "producer_byte_rate")
    assert quota_lines(b, "--entity-type", "clients", "--entity-default") == []

    # Kafka's validation: byte rates are whole numbers above zero, keys are known.
    for bad, reason in (("producer_byte_rate=1.5", "cannot be a fractional value"),
                        ("consumer_byte_rate=0", "must be greater than 0"),
                        ("request_percentage=-1", "must be greater than 0")):
        r = configs(b, "--alter", "--entity-type", "clients", "--entity-name", "app2",
                    "--add-config", bad, check=False)
        assert r.returncode != 0 and reason in r.stdout + r.stderr, (bad, r.stdout, r.stderr)
    assert quota_lines(b, "--entity-type", "clients", "--entity-name", "app2") == []


def produce_for(bootstrap, topic, client_id, seconds, timeline):
    """Produces 1 KB records as fast as the broker lets this client for `seconds`, appending
    (time, bytes) of each delivery to `timeline`."""
    p = Producer({"bootstrap.servers": bootstrap, "client.id": client_id, "acks": "1",
                  "linger.ms": 5, "batch.size": 16384,
                  "queue.buffering.max.kbytes": 256})
    value = b"x" * 1000

    def delivered(err, msg):
        if err is None:
            timeline.append((time.monotonic(), len(msg.value())))

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            p.produce(topic, value=value, on_delivery=delivered)
        except BufferError:
            p.poll(0.01)
        p.poll(0)
    p.flush(30)


def rate(timeline, start, end):
    return sum(n for t, n in timeline if start <= t < end) / (end - start)


def test_throttled_producer_is_held_to_its_byte_rate(broker_with, topic_name):
    quota = 100_000
    # Fewer quota windows so the rate settles within seconds (Kafka's default: 11 of 1 s).
    b = broker_with({"quota.window.num": "5", "quota.window.size.seconds": "1"})
    kafka_tool("kafka-topics", "--bootstrap-server", b.bootstrap, "--create",
               "--topic", topic_name, "--partitions", "1")
    configs(b, "--alter", "--entity-type", "clients", "--entity-name", "slow-producer",
            "--add-config", f"producer_byte_rate={quota}")
    slow, fast = [], []
    started = time.monotonic()
    threads = [threading.Thread(target=produce_for, args=(b.bootstrap, topic_name, name, 8, tl))
               for name, tl in (("slow-producer", slow), ("fast-producer", fast))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # After a settling second or two, over five seconds.
    window = (started + 2, started + 7)
    slow_rate, fast_rate = rate(slow, *window), rate(fast, *window)
    assert 0.8 * quota <= slow_rate <= 1.2 * quota, (slow_rate, fast_rate)
    assert fast_rate > 3 * quota, (slow_rate, fast_rate)
