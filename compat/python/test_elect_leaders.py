"""ElectLeaders on a single node (kafka-leader-election): every partition already has its one
replica as leader, so each election is not needed; an unknown partition is refused. (The
cluster's elections are in test_cluster_ops.py.)"""

from confluent_kafka.admin import AdminClient, NewTopic

from cairn_compat import kafka_tool


def test_single_node_elections_are_not_needed(broker, topic_name):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic_name, 2, 1)])[topic_name].result(30)
    for election in ("PREFERRED", "UNCLEAN"):
        out = kafka_tool("kafka-leader-election", "--bootstrap-server", broker.bootstrap,
                         "--election-type", election, "--topic", topic_name,
                         "--partition", "1").stdout
        assert f"Valid replica already elected for partitions {topic_name}-1" in out, out
    failed = kafka_tool("kafka-leader-election", "--bootstrap-server", broker.bootstrap,
                        "--election-type", "PREFERRED", "--topic", topic_name,
                        "--partition", "7", check=False)
    assert failed.returncode != 0
    assert "UnknownTopicOrPartition" in failed.stdout + failed.stderr, failed
