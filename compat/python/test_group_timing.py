"""Timing of classic group rebalances with confluent-kafka: two consumers of one group started a
moment apart must both end up with partitions, whether the second joins during the group's
initial rebalance delay (`group.initial.rebalance.delay.ms`, Kafka's default 3000 ms, and 0)
or just after it."""

import time

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from cairn_compat import wait_until

PARTITIONS = 4


def consumer(bootstrap, group, name):
    # Client defaults for the group timings (session 45 s, heartbeat 3 s), as users run them.
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": name,
                     "auto.offset.reset": "earliest"})


@pytest.mark.parametrize("delay_ms", [3000, 0])
@pytest.mark.parametrize("gap_s", [0.5, 3.5])
def test_two_consumers_started_a_moment_apart_are_both_assigned(broker_with, delay_ms, gap_s):
    broker = broker_with({"group.initial.rebalance.delay.ms": str(delay_ms)})
    topic, group = f"timing-{delay_ms}-{int(gap_s * 10)}", f"timing-group-{delay_ms}-{gap_s}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)],
                        operation_timeout=30)[topic].result(timeout=30)
    a = consumer(broker.bootstrap, group, "first")
    b = consumer(broker.bootstrap, group, "second")
    try:
        a.subscribe([topic])
        a.poll(0.1)
        end = time.monotonic() + gap_s
        while time.monotonic() < end:
            a.poll(0.1)
        b.subscribe([topic])

        def both_assigned():
            a.poll(0.1)
            b.poll(0.1)
            pa = {tp.partition for tp in a.assignment()}
            pb = {tp.partition for tp in b.assignment()}
            return (pa and pb and not (pa & pb) and (pa | pb) == set(range(PARTITIONS))
                    and (sorted(pa), sorted(pb)))

        # A rebalance costs at most the initial delay plus a heartbeat interval or two.
        wait_until(both_assigned, timeout=30, interval=0, what="both consumers assigned")
        # And it stays so: no member is dropped afterwards.
        settle = time.monotonic() + 4
        while time.monotonic() < settle:
            assert both_assigned(), "a member lost its partitions after the rebalance"
    finally:
        a.close()
        b.close()
