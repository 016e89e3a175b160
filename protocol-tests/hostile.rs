//! Hostile and broken input: each gets an error or a closed connection, never a crash, and the
//! broker keeps serving other clients.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiVersionsResponse, MetadataRequest};
use kafka_protocol::protocol::Decodable;

use crate::harness::{Cairn, Client};
use crate::util::*;

/// The broker still answers a fresh client.
fn still_serving(cairn: &mut Cairn) {
    assert!(cairn.alive(), "cairn died");
    let mut other = cairn.client();
    let response = other.call(12, &MetadataRequest::default().with_topics(None));
    assert_eq!(response.brokers.len(), 1);
}

fn raw_frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

#[test]
fn short_frame_closes_the_connection() {
    let mut cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    client.send_raw(&raw_frame(&[0, 3])).unwrap();
    assert!(client.closed_by_broker());
    still_serving(&mut cairn);
}

#[test]
fn oversized_length_is_refused_before_allocation() {
    let mut cairn = Cairn::start(&["socket.request.max.bytes=1048576"]);
    let mut client = cairn.client();
    client.send_raw(&(2_000_000i32).to_be_bytes()).unwrap();
    assert!(client.closed_by_broker());
    let mut client = cairn.client();
    client.send_raw(&i32::MAX.to_be_bytes()).unwrap();
    assert!(client.closed_by_broker());
    let mut client = cairn.client();
    client.send_raw(&(-1i32).to_be_bytes()).unwrap();
    assert!(client.closed_by_broker());
    still_serving(&mut cairn);
}

#[test]
fn array_claiming_i32_max_elements_is_refused() {
    let mut cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    // Produce v3 header, then a 12-byte body: null transactional id, acks, timeout, and a topic
    // array that claims i32::MAX elements with no bytes behind it.
    let mut body = BytesMut::new();
    body.put_i16(0); // api key: Produce
    body.put_i16(3);
    body.put_i32(1);
    body.put_i16(-1); // null client id
    body.put_i16(-1); // null transactional id
    body.put_i16(1);
    body.put_i32(1000);
    body.put_i32(i32::MAX);
    client.send_raw(&raw_frame(&body)).unwrap();
    assert!(client.closed_by_broker());
    still_serving(&mut cairn);
}

#[test]
fn unknown_api_key_and_unsupported_version() {
    let mut cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    client
        .send_raw(&raw_frame(&[0x03, 0xE7, 0, 0, 0, 0, 0, 9, 0xff, 0xff]))
        .unwrap();
    assert!(client.closed_by_broker());
    // Metadata v13 is not advertised.
    let mut client = cairn.client();
    let (_, frame) = client.frame(12, &MetadataRequest::default());
    let mut raw = frame.to_vec();
    raw[6..8].copy_from_slice(&13i16.to_be_bytes());
    client.send_raw(&raw).unwrap();
    assert!(client.closed_by_broker());
    // ApiVersions v99: KIP-511 answer, v0 body with UNSUPPORTED_VERSION and the supported range.
    let mut client = cairn.client();
    client
        .send_raw(&raw_frame(&[0, 18, 0, 99, 0, 0, 0, 42, 0xff, 0xff, 0]))
        .unwrap();
    let mut response = client.read_frame().unwrap();
    assert_eq!(&response[..4], &42i32.to_be_bytes());
    let _ = bytes::Buf::get_i32(&mut response);
    let body = ApiVersionsResponse::decode(&mut response, 0).unwrap();
    assert_eq!(body.error_code, 35);
    let own = body.api_keys.iter().find(|k| k.api_key == 18).unwrap();
    assert_eq!((own.min_version, own.max_version), (0, 4));
    still_serving(&mut cairn);
}

#[test]
fn corrupt_batches_are_refused_and_nothing_is_stored() {
    let mut cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    create_topic(&mut client, "bad", 1, &[]);
    // A flipped byte inside the CRC-covered region.
    let mut bad_crc = batch(&["a", "b"], 1).to_vec();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xff;
    assert_eq!(
        produce(&mut client, 12, "bad", 0, Bytes::from(bad_crc)).0,
        2
    );
    // recordsCount disagrees with lastOffsetDelta (CRC recomputed so only the count is wrong).
    let mut count = batch(&["a", "b"], 1).to_vec();
    count[57..61].copy_from_slice(&3i32.to_be_bytes());
    let crc = crc32c::crc32c(&count[21..]);
    count[17..21].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(produce(&mut client, 12, "bad", 0, Bytes::from(count)).0, 2);
    // Truncated batch.
    let truncated = batch(&["a", "b"], 1).slice(..40);
    assert_ne!(produce(&mut client, 12, "bad", 0, truncated).0, 0);
    // Garbage.
    assert_ne!(
        produce(&mut client, 12, "bad", 0, Bytes::from_static(&[7u8; 100])).0,
        0
    );
    // Nothing was stored, and good data still goes in at offset 0.
    assert_eq!(
        produce(&mut client, 12, "bad", 0, batch(&["good"], 1)),
        (0, 0)
    );
    let records = fetched_records(&fetch(&mut client, 12, "bad", 0, 0));
    assert_eq!(records.len(), 1);
    still_serving(&mut cairn);
}

#[test]
fn random_garbage_never_crashes_the_broker() {
    let mut cairn = Cairn::start(&[]);
    // A deterministic xorshift stream of frames with plausible headers and random bodies.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..200 {
        let mut client = Client::connect(cairn.addr);
        let len = (next() % 200) as usize + 8;
        let mut body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let api_key = (next() % 70) as i16;
        let version = (next() % 14) as i16;
        body[0..2].copy_from_slice(&api_key.to_be_bytes());
        body[2..4].copy_from_slice(&version.to_be_bytes());
        let _ = client.send_raw(&raw_frame(&body));
        let _ = client.stream.shutdown(std::net::Shutdown::Write);
        let _ = client.closed_by_broker();
    }
    still_serving(&mut cairn);
}

#[test]
fn a_second_broker_cannot_open_the_same_data_directory() {
    let cairn = Cairn::start(&[]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(&cairn.data_dir)
        .output()
        .expect("run cairn");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("in use by another process"), "{stderr}");
}
