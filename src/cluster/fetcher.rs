//! The follower's side of replication: one task per leader this broker follows partitions of,
//! speaking Kafka's replica Fetch (a Fetch carrying this broker's id as `replica_id`) to the
//! leader's advertised listener, as Kafka's followers do.
//!
//! Before fetching a partition in a leader epoch it has not fetched in yet, the follower asks
//! the leader where its own latest epoch ends (OffsetForLeaderEpoch, KIP-101/KIP-279) and cuts
//! its log back to there: whatever it holds past that point was never committed and differs
//! from the new leader's log. It then appends the leader's batches unchanged and takes the
//! leader's high watermark. Under fsync-before-ack it fsyncs what it appended before it fetches
//! again, so the offset it next asks for (which the leader counts toward the high watermark)
//! is durable here.
//!
//! The listener used is `inter.broker.listener.name` when set, else the leader's first one; it
//! must be a PLAINTEXT listener (no SASL or TLS handshake is spoken here yet).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use super::{Cluster, NO_LEADER};

const FETCH_VERSION: i16 = 12;
const EPOCH_VERSION: i16 = 4;
/// Kafka's error codes the fetcher acts on.
const OFFSET_OUT_OF_RANGE: i16 = 1;
/// The largest answer accepted from a leader.
const MAX_FRAME: usize = 128 << 20;

/// A connection to a leader.
struct Connection {
    stream: TcpStream,
    correlation: i32,
    client_id: StrBytes,
}

impl Connection {
    async fn open(host: &str, port: u16, node_id: i32) -> std::io::Result<Connection> {
        let stream = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect((host, port)))
            .await
            .map_err(|_| std::io::Error::other("connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            correlation: 0,
            client_id: StrBytes::from_string(format!("cairn-replica-{node_id}")),
        })
    }

    async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Req,
        timeout: Duration,
    ) -> std::io::Result<Resp> {
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(self.client_id.clone()));
        let mut body = BytesMut::new();
        body.put_i32(0);
        header
            .encode(&mut body, key.request_header_version(version))
            .map_err(std::io::Error::other)?;
        request
            .encode(&mut body, version)
            .map_err(std::io::Error::other)?;
        let len = (body.len() - 4) as i32;
        body[..4].copy_from_slice(&len.to_be_bytes());
        let exchange = async {
            self.stream.write_all(&body).await?;
            let size = self.stream.read_i32().await?;
            if size < 0 || size as usize > MAX_FRAME {
                return Err(std::io::Error::other(format!("answer of {size} bytes")));
            }
            let mut frame = vec![0u8; size as usize];
            self.stream.read_exact(&mut frame).await?;
            Ok::<_, std::io::Error>(Bytes::from(frame))
        };
        let mut frame = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| std::io::Error::other("the leader did not answer in time"))??;
        let header = ResponseHeader::decode(&mut frame, key.response_header_version(version))
            .map_err(std::io::Error::other)?;
        if header.correlation_id != self.correlation {
            return Err(std::io::Error::other("answer to another request"));
        }
        let response = Resp::decode(&mut frame, version).map_err(std::io::Error::other)?;
        if frame.has_remaining() {
            debug!(
                bytes = frame.remaining(),
                "trailing bytes in a leader's answer"
            );
        }
        Ok(response)
    }
}

