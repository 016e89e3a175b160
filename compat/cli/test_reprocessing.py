"""Job 3 of the design (reprocessing, Kappa) end to end, with a broker restart between every
step: a job consumes a topic fully in a group and commits; the group resumes where it stopped
after a restart; an operator resets the group to the earliest offsets with the standard
kafka-consumer-groups tool; after another restart the job reads every record again."""

import time

from confluent_kafka import Consumer, Producer

from cairn_compat import kafka_tool

PARTITIONS = 3
RECORDS = 3000


def run_job(broker, topic, group, expect, timeout=90):
    """The 'stream job': consume in the group until `expect` records arrived, commit, close.
    Returns [(partition, offset, key, value)]."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    got = []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(got) < expect and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            got.append((m.partition(), m.offset(), m.key(), m.value()))
        if got:
            c.commit(asynchronous=False)
        return got
    finally:
        c.close()


def lag_by_partition(broker, group, topic):
    out = kafka_tool("kafka-consumer-groups", "--bootstrap-server", broker.bootstrap,
                     "--describe", "--group", group).stdout
    lags = {}
    for line in out.splitlines():
        cells = line.split()
        if len(cells) >= 6 and cells[0] == group and cells[1] == topic:
            lags[int(cells[2])] = (int(cells[3]), int(cells[4]), int(cells[5]))
    return lags


def test_reprocess_from_earliest_across_restarts(private_broker, topic_name):
    broker, topic, group = private_broker, topic_name, f"job-{topic_name}"
    kafka_tool("kafka-topics", "--bootstrap-server", broker.bootstrap, "--create", "--topic", topic,
               "--partitions", str(PARTITIONS), "--config", "retention.ms=-1")
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    for i in range(RECORDS):
        p.produce(topic, key=f"entity-{i % 97}", value=f"event-{i}")
    assert p.flush(60) == 0
    expected = sorted(f"event-{i}".encode() for i in range(RECORDS))

    # First run of the job: every record once.
    first = run_job(broker, topic, group, RECORDS)
    assert sorted(v for _, _, _, v in first) == expected

    # Restart: committed offsets survive; the group has no lag, the job finds nothing new.
    broker.restart()
    assert broker.last_exit_code == 0, "broker did not exit cleanly on SIGTERM"
    lags = lag_by_partition(broker, group, topic)
    assert sorted(lags) == list(range(PARTITIONS))
    assert sum(end for _, end, _ in lags.values()) == RECORDS
    assert all(lag == 0 for _, _, lag in lags.values()), lags

    # The operator resets the job to the beginning with the standard tool.
    kafka_tool("kafka-consumer-groups", "--bootstrap-server", broker.bootstrap, "--reset-offsets",
               "--group", group, "--topic", topic, "--to-earliest", "--execute")

    # Restart again: the reset is durable too.
    broker.restart()
    lags = lag_by_partition(broker, group, topic)
    assert all(cur == 0 and lag == end for cur, end, lag in lags.values()), lags

    # Second run: every record again, at the same offsets, nothing else.
    second = run_job(broker, topic, group, RECORDS)
    assert sorted(second) == sorted(first)
    lags = lag_by_partition(broker, group, topic)
    assert all(lag == 0 for _, _, lag in lags.values()), lags
