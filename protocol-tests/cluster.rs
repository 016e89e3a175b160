//! Two brokers and a real etcd (Debian's etcd-server, which `scripts/test deps` installs): a
//! broker that does not lead a partition refuses Produce, Fetch and ListOffsets with
//! NOT_LEADER_OR_FOLLOWER, stale and future leader epochs are refused, and Metadata,
//! DescribeCluster and FindCoordinator describe the cluster, and leader epochs are stamped in
//! stored batches and answered by OffsetForLeaderEpoch; a replicated partition's acks=all waits
//! for its ISR and honours min.insync.replicas.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    DescribeClusterRequest, DescribeClusterResponse, FetchRequest, FetchResponse,
    FindCoordinatorResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest,
    MetadataResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;

use crate::harness::{free_port, Cairn, Client};
use crate::util::{batch, create_topic, fetch_request, produce, topic_name};

/// A single-member etcd on free loopback ports with a temp data directory; killed on drop.
pub(crate) struct Etcd {
    child: Child,
    pub(crate) endpoint: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    pub(crate) fn start() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(dir.path().join("etcd"))
            .args([
                "--listen-client-urls",
                &endpoint,
                "--advertise-client-urls",
                &endpoint,
            ])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("t={peer_url}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd (Debian's etcd-server; scripts/test deps installs it)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", client)).is_err() {
            assert!(Instant::now() < deadline, "etcd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Etcd {
            child,
            endpoint,
            _dir: dir,
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node(etcd: &Etcd, id: i32) -> Cairn {
    Cairn::start(&[
        &format!("node.id={id}"),
        &format!("cairn.cluster.etcd.endpoints={}", etcd.endpoint),
        "broker.session.timeout.ms=3000",
        "cairn.http.listen=",
    ])
}

fn metadata(client: &mut Client, topic: &str) -> MetadataResponse {
    let request = MetadataRequest::default().with_topics(Some(vec![
        kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
            .with_name(Some(topic_name(topic))),
    ]));
    client.call(12, &request)
}

/// (leader, leader epoch) of each partition, once every partition has a live leader.
fn leaders(client: &mut Client, topic: &str, brokers: usize) -> Vec<(i32, i32)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = metadata(client, topic);
        let found: Vec<(i32, i32)> = m.topics[0]
            .partitions
            .iter()
            .map(|p| (p.leader_id.0, p.leader_epoch))
            .collect();
        if m.brokers.len() == brokers && !found.is_empty() && found.iter().all(|l| l.0 >= 0) {
            return found;
        }
        assert!(Instant::now() < deadline, "no leaders: {m:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn fetch_error(client: &mut Client, partition: i32, epoch: i32) -> i16 {
    let mut request: FetchRequest = fetch_request("t", partition, 0, 0, 0);
    request.topics[0].partitions[0].current_leader_epoch = epoch;
    let response: FetchResponse = client.call(12, &request);
    response.responses[0].partitions[0].error_code
}

/// Waits until the broker behind `client` serves `partition` of `t`: it has seen (and
/// recorded) its leadership.
fn wait_serving(client: &mut Client, partition: i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while fetch_error(client, partition, -1) != 0 {
        assert!(
            Instant::now() < deadline,
            "the broker does not serve {partition}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn list_offsets_error(client: &mut Client, partition: i32) -> i16 {
    let request = ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name("t"))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_current_leader_epoch(-1)
                .with_timestamp(-1)])]);
    let response: ListOffsetsResponse = client.call(7, &request);
    response.topics[0].partitions[0].error_code
}

