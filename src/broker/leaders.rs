//! Who leads what, as the handlers answer it: on a single node this broker is every partition's
//! leader and the only broker; in a cluster the answers come from the etcd view
//! ([`crate::cluster`]). Metadata, DescribeTopicPartitions, DescribeCluster and FindCoordinator
//! read brokers and leaders here; Produce, Fetch and ListOffsets ask [`check`] before serving.

use kafka_protocol::error::ResponseError;

use super::errors::{code, NONE};
use super::Broker;
use crate::cluster::{NotServed, NO_LEADER};
use crate::listener::{Endpoint, Session};

/// One partition's leadership.
pub(super) struct PartitionLeaders {
    pub index: i32,
    pub error_code: i16,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline: Vec<i32>,
}

/// A topic with its partitions' leadership.
pub(super) struct TopicLeaders {
    pub topic_id: uuid::Uuid,
    pub internal: bool,
    pub partitions: Vec<PartitionLeaders>,
}

/// A live broker as a client reaches it.
pub(super) struct BrokerAddress {
    pub node_id: i32,
    pub endpoint: Endpoint,
    pub rack: Option<String>,
}

/// The topic `name` (`None` when it does not exist).
pub(super) fn topic(broker: &Broker, name: &str) -> Option<TopicLeaders> {
    let Some(cluster) = &broker.cluster else {
        let info = broker.log.topic(name)?;
        let node = broker.node_id;
        return Some(TopicLeaders {
            topic_id: info.topic_id,
            internal: info.internal,
            partitions: (0..info.partitions)
                .map(|index| PartitionLeaders {
                    index,
                    error_code: NONE,
                    leader: node,
                    leader_epoch: 0,
                    replicas: vec![node],
                    isr: vec![node],
                    offline: vec![],
                })
                .collect(),
        });
    };
    let view = cluster.view();
    let t = view.topics.get(name)?;
    let partitions = (0..t.record.replicas.len() as i32)
        .filter_map(|index| {
            let p = view.partition(name, index)?;
            let leader = p.leader();
            Some(PartitionLeaders {
                index,
                error_code: if leader == NO_LEADER {
                    code(ResponseError::LeaderNotAvailable)
                } else {
                    NONE
                },
                leader,
                leader_epoch: p.leader_epoch(),
                replicas: p.replicas.to_vec(),
                isr: p.state.map(|s| s.isr.clone()).unwrap_or_default(),
                offline: p
                    .replicas
                    .iter()
                    .copied()
                    .filter(|id| !view.brokers.contains_key(id))
                    .collect(),
            })
        })
        .collect();
    Some(TopicLeaders {
        topic_id: t.record.topic_id,
        internal: t.record.internal,
        partitions,
    })
}

/// Every topic's name.
pub(super) fn topic_names(broker: &Broker) -> Vec<String> {
    match &broker.cluster {
        None => broker.log.topics().into_iter().map(|t| t.name).collect(),
        Some(cluster) => cluster.view().topics.keys().cloned().collect(),
    }
}

/// The name of the topic with id `id`.
pub(super) fn topic_name_by_id(broker: &Broker, id: uuid::Uuid) -> Option<String> {
    match &broker.cluster {
        None => broker
            .log
            .topics()
            .into_iter()
            .find(|t| t.topic_id == id)
            .map(|t| t.name),
        Some(cluster) => cluster
            .view()
            .topics
            .iter()
            .find(|(_, t)| t.record.topic_id == id)
            .map(|(name, _)| name.clone()),
    }
}

/// Every live broker, at its advertised address for the listener `session` came through (a
/// broker without that listener is left out, as Kafka does).
pub(super) fn brokers(broker: &Broker, session: &Session) -> Vec<BrokerAddress> {
    let Some(cluster) = &broker.cluster else {
        return vec![BrokerAddress {
            node_id: broker.node_id,
            endpoint: session.advertised.clone(),
            rack: None,
        }];
    };
    cluster
        .view()
        .brokers
        .values()
        .filter_map(|b| {
            let l = b.listeners.iter().find(|l| l.name == session.listener)?;
            Some(BrokerAddress {
                node_id: b.node_id,
                endpoint: Endpoint {
                    host: l.host.clone(),
                    port: l.port,
                },
                rack: b.rack.clone(),
            })
        })
        .collect()
}

/// The controller's id (-1 while none is elected).
pub(super) fn controller_id(broker: &Broker) -> i32 {
    match &broker.cluster {
        None => broker.node_id,
        Some(cluster) => cluster.view().controller.unwrap_or(-1),
    }
}

/// The address of the leader of `topic`/`partition`, when it is live.
pub(super) fn leader_address(
    broker: &Broker,
    session: &Session,
    topic: &str,
    partition: i32,
) -> Option<BrokerAddress> {
    let leader = match &broker.cluster {
        None => broker.node_id,
        Some(cluster) => cluster.view().partition(topic, partition)?.leader(),
    };
    brokers(broker, session)
        .into_iter()
        .find(|b| b.node_id == leader)
}

/// Whether this broker serves `topic`/`partition` now (always on a single node); the error
/// code when it does not. `current_leader_epoch` is the request's, -1 when it has none.
pub(super) fn check(
    broker: &Broker,
    topic: &str,
    partition: i32,
    current_leader_epoch: i32,
) -> Result<(), i16> {
    let Some(cluster) = &broker.cluster else {
        return Ok(());
    };
    cluster
        .check_leader(topic, partition, current_leader_epoch)
        .map_err(|refusal| {
            code(match refusal {
                NotServed::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
                NotServed::NotLeader => ResponseError::NotLeaderOrFollower,
                NotServed::FencedLeaderEpoch => ResponseError::FencedLeaderEpoch,
                NotServed::UnknownLeaderEpoch => ResponseError::UnknownLeaderEpoch,
            })
        })
}
