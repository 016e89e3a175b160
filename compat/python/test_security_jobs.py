"""The design's four jobs once end to end over SASL_SSL (SCRAM-SHA-512) with ACLs on, each
principal holding only the ACLs its part of a job needs (granted by a PLAIN super user with the
admin API, CreateAcls):

1. Event sourcing: `ledger` (WRITE on `events`) appends idempotently to a `retention.ms=-1`
   topic; `projection` (READ on `events` and on its group) reads it all from offset 0, in order.
2. Cache rebuild: `cache-writer` (WRITE on `cache`) writes versions and tombstones to a
   compacted topic; `cache-app` (READ on `cache` and its group) rebuilds its cache from offset 0
   and gets exactly the latest value of every live key.
3. Reprocessing: `ops` (READ on the group and the topic) resets `projection`'s group to the
   earliest offsets with `kafka-consumer-groups --reset-offsets --command-config`; the job reads
   every record again at the same offsets.
4. CDC snapshot: `cdc-writer` (WRITE on `cdc`) writes row changes to a `compact,delete` topic;
   `cdc-follower` (READ on `cdc` and its group) reads the compacted snapshot, then follows live
   changes.

Each principal is also refused what it was not granted (the writer may not read, the reader
may not write). Cairn only: starts its own broker with SASL listeners and ACLs."""

import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient,
                                   NewTopic, ResourcePatternType, ResourceType,
                                   ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialUpsertion)

from cairn_compat import TARGET, SecureBroker, kafka_tool, wait_until

AUTHORIZER = "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer"
MECHANISM = "SCRAM-SHA-512"
EVENTS = 3000
PARTITIONS = 3
KEYS, VERSIONS, DELETED = 50, 20, 10
FAST_CLEANING = {
    "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "100",
}


@pytest.fixture
def jobs_broker(tmp_path):
    if TARGET != "cairn":
        pytest.skip("starts its own Cairn broker with SASL listeners and ACLs")
    broker = SecureBroker(tmp_path, extra=(AUTHORIZER, "super.users=User:admin",
                                           "log.cleaner.backoff.ms=200"))
    yield broker
    broker.stop()


class Cluster:
    """The broker as its admin (a PLAIN super user) and its SCRAM users see it."""

    def __init__(self, broker):
        self.broker = broker
        self.admin = AdminClient(broker.sasl("PLAIN", "admin", "admin-pw"))

    def user(self, name):
        """Creates SCRAM user `name` (password `<name>-pw-7731`); returns its client settings."""
        password = f"{name}-pw-7731"
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
        self.admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(name, info, password.encode())])[name].result(timeout=30)
        return self.broker.sasl(MECHANISM, name, password)

    def topic(self, name, partitions, config):
        self.admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                           config=config)])[name].result(timeout=30)

    def grant(self, user, resource, name, *operations):
        bindings = [AclBinding(resource, name, ResourcePatternType.LITERAL, f"User:{user}", "*",
                               op, AclPermissionType.ALLOW) for op in operations]
        for future in self.admin.create_acls(bindings).values():
            future.result(timeout=30)


def produce(conf, topic, records, **where):
    """Sends (key, value) records in order with an idempotent producer (`partition=0` in
    `where` pins them); returns {(partition, offset): (key, value)}."""
    acked, errors = {}, []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked[(msg.partition(), msg.offset())] = (msg.key(), msg.value())

    p = Producer({**conf, "linger.ms": 5, "enable.idempotence": True})
    for key, value in records:
        p.produce(topic, key=key, value=value, on_delivery=on_delivery, **where)
    assert p.flush(60) == 0
    assert errors == [], errors[:3]
    return acked


def refused_write(conf, topic):
    """The error code of one record sent by a principal without WRITE."""
    errors = []
    p = Producer({**conf, "message.timeout.ms": 10000})
    p.produce(topic, value=b"x", on_delivery=lambda err, msg: errors.append(err))
    p.flush(30)
    assert len(errors) == 1 and errors[0] is not None, errors
    return errors[0].code()


def refused_read(conf, topic, group):
    """The error code a principal without READ on `topic` gets when it reads it as a member of
    `group` (a consumer with a group looks its coordinator up, which needs the group's ACL)."""
    c = Consumer({**conf, "group.id": group, "enable.auto.commit": False})
    try:
        # Subscribed, not assigned: librdkafka reports a subscribed topic's authorization error
        # to the application, and keeps retrying an assigned one silently.
        c.subscribe([topic])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None:
                assert m.error() is not None, "read a record without READ"
                return m.error().code()
        raise AssertionError(f"reading {topic} without READ neither failed nor returned")
    finally:
        c.close()