/// Starts (and restarts) a fetcher for every leader this broker follows partitions of.
pub(super) async fn supervise(cluster: Arc<Cluster>) {
    let mut running: HashMap<i32, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        running.retain(|_, task| !task.is_finished());
        for leader in followed(&cluster).into_keys() {
            running
                .entry(leader)
                .or_insert_with(|| tokio::spawn(fetch_from(cluster.clone(), leader)));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The partitions this broker follows, by leader: (topic, index) → leader epoch.
fn followed(cluster: &Cluster) -> BTreeMap<i32, BTreeMap<(String, i32), i32>> {
    let view = cluster.view();
    let mut out: BTreeMap<i32, BTreeMap<(String, i32), i32>> = BTreeMap::new();
    if !view.brokers.contains_key(&cluster.node_id) {
        return out;
    }
    for ((topic, index), state) in &view.partitions {
        let Some(p) = view.partition(topic, *index) else {
            continue;
        };
        let leader = state.record.leader;
        if leader == NO_LEADER
            || leader == cluster.node_id
            || !p.replicas.contains(&cluster.node_id)
            || !view.brokers.contains_key(&leader)
        {
            continue;
        }
        out.entry(leader)
            .or_default()
            .insert((topic.clone(), *index), state.record.leader_epoch);
    }
    out
}

/// Fetches from `leader` until this broker follows nothing it leads.
async fn fetch_from(cluster: Arc<Cluster>, leader: i32) {
    let mut connection: Option<Connection> = None;
    // The leader epoch each partition was last made consistent with the leader's log in.
    let mut synced: HashMap<(String, i32), i32> = HashMap::new();
    info!(leader, "following partitions of a leader");
    loop {
        let Some(partitions) = followed(&cluster).remove(&leader) else {
            info!(leader, "no longer following partitions of this leader");
            return;
        };
        if connection.is_none() {
            let view = cluster.view();
            let Some(address) = view.brokers.get(&leader).and_then(|b| {
                let wanted = cluster.settings.inter_broker_listener.as_deref();
                b.listeners
                    .iter()
                    .find(|l| Some(l.name.as_str()) == wanted)
                    .or_else(|| b.listeners.first())
                    .map(|l| (l.host.clone(), l.port))
            }) else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            match Connection::open(&address.0, address.1, cluster.node_id).await {
                Ok(c) => connection = Some(c),
                Err(e) => {
                    debug!(leader, error = %e, "cannot reach the leader");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
            }
        }
        let conn = connection.as_mut().expect("connected above");
        let result = round(&cluster, conn, &partitions, &mut synced).await;
        if let Err(e) = result {
            debug!(leader, error = %e, "fetch from the leader failed; reconnecting");
            connection = None;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// One exchange with the leader: truncation where a partition has a new epoch, then one Fetch.
async fn round(
    cluster: &Cluster,
    conn: &mut Connection,
    partitions: &BTreeMap<(String, i32), i32>,
    synced: &mut HashMap<(String, i32), i32>,
) -> std::io::Result<()> {
    synced.retain(|key, _| partitions.contains_key(key));
    let unsynced: Vec<_> = partitions
        .iter()
        .filter(|(key, epoch)| synced.get(*key) != Some(*epoch))
        .map(|(key, epoch)| (key.clone(), *epoch))
        .collect();
    if !unsynced.is_empty() {
        truncate_to_leader(cluster, conn, &unsynced, synced).await?;
    }
    let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    for ((topic, index), epoch) in partitions {
        if synced.get(&(topic.clone(), *index)) != Some(epoch) {
            continue;
        }
        let Some(log) = cluster.log.partition(topic, *index) else {
            continue;
        };
        let offsets = log.offsets();
        topics.entry(topic).or_default().push(
            FetchPartition::default()
                .with_partition(*index)
                .with_current_leader_epoch(*epoch)
                .with_fetch_offset(offsets.log_end_offset)
                .with_last_fetched_epoch(log.recorded_leader_epoch())
                .with_log_start_offset(offsets.log_start_offset)
                .with_partition_max_bytes(1 << 20),
        );
    }
    if topics.is_empty() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        return Ok(());
    }
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(cluster.node_id))
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(8 << 20)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let response: FetchResponse = conn
        .call(
            ApiKey::Fetch,
            FETCH_VERSION,
            &request,
            Duration::from_secs(10),
        )
        .await?;
    let mut appended = Vec::new();
    for topic in response.responses {
        let name = topic.topic.0.to_string();
        for p in topic.partitions {
            let Some(log) = cluster.log.partition(&name, p.partition_index) else {
                continue;
            };
            match p.error_code {
                0 => {
                    if let Some(records) = p.records.filter(|r| !r.is_empty()) {
                        match log.append_as_follower(&records) {
                            Ok(end) => appended.push((log.clone(), end)),
                            Err(e) => {
                                warn!(topic = name, partition = p.partition_index, error = %e,
                                    "cannot append the leader's batches; checking where the logs diverge");
                                synced.remove(&(name.clone(), p.partition_index));
                                continue;
                            }
                        }
                    }
                    log.follow_high_watermark(p.high_watermark);
                }
                OFFSET_OUT_OF_RANGE => {
                    warn!(topic = name, partition = p.partition_index,
                        "the leader has no data at this replica's log end; checking where the logs diverge");
                    synced.remove(&(name.clone(), p.partition_index));
                }
                code => {
                    debug!(
                        topic = name,
                        partition = p.partition_index,
                        code,
                        "leader refused a replica fetch"
                    );
                    synced.remove(&(name.clone(), p.partition_index));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    // What this replica reports next must be durable here when acks wait for durability.
    for (log, end) in appended {
        if let Err(e) = log.wait_durable(end).await {
            warn!(topic = log.topic(), partition = log.partition_index(), error = %e,
                "cannot make fetched data durable");
        }
    }
    Ok(())
}

/// Asks the leader where each partition's latest local epoch ends there and cuts the local log
/// back to it (KIP-279: to the end of the largest epoch both logs know).
async fn truncate_to_leader(
    cluster: &Cluster,
    conn: &mut Connection,
    partitions: &[((String, i32), i32)],
    synced: &mut HashMap<(String, i32), i32>,
) -> std::io::Result<()> {
    let mut topics: BTreeMap<&str, Vec<OffsetForLeaderPartition>> = BTreeMap::new();
    let mut empty = Vec::new();
    for ((topic, index), epoch) in partitions {
        let Some(log) = cluster.log.partition(topic, *index) else {
            continue;
        };
        let local = log.recorded_leader_epoch();
        if local < 0 {
            // Nothing written under any epoch: nothing can diverge.
            empty.push(((topic.clone(), *index), *epoch));
            continue;
        }
        topics.entry(topic).or_default().push(
            OffsetForLeaderPartition::default()
                .with_partition(*index)
                .with_current_leader_epoch(*epoch)
                .with_leader_epoch(local),
        );
    }
    for (key, epoch) in empty {
        synced.insert(key, epoch);
    }
    if topics.is_empty() {
        return Ok(());
    }
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(cluster.node_id))
        .with_topics(
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    OffsetForLeaderTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let response: OffsetForLeaderEpochResponse = conn
        .call(
            ApiKey::OffsetForLeaderEpoch,
            EPOCH_VERSION,
            &request,
            Duration::from_secs(10),
        )
        .await?;
    let epochs: HashMap<(String, i32), i32> = partitions.iter().cloned().collect();
    for topic in response.topics {
        let name = topic.topic.0.to_string();
        for p in topic.partitions {
            let key = (name.clone(), p.partition);
            let (Some(log), Some(&epoch)) =
                (cluster.log.partition(&name, p.partition), epochs.get(&key))
            else {
                continue;
            };
            if p.error_code != 0 {
                debug!(
                    topic = name,
                    partition = p.partition,
                    code = p.error_code,
                    "OffsetForLeaderEpoch refused"
                );
                continue;
            }
            let offsets = log.offsets();
            let target = if p.leader_epoch < 0 {
                // The leader knows no epoch this old or new: keep what is committed only.
                offsets.high_watermark
            } else {
                // The end of the largest epoch both logs have, in each of them.
                let (_, local_end) = log.end_offset_for_epoch(p.leader_epoch);
                let local_end = if local_end < 0 {
                    offsets.log_end_offset
                } else {
                    local_end
                };
                p.end_offset.min(local_end)
            };
            if target < offsets.log_end_offset {
                info!(
                    topic = name,
                    partition = p.partition,
                    from = offsets.log_end_offset,
                    to = target,
                    leader_epoch = epoch,
                    "truncating a divergent log tail before following the leader"
                );
                if let Err(e) = log.truncate_to(target.max(offsets.log_start_offset)) {
                    warn!(topic = name, partition = p.partition, error = %e, "cannot truncate the log");
                    continue;
                }
            }
            synced.insert(key, epoch);
        }
    }
    Ok(())
}
