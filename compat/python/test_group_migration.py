"""Online conversion of a consuming group between the classic and the consumer (KIP-848)
protocols, with confluent-kafka: a group of classic consumers is upgraded one member at a time
to `group.protocol=consumer` while records keep arriving, then downgraded the same way. No
record is lost, every partition is assigned at every step's end, and the admin client and
`kafka-consumer-groups --list --type` see the group's type change as its first
consumer-protocol member arrives and its last one leaves."""

from confluent_kafka import ConsumerGroupType, Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from cairn_compat import kafka_tool, wait_until

SETTINGS = {"group.coordinator.rebalance.protocols": "classic,consumer",
            "group.initial.rebalance.delay.ms": "0",
            "group.consumer.heartbeat.interval.ms": "500",
            "group.consumer.session.timeout.ms": "6000",
            "group.consumer.min.session.timeout.ms": "6000",
            "group.consumer.min.heartbeat.interval.ms": "500"}
PARTITIONS = 6
MEMBERS = 3


class Run:
    """A producer writing numbered records and a group of consumers polled in turn."""

    def __init__(self, broker, topic, group):
        self.broker, self.topic, self.group = broker, topic, group
        self.producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
        self.produced, self.consumed = 0, set()
        self.members = {}

    def consumer(self, name, protocol):
        config = {"bootstrap.servers": self.broker.bootstrap, "group.id": self.group,
                  "client.id": name, "group.protocol": protocol,
                  "auto.offset.reset": "earliest", "enable.auto.commit": True,
                  "auto.commit.interval.ms": 200}
        if protocol == "classic":
            config.update({"session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
        c = Consumer(config)
        c.subscribe([self.topic])
        return c

    def step(self):
        """Produces a few records, then polls every member once."""
        for _ in range(3):
            self.producer.produce(self.topic, value=f"r{self.produced}".encode(),
                                  partition=self.produced % PARTITIONS)
            self.produced += 1
        self.producer.poll(0)
        for c in self.members.values():
            m = c.poll(0.05)
            if m is not None and m.error() is None:
                self.consumed.add(m.value().decode())

    def settled(self):
        """Runs until the members' assignments are disjoint, none empty, and cover every
        partition."""
        def check():
            self.step()
            sets = [{tp.partition for tp in c.assignment()} for c in self.members.values()]
            union = set().union(*sets)
            return (all(sets) and sum(len(s) for s in sets) == len(union)
                    and union == set(range(PARTITIONS)))
        wait_until(check, timeout=90, interval=0, what="every partition assigned once")

    def switch(self, name, protocol):
        """Closes member `name` (it leaves the group) and starts it again with `protocol`."""
        self.members.pop(name).close()
        self.members[name] = self.consumer(name, protocol)
        self.settled()

    def group_type(self):
        admin = AdminClient({"bootstrap.servers": self.broker.bootstrap})
        return admin.describe_consumer_groups([self.group])[self.group].result(timeout=30).type

    def listed_as(self, kind):
        out = kafka_tool("kafka-consumer-groups", "--bootstrap-server", self.broker.bootstrap,
                         "--list", "--type", kind).stdout
        return self.group in out.split()


def test_a_consuming_group_is_upgraded_and_downgraded_member_by_member(broker_with, topic_name):
    broker = broker_with(SETTINGS)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic_name, num_partitions=PARTITIONS, replication_factor=1)],
                        operation_timeout=30)[topic_name].result(timeout=30)
    run = Run(broker, topic_name, f"g-{topic_name}")
    names = [f"m{i}" for i in range(MEMBERS)]
    try:
        for name in names:
            run.members[name] = run.consumer(name, "classic")
        run.settled()
        assert run.group_type() == ConsumerGroupType.CLASSIC
        assert run.listed_as("classic")

        # Upgrade, one member at a time: the first consumer-protocol member turns the group
        # into a consumer group, in which the classic members carry on.
        for i, name in enumerate(names):
            run.switch(name, "consumer")
            assert run.group_type() == ConsumerGroupType.CONSUMER, f"after {i + 1} switched"
        assert run.listed_as("consumer") and not run.listed_as("classic")

        # Downgrade: the group stays a consumer group until its last consumer-protocol
        # member leaves.
        for i, name in enumerate(names):
            run.switch(name, "classic")
            expected = ConsumerGroupType.CLASSIC if i == MEMBERS - 1 else ConsumerGroupType.CONSUMER
            assert run.group_type() == expected, f"after {i + 1} switched back"
        assert run.listed_as("classic") and not run.listed_as("consumer")

        # No record lost: everything produced is consumed (some twice, around rebalances).
        assert run.producer.flush(30) == 0
        produced = {f"r{i}" for i in range(run.produced)}

        def drained():
            for c in run.members.values():
                m = c.poll(0.05)
                if m is not None and m.error() is None:
                    run.consumed.add(m.value().decode())
            return produced <= run.consumed
        wait_until(drained, timeout=60, interval=0, what="every produced record consumed")
    finally:
        for c in run.members.values():
            c.close()