def read_in_group(conf, topic, group, expect, timeout=90):
    """Consumes in `group` until `expect` records arrived, commits, closes.
    Returns {(partition, offset): (key, value)}."""
    c = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    got = {}
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(got) < expect and time.monotonic() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.5):
                assert m.error() is None, m.error()
                got[(m.partition(), m.offset())] = (m.key(), m.value())
        assert len(got) == expect, f"read {len(got)} of {expect} records"
        c.commit(asynchronous=False)
        return got
    finally:
        c.close()


def read_from_start(conf, topic, group):
    """Partition 0 of `topic` from its log start to the high watermark, assigned (no offsets
    committed; librdkafka still looks up `group`'s coordinator): [(offset, key, value)]."""
    c = Consumer({**conf, "group.id": group, "enable.auto.commit": False})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        if high == 0:
            return []
        c.assign([TopicPartition(topic, 0, low)])
        got, deadline = [], time.monotonic() + 30
        while time.monotonic() < deadline:
            for m in c.consume(num_messages=10_000, timeout=0.5):
                assert m.error() is None, m.error()
                got.append((m.offset(), m.key(), m.value()))
            if got and got[-1][0] >= high - 1:
                return got
        raise AssertionError(f"read {len(got)} records, never reached offset {high - 1}")
    finally:
        c.close()


def versions(writer, topic):
    """KEYS keys x VERSIONS values, then tombstones for the first DELETED keys, on partition 0.
    Returns {key: (offset, value)} of the live keys."""
    records = [(f"k{k}", f"v{k}-{v}") for v in range(VERSIONS) for k in range(KEYS)]
    records += [(f"k{k}", None) for k in range(DELETED)]
    acked = produce(writer, topic, records, partition=0)
    latest = {}
    for (_, offset), (key, value) in sorted(acked.items()):
        latest[key.decode()] = (offset, value)
    live = {k: (o, v.decode()) for k, (o, v) in latest.items() if v is not None}
    assert len(live) == KEYS - DELETED
    return live


def wait_compacted(writer, reader, group, topic, live):
    """Until `reader` reading from offset 0 gets one record per live key (its latest value at
    its original offset) and no tombstone. `writer` keeps appending a heartbeat so segments
    roll and the cleaner comes back."""
    heartbeat = Producer({**writer, "linger.ms": 0})
    state = {}

    def compacted_view():
        heartbeat.produce(topic, key="heartbeat", value=str(time.time()), partition=0)
        heartbeat.flush(10)
        records = [r for r in read_from_start(reader, topic, group) if r[1] != b"heartbeat"]
        keys = [k for _, k, _ in records]
        view = {k.decode(): (o, v.decode()) for o, k, v in records if v is not None}
        state["last"] = f"{len(records)} records, {len(set(keys))} distinct keys"
        return len(keys) == len(set(keys)) == len(live) and view == live and records

    try:
        return wait_until(compacted_view, timeout=150, interval=0.5,
                          what="compaction to leave one record per live key, no tombstones")
    except AssertionError as e:
        raise AssertionError(f"{e}; last read: {state.get('last')}") from None


def lags(broker, ops_config, group, topic):
    out = kafka_tool("kafka-consumer-groups", "--bootstrap-server", broker.sasl_bootstrap,
                     "--command-config", ops_config, "--describe", "--group", group).stdout
    found = {}
    for line in out.splitlines():
        cells = line.split()
        if len(cells) >= 6 and cells[0] == group and cells[1] == topic:
            found[int(cells[2])] = (int(cells[3]), int(cells[4]), int(cells[5]))
    return found