#[test]
fn only_the_leader_serves_a_partition_and_epochs_are_checked() {
    let etcd = Etcd::start();
    let one = node(&etcd, 1);
    let mut two = node(&etcd, 2);
    let mut c1 = one.client();
    // Both brokers are live (in broker 1's view) before the topic is placed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m: MetadataResponse =
            c1.call(12, &MetadataRequest::default().with_topics(Some(vec![])));
        if m.brokers.len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "broker 2 never listed: {m:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    create_topic(&mut c1, "t", 2, &[]);
    let placed = leaders(&mut c1, "t", 2);
    let mut ids: Vec<i32> = placed.iter().map(|l| l.0).collect();
    ids.sort();
    assert_eq!(ids, vec![1, 2], "one partition on each broker");
    let on_two = placed.iter().position(|l| l.0 == 2).unwrap() as i32;
    let on_one = 1 - on_two;

    // Broker 1 does not lead `on_two`.
    let not_leader = ResponseError::NotLeaderOrFollower.code();
    assert_eq!(
        produce(&mut c1, 9, "t", on_two, batch(&["x"], 0)).0,
        not_leader
    );
    assert_eq!(fetch_error(&mut c1, on_two, -1), not_leader);
    assert_eq!(list_offsets_error(&mut c1, on_two), not_leader);
    // It serves its own.
    assert_eq!(produce(&mut c1, 9, "t", on_one, batch(&["x"], 0)).0, 0);
    assert_eq!(fetch_error(&mut c1, on_one, 0), 0);
    assert_eq!(
        fetch_error(&mut c1, on_one, 7),
        ResponseError::UnknownLeaderEpoch.code()
    );

    // DescribeCluster lists both brokers and the controller.
    let described: DescribeClusterResponse = c1.call(0, &DescribeClusterRequest::default());
    let mut listed: Vec<i32> = described.brokers.iter().map(|b| b.broker_id.0).collect();
    listed.sort();
    assert_eq!(listed, vec![1, 2]);
    assert!([1, 2].contains(&described.controller_id.0));

    // FindCoordinator names the leader of the group's __consumer_offsets partition.
    let found: FindCoordinatorResponse = c1.call(
        3,
        &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")),
    );
    assert_eq!(found.error_code, 0);
    let offsets = leaders(&mut c1, "__consumer_offsets", 2);
    let partition = java_string_hash("g").unsigned_abs() as usize % offsets.len();
    assert_eq!(found.node_id.0, offsets[partition].0);

    // Broker 2 stops: it leaves Metadata and its partition has no leader; back, it leads
    // again at a newer epoch, and the old epoch is fenced.
    let old_epoch = placed[on_two as usize].1;
    let mut before = two.client();
    wait_serving(&mut before, on_two);
    assert_eq!(produce(&mut before, 9, "t", on_two, batch(&["x"], 0)).0, 0);
    assert!(two.stop().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while metadata(&mut c1, "t").brokers.len() != 1 {
        assert!(Instant::now() < deadline, "broker 2 still listed");
        std::thread::sleep(Duration::from_millis(100));
    }
    two.start_again();
    let back = leaders(&mut c1, "t", 2);
    assert_eq!(back[on_two as usize].0, 2);
    assert!(back[on_two as usize].1 > old_epoch);
    let mut c2 = two.client();
    wait_serving(&mut c2, on_two);
    assert_eq!(
        fetch_error(&mut c2, on_two, old_epoch),
        ResponseError::FencedLeaderEpoch.code()
    );
    let new_epoch = back[on_two as usize].1;
    assert_eq!(fetch_error(&mut c2, on_two, new_epoch), 0);

    // Stored batches carry the epoch that wrote them, the leader-epoch-checkpoint says where
    // each epoch starts, and OffsetForLeaderEpoch answers from it (KIP-101).
    assert_eq!(produce(&mut c2, 9, "t", on_two, batch(&["y"], 0)), (0, 1));
    let fetched: FetchResponse = c2.call(12, &fetch_request("t", on_two, 0, 0, 0));
    let mut bytes = fetched.responses[0].partitions[0].records.clone().unwrap();
    let mut stamped = Vec::new();
    while !bytes.is_empty() {
        let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
        stamped.extend(
            set.records
                .iter()
                .map(|r| (r.offset, r.partition_leader_epoch)),
        );
    }
    assert_eq!(stamped, vec![(0, old_epoch), (1, new_epoch)]);
    let checkpoint = std::fs::read_to_string(
        two.data_dir
            .join(format!("t-{on_two}"))
            .join("leader-epoch-checkpoint"),
    )
    .unwrap();
    assert_eq!(checkpoint, format!("0\n2\n{old_epoch} 0\n{new_epoch} 1\n"));
    for (asked, answer) in [
        (old_epoch, (old_epoch, 1)),
        (old_epoch + 1, (old_epoch, 1)),
        (new_epoch, (new_epoch, 2)),
        (new_epoch + 5, (-1, -1)),
    ] {
        assert_eq!(
            end_offset_for(&mut c2, on_two, asked),
            answer,
            "epoch {asked}"
        );
    }
}

/// OffsetForLeaderEpoch for one partition of `t`: (leader epoch, end offset).
fn end_offset_for(client: &mut Client, partition: i32, epoch: i32) -> (i32, i64) {
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(topic_name("t"))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(-1)
                .with_leader_epoch(epoch)])]);
    let response: OffsetForLeaderEpochResponse = client.call(4, &request);
    let p = &response.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    (p.leader_epoch, p.end_offset)
}

