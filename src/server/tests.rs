//! One connection served against a real broker on a temp directory, with its backlog in view:
//! after every kind of answer (immediate, spawned, none, KIP-511, a refused frame) the count of
//! unwritten response bytes is back to zero once the client has read what it was sent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiVersionsRequest, CreateTopicsRequest, FetchRequest, InitProducerIdRequest, MetadataRequest,
    ProduceRequest, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::budget::RequestBudget;
use super::*;
use crate::config::BrokerConfig;

struct Harness {
    client: TcpStream,
    backlog: Arc<Backlog>,
    serving: tokio::task::JoinHandle<()>,
    correlation_id: i32,
    _broker: Arc<Broker>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = BrokerConfig::default();
        config
            .set("log.dirs", dir.path().to_str().expect("utf-8 path"))
            .expect("log.dirs");
        config
            .set("group.initial.rebalance.delay.ms", "0")
            .expect("delay");
        let broker = Broker::start(config).await.expect("broker start");
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (stream, peer) = listener.accept().await.expect("accept");
        let backlog = Arc::new(Backlog::default());
        let budget = RequestBudget::new(Some(1 << 20));
        let (_shutdown_tx, shutdown_rx) = watch::channel(false);
        let serving = tokio::spawn({
            let (broker, backlog) = (broker.clone(), backlog.clone());
            async move {
                let _keep = _shutdown_tx;
                let spec = ListenerSpec::plaintext(peer);
                let connection = Connection {
                    broker,
                    budget,
                    backlog,
                    session: Arc::new(Session::new(&spec, peer)),
                    gate: None,
                };
                let (reader, writer) = stream.into_split();
                serve_connection(reader, writer, connection, shutdown_rx).await;
            }
        });
        Harness {
            client,
            backlog,
            serving,
            correlation_id: 0,
            _broker: broker,
            _dir: dir,
        }
    }

    /// Sends a request of `version` (the header's version may be forced, for KIP-511).
    async fn send<R: Request>(&mut self, version: i16, request: &R) -> i32 {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("backlog-test")));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        let encode_version = version.min(R::VERSIONS.max);
        header
            .encode(&mut buf, R::header_version(encode_version))
            .expect("header");
        request.encode(&mut buf, encode_version).expect("body");
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.client.write_all(&buf).await.expect("send");
        self.correlation_id
    }

    /// Reads one response frame and returns its correlation id.
    async fn answer(&mut self) -> i32 {
        let mut len = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(20), self.client.read_exact(&mut len))
            .await
            .expect("an answer within 20 s")
            .expect("read");
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.client.read_exact(&mut body).await.expect("read");
        Bytes::from(body).get_i32()
    }

    async fn call<R: Request>(&mut self, version: i16, request: &R) {
        let id = self.send(version, request).await;
        assert_eq!(self.answer().await, id, "answers out of order");
        assert_eq!(
            self.backlog.bytes(),
            0,
            "backlog after {:?} v{version}",
            R::KEY
        );
    }
}

fn produce(acks: i16, timeout_ms: i32) -> ProduceRequest {
    let mut records = BytesMut::new();
    let batch = vec![kafka_protocol::records::Record {
        transactional: false,
        control: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: kafka_protocol::records::TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(Bytes::from_static(b"v")),
        headers: Default::default(),
        delete_horizon_ms: None,
    }];
    kafka_protocol::records::RecordBatchEncoder::encode(
        &mut records,
        &batch,
        &kafka_protocol::records::RecordEncodeOptions {
            version: 2,
            compression: kafka_protocol::records::Compression::None,
        },
    )
    .expect("encode batch");
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records.freeze()))])])
}

#[test]
fn the_backlog_is_zero_after_every_kind_of_answer() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut h = Harness::start().await;
        // KIP-511: a newer ApiVersions than the broker's gets the v0-format refusal...
        h.call(5, &ApiVersionsRequest::default()).await;
        // ...then the client's retry, and requests answered at once.
        h.call(4, &ApiVersionsRequest::default()).await;
        h.call(12, &MetadataRequest::default().with_topics(None))
            .await;
        // InitProducerId, the request the 4.4 Java producer never had answered.
        h.call(
            5,
            &InitProducerIdRequest::default()
                .with_transaction_timeout_ms(60_000)
                .with_producer_id((-1).into())
                .with_producer_epoch(-1),
        )
        .await;
        h.call(
            7,
            &CreateTopicsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_num_partitions(1)
                    .with_replication_factor(1)]),
        )
        .await;
        // Spawned: an acks=all produce waits for its fsync...
        h.call(9, &produce(-1, 10_000)).await;
        // ...and a Fetch at the log end parks in a long poll until max_wait.
        let long_poll = FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(200)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(1)
                    .with_partition_max_bytes(1 << 20)])]);
        h.call(12, &long_poll).await;
        // No answer at all (acks=0), then an answered request behind it.
        h.send(9, &produce(0, 10_000)).await;
        h.call(12, &MetadataRequest::default().with_topics(None))
            .await;
        // Many KIP-511 answers in a row, each followed by an ordinary request, pipelined.
        let mut ids = Vec::new();
        for _ in 0..50 {
            ids.push(h.send(5, &ApiVersionsRequest::default()).await);
            ids.push(
                h.send(12, &MetadataRequest::default().with_topics(None))
                    .await,
            );
        }
        for id in ids {
            assert_eq!(h.answer().await, id);
        }
        assert_eq!(h.backlog.bytes(), 0);
        // Refused: Metadata v13 is not served; the connection is closed, nothing is left counted.
        h.send(13, &MetadataRequest::default().with_topics(None))
            .await;
        tokio::time::timeout(Duration::from_secs(20), &mut h.serving)
            .await
            .expect("the connection is closed")
            .expect("connection task");
        assert_eq!(h.backlog.bytes(), 0);
    });
}
