"""kill -9 of the broker at every step of a transaction's commit and abort (confluent-kafka).

The broker is started with CAIRN_CRASH_AT naming a step (src/txn/crash.rs): during the offset
commit (TxnOffsetCommit, before EndTxn), before the prepare record, after it, between the
markers of two partitions, before the complete record, after it. A transactional producer
writes to three partitions and commits its consumer's offsets in the transaction
(send_offsets_to_transaction), then commits or aborts; the broker kills itself at the step,
the client is killed too (a crashed application), and the broker restarts without the
variable. Then, as Kafka would:
  - a decision made durable (the prepare record written) is carried out at start-up, with no
    client: a commit's records and its offsets are visible to read_committed at once;
  - a transaction killed before its decision stays open and is aborted by the next producer
    with the same transactional id;
  - read_committed never sees an aborted or partial transaction, the group's committed offset
    moves exactly with its transaction, and the partitions' LSO is not held back.
"""

import signal
import subprocess
import sys
import textwrap
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

POINTS = ["txn-offset-commit", "before-prepare", "after-prepare", "between-markers",
          "before-complete", "after-complete"]
# Steps at which the coordinator has made its decision durable.
DECIDED = {"after-prepare", "between-markers", "before-complete", "after-complete"}
OUT_PARTITIONS = 3
INPUT_RECORDS = 6
BASELINE_OFFSET = 2  # the group's offset on the input before the transaction

# The application: one transaction of a consume-transform-produce loop, run in its own process
# so that it can be killed like the broker.
CLIENT = textwrap.dedent("""
    import sys
    from confluent_kafka import Consumer, Producer, TopicPartition
    bootstrap, txn_id, src, dst, group, action = sys.argv[1:]
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id,
                  "transaction.timeout.ms": 60000})
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(6):
        p.produce(dst, value=f"v-{i}", partition=i % 3)
    p.flush(30)
    print("produced", flush=True)
    p.send_offsets_to_transaction([TopicPartition(src, 0, 6)],
                                  consumer.consumer_group_metadata(), 30)
    print("offsets sent", flush=True)
    if action == "commit":
        p.commit_transaction(60)
    else:
        p.abort_transaction(60)
    print("ended", flush=True)
""")


def read_committed(broker, topic, until, timeout=30.0):
    """Values of `topic` seen by read_committed from the start until `until(values)` holds,
    then one more second (to catch anything beyond)."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"check-{time.monotonic_ns()}",
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    c.assign([TopicPartition(topic, p, 0) for p in range(OUT_PARTITIONS)])
    values = []
    deadline = time.monotonic() + timeout
    settled = None
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error():
                values.append(m.value().decode())
            if settled is None and until(values):
                settled = time.monotonic() + 1.0
            if settled is not None and time.monotonic() > settled:
                return sorted(values)
    finally:
        c.close()
    raise AssertionError(f"read_committed of {topic} never got there; saw {sorted(values)}")


def committed_offset(broker, topic, group):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        return c.committed([TopicPartition(topic, 0)], 15)[0].offset
    finally:
        c.close()


@pytest.mark.parametrize("action", ["commit", "abort"])
@pytest.mark.parametrize("point", POINTS)
def test_kill_at_each_step_of_end_txn(private_broker, topic_name, point, action):
    broker = private_broker
    src, dst, group, txn_id = f"{topic_name}-in", f"{topic_name}-out", f"g-{topic_name}", f"t-{topic_name}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for name, n in ((src, 1), (dst, OUT_PARTITIONS)):
        admin.create_topics([NewTopic(name, num_partitions=n, replication_factor=1)],
                            operation_timeout=30)[name].result(timeout=30)
    plain = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(INPUT_RECORDS):
        plain.produce(src, value=str(i), partition=0)
    assert plain.flush(30) == 0
    baseline = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    baseline.commit(offsets=[TopicPartition(src, 0, BASELINE_OFFSET)], asynchronous=False)
    baseline.close()

    # Restart with the crash point armed (it is read at start-up).
    broker.stop()
    broker.env = {"CAIRN_CRASH_AT": point}
    broker.start()
    client = subprocess.Popen([sys.executable, "-c", CLIENT, broker.bootstrap, txn_id, src, dst,
                               group, action], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        broker.proc.wait(60)
    except subprocess.TimeoutExpired:
        client.kill()
        pytest.fail(f"the broker did not stop at {point}; client said:\n{client.communicate()[0]}")
    finally:
        client.kill()
    said = client.communicate()[0]
    assert broker.proc.returncode == -signal.SIGKILL, broker.log_tail()
    assert f"killing this broker at {point}" in broker.log_tail(200)
    assert "ended" not in said, f"EndTxn answered before the kill at {point}:\n{said}"
    broker.proc = None
    broker.env = {}
    broker.start()

    committed = action == "commit" and point in DECIDED
    produced = [f"v-{i}" for i in range(INPUT_RECORDS)]
    if committed:
        # The durable decision is carried out at start-up, without the client.
        assert read_committed(broker, dst, lambda v: len(v) >= INPUT_RECORDS) == sorted(produced)
        assert committed_offset(broker, src, group) == INPUT_RECORDS

    # The next incarnation of the application: InitProducerId finishes or aborts what is left,
    # and its own transaction commits (the LSO of every partition moves past the old one).
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": txn_id})
    p.init_transactions(30)
    p.begin_transaction()
    for part in range(OUT_PARTITIONS):
        p.produce(dst, value=f"after-{part}", partition=part)
    p.commit_transaction(30)
    after = [f"after-{part}" for part in range(OUT_PARTITIONS)]
    seen = read_committed(broker, dst, lambda v: all(a in v for a in after))
    expected = sorted((produced if committed else []) + after)
    assert seen == expected, f"{point}/{action}: read_committed saw {seen}"
    assert committed_offset(broker, src, group) == (INPUT_RECORDS if committed else BASELINE_OFFSET)