#[test]
fn a_duplicate_node_id_is_refused_at_start() {
    let etcd = Etcd::start();
    let _one = node(&etcd, 1);
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--set", "node.id=1", "--set", "cairn.http.listen="])
        .arg("--set")
        .arg(format!("cairn.cluster.etcd.endpoints={}", etcd.endpoint))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("node.id 1 is already registered"),
        "{stderr}"
    );
}

/// Java's `String.hashCode`, as Kafka (and Cairn) hash a group id to its partition.
fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The ISR of partition 0 of `topic` as Metadata lists it, sorted.
fn isr(client: &mut Client, topic: &str) -> Vec<i32> {
    let m = metadata(client, topic);
    let mut ids: Vec<i32> = m.topics[0].partitions[0]
        .isr_nodes
        .iter()
        .map(|b| b.0)
        .collect();
    ids.sort();
    ids
}

fn wait_isr(client: &mut Client, topic: &str, wanted: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while isr(client, topic) != wanted {
        assert!(
            Instant::now() < deadline,
            "ISR never became {wanted:?}: {:?}",
            metadata(client, topic)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn replicated_acks_all_waits_for_the_isr_and_honours_min_insync_replicas() {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

    let etcd = Etcd::start();
    let mut nodes = [node(&etcd, 1), node(&etcd, 2)];
    let mut c1 = nodes[0].client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m: MetadataResponse =
            c1.call(12, &MetadataRequest::default().with_topics(Some(vec![])));
        if m.brokers.len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "broker 2 never listed: {m:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let create = |rf: i16| {
        CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name("t"))
                .with_num_partitions(1)
                .with_replication_factor(rf)
                .with_configs(vec![CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("min.insync.replicas"))
                    .with_value(Some(StrBytes::from_static_str("2")))])])
    };
    let refused: CreateTopicsResponse = c1.call(7, &create(3));
    assert_eq!(
        refused.topics[0].error_code,
        ResponseError::InvalidReplicationFactor.code(),
        "three replicas on two brokers"
    );
    let created: CreateTopicsResponse = c1.call(7, &create(2));
    assert_eq!(created.topics[0].error_code, 0, "{:?}", created.topics[0]);
    assert_eq!(created.topics[0].replication_factor, 2);
    let leader = leaders(&mut c1, "t", 2)[0].0;
    let (li, fi) = if leader == 1 { (0, 1) } else { (1, 0) };
    let mut lc = nodes[li].client();
    wait_serving(&mut lc, 0);
    let m = metadata(&mut lc, "t");
    let mut replicas: Vec<i32> = m.topics[0].partitions[0]
        .replica_nodes
        .iter()
        .map(|b| b.0)
        .collect();
    replicas.sort();
    assert_eq!(replicas, vec![1, 2]);
    wait_isr(&mut lc, "t", &[1, 2]);

    // acks=all is answered once the follower has the batch: the high watermark is past it.
    let (error, base) = produce(&mut lc, 9, "t", 0, batch(&["a", "b"], 0));
    assert_eq!((error, base), (0, 0));
    let fetched: FetchResponse = lc.call(12, &fetch_request("t", 0, 0, 0, 0));
    assert_eq!(fetched.responses[0].partitions[0].high_watermark, 2);

    // The follower goes: the ISR shrinks to the leader, and acks=all is refused below
    // min.insync.replicas=2 while acks=1 is still served.
    nodes[fi].stop();
    wait_isr(&mut lc, "t", &[leader]);
    assert_eq!(
        produce(&mut lc, 9, "t", 0, batch(&["c"], 0)).0,
        ResponseError::NotEnoughReplicas.code()
    );
    let one: kafka_protocol::messages::ProduceResponse = lc.call(
        9,
        &crate::util::produce_request("t", 0, 1, batch(&["c"], 0)),
    );
    assert_eq!(one.responses[0].partition_responses[0].error_code, 0);

    // It returns, catches up, rejoins the ISR, and acks=all is served again.
    nodes[fi].start_again();
    wait_isr(&mut lc, "t", &[1, 2]);
    let (error, base) = produce(&mut lc, 9, "t", 0, batch(&["d"], 0));
    assert_eq!((error, base), (0, 3));
    let fetched: FetchResponse = lc.call(12, &fetch_request("t", 0, 0, 0, 0));
    assert_eq!(fetched.responses[0].partitions[0].high_watermark, 4);
}