def test_the_four_jobs_over_sasl_ssl_with_acls(jobs_broker):
    b = jobs_broker
    cluster = Cluster(b)
    topic, group = ResourceType.TOPIC, ResourceType.GROUP
    read, write = AclOperation.READ, AclOperation.WRITE

    cluster.topic("events", PARTITIONS, {"retention.ms": "-1"})
    cluster.topic("cache", 1, {"cleanup.policy": "compact", **FAST_CLEANING})
    cluster.topic("cdc", 1, {"cleanup.policy": "compact,delete", "retention.ms": "-1",
                             **FAST_CLEANING})
    ledger, projection, ops = cluster.user("ledger"), cluster.user("projection"), \
        cluster.user("ops")
    cache_writer, cache_app = cluster.user("cache-writer"), cluster.user("cache-app")
    cdc_writer, cdc_follower = cluster.user("cdc-writer"), cluster.user("cdc-follower")
    cluster.grant("ledger", topic, "events", write)
    cluster.grant("projection", topic, "events", read)
    cluster.grant("projection", group, "projection", read)
    cluster.grant("ops", topic, "events", read)
    cluster.grant("ops", group, "projection", read)
    cluster.grant("cache-writer", topic, "cache", write)
    cluster.grant("cache-app", topic, "cache", read)
    cluster.grant("cache-app", group, "cache-rebuild", read)
    cluster.grant("cdc-writer", topic, "cdc", write)
    cluster.grant("cdc-follower", topic, "cdc", read)
    cluster.grant("cdc-follower", group, "cdc-snapshot", read)

    # The compacted topics are written first, so their cleaning overlaps jobs 1 and 3.
    cache_live = versions(cache_writer, "cache")
    cdc_live = versions(cdc_writer, "cdc")

    # Job 1: event sourcing. Only what was granted: the writer cannot read, the reader
    # cannot write, nobody else's topic is reachable.
    events = produce(ledger, "events",
                     [(f"entity-{i % 97}", f"event-{i}") for i in range(EVENTS)])
    assert len(events) == EVENTS
    # The writer holds no group ACL either: its read may be refused at the group first.
    assert refused_read(ledger, "events", "projection") in (
        KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED)
    assert refused_write(projection, "events") == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert refused_read(projection, "cache", "projection") == \
        KafkaError.TOPIC_AUTHORIZATION_FAILED
    first = read_in_group(projection, "events", "projection", EVENTS)
    assert first == events
    for p in range(PARTITIONS):
        offsets = sorted(o for q, o in first if q == p)
        assert offsets == list(range(len(offsets))), f"partition {p} has gaps"

    # Job 3: reprocessing. The operator resets the group with the standard tool, as `ops`.
    ops_config = b.java_client_config(MECHANISM, "ops", "ops-pw-7731")
    assert all(lag == 0 for _, _, lag in lags(b, ops_config, "projection", "events").values())
    kafka_tool("kafka-consumer-groups", "--bootstrap-server", b.sasl_bootstrap,
               "--command-config", ops_config, "--reset-offsets", "--group", "projection",
               "--topic", "events", "--to-earliest", "--execute")
    reset = lags(b, ops_config, "projection", "events")
    assert sorted(reset) == list(range(PARTITIONS))
    assert all(cur == 0 and lag == end for cur, end, lag in reset.values()), reset
    assert sum(end for _, end, _ in reset.values()) == EVENTS
    second = read_in_group(projection, "events", "projection", EVENTS)
    assert second == first

    # Job 2: cache rebuild. A fresh reader of the compacted topic gets the latest live values.
    assert refused_write(cache_app, "cache") == KafkaError.TOPIC_AUTHORIZATION_FAILED
    rebuilt = wait_compacted(cache_writer, cache_app, "cache-rebuild", "cache", cache_live)
    assert len(rebuilt) == KEYS - DELETED

    # Job 4: CDC snapshot, then live changes, in the follower's group.
    wait_compacted(cdc_writer, cdc_follower, "cdc-snapshot", "cdc", cdc_live)
    c = Consumer({**cdc_follower, "group.id": "cdc-snapshot", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    try:
        c.subscribe(["cdc"])
        snapshot, deadline = {}, time.monotonic() + 60
        while len(snapshot) < len(cdc_live) and time.monotonic() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.5):
                assert m.error() is None, m.error()
                if m.key() != b"heartbeat":
                    snapshot[m.key().decode()] = (m.offset(), m.value().decode())
        assert snapshot == cdc_live
        produce(cdc_writer, "cdc",
                [(f"k{k}", f"v{k}-live") for k in range(DELETED, DELETED + 5)], partition=0)
        changes, deadline = [], time.monotonic() + 60
        while len(changes) < 5 and time.monotonic() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.5):
                assert m.error() is None, m.error()
                if m.key() != b"heartbeat":
                    changes.append((m.key().decode(), m.value().decode()))
        assert changes == [(f"k{k}", f"v{k}-live") for k in range(DELETED, DELETED + 5)]
        c.commit(asynchronous=False)
    finally:
        c.close()

    # Passwords never reach the broker's log.
    log = b.log_text()
    for user in ("ledger", "projection", "ops", "cache-writer", "cache-app", "cdc-writer",
                 "cdc-follower"):
        assert f"{user}-pw-7731" not in log
