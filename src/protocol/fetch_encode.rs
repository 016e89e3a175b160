//! Encoding Fetch responses (v4..=12) as chunks, so records held in files are never copied
//! through the broker.
//!
//! The frame (length prefix, response header, body) is written field by field following Kafka's
//! FetchResponse schema, byte for byte what the generated encoder behind
//! [`codec::encode_response`] writes. A partition whose records the caller keeps elsewhere (a
//! range of a segment file, which the connection writes with `sendfile`) gets only its length
//! encoded here, and the records become a [`Chunk::External`] of their own; records held in
//! memory are copied into the frame as the generated encoder does (holding many record buffers
//! until they are written made glibc's malloc hand their pages back and fault them in again on
//! every fetch). Other versions are handed to [`codec::encode_response`]. No I/O, no storage:
//! what an external chunk is, is the caller's business.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;

use super::codec::{self, EncodeError};

/// The first version this module encodes itself.
pub const MIN_VERSION: i16 = 4;
/// The last version this module encodes itself.
pub const MAX_VERSION: i16 = 12;
/// The first flexible version (compact lengths, tagged fields, response header v1).
const FIRST_FLEXIBLE: i16 = 12;

/// A piece of an encoded frame: bytes, or records of a partition that the caller holds.
#[derive(Debug)]
pub enum Chunk<F> {
    Bytes(Bytes),
    External(F),
}

/// Records kept outside the response for one partition: their length and the caller's handle.
pub type External<F> = Option<(usize, F)>;

/// Encodes a Fetch response frame, length prefix included, as chunks whose concatenation is the
/// frame. `external(topic, partition)` names the partitions whose records the caller holds
/// (their `records` field in `response` is then ignored): each becomes a [`Chunk::External`].
/// Versions outside [`MIN_VERSION`]..=[`MAX_VERSION`] take no external records.
pub fn encode_fetch_response<F>(
    correlation_id: i32,
    version: i16,
    response: &FetchResponse,
    mut external: impl FnMut(&str, i32) -> External<F>,
) -> Result<Vec<Chunk<F>>, EncodeError> {
    if !(MIN_VERSION..=MAX_VERSION).contains(&version) {
        let held_outside = response
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
            .any(|(t, p)| external(&t.topic.0, p.partition_index).is_some());
        if held_outside {
            return Err(EncodeError {
                api_key: ApiKey::Fetch,
                version,
                reason: "records held outside the response need versions 4 to 12".into(),
            });
        }
        let whole = codec::encode_response(
            correlation_id,
            ApiKey::Fetch,
            version,
            &ResponseKind::Fetch(response.clone()),
        )?;
        return Ok(vec![Chunk::Bytes(whole)]);
    }
    let mut out = Chunks::new(version);
    out.cur.put_i32(0); // length prefix, filled in by `finish`
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut out.cur, ApiKey::Fetch.response_header_version(version))
        .map_err(|e| out.err(e.to_string()))?;
    out.response(response, &mut external)?;
    out.finish()
}

/// The frame being built: finished chunks, and the buffer of the one being written.
struct Chunks<F> {
    version: i16,
    flexible: bool,
    /// The chunk holding the length prefix, kept mutable until the length is known.
    head: Option<BytesMut>,
    /// Finished chunks; index 0 is a placeholder for `head` once it exists.
    done: Vec<Chunk<F>>,
    cur: BytesMut,
    /// Bytes in `head` and `done`.
    done_len: usize,
}

impl<F> Chunks<F> {
    fn new(version: i16) -> Chunks<F> {
        Chunks {
            version,
            flexible: version >= FIRST_FLEXIBLE,
            head: None,
            done: Vec::new(),
            cur: BytesMut::with_capacity(512),
            done_len: 0,
        }
    }

    fn err(&self, reason: String) -> EncodeError {
        EncodeError {
            api_key: ApiKey::Fetch,
            version: self.version,
            reason,
        }
    }

    /// Ends the current chunk and appends `records` (`len` bytes) as a chunk of its own.
    fn push_external(&mut self, len: usize, records: F) {
        let piece = self.cur.split();
        self.done_len += piece.len();
        if self.head.is_none() {
            self.head = Some(piece);
            self.done.push(Chunk::Bytes(Bytes::new()));
        } else if !piece.is_empty() {
            self.done.push(Chunk::Bytes(piece.freeze()));
        }
        self.done_len += len;
        self.done.push(Chunk::External(records));
    }

    fn finish(mut self) -> Result<Vec<Chunk<F>>, EncodeError> {
        let total = self.done_len + self.cur.len();
        let length = i32::try_from(total - 4)
            .map_err(|_| self.err(format!("frame of {total} bytes is too large")))?;
        let tail = std::mem::take(&mut self.cur);
        match self.head.take() {
            None => {
                let mut only = tail;
                only[..4].copy_from_slice(&length.to_be_bytes());
                Ok(vec![Chunk::Bytes(only.freeze())])
            }
            Some(mut head) => {
                head[..4].copy_from_slice(&length.to_be_bytes());
                self.done[0] = Chunk::Bytes(head.freeze());
                if !tail.is_empty() {
                    self.done.push(Chunk::Bytes(tail.freeze()));
                }
                Ok(self.done)
            }
        }
    }

    fn uvarint(&mut self, mut v: u32) {
        while v >= 0x80 {
            self.cur.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        self.cur.put_u8(v as u8);
    }

    /// An array length: INT32 (-1 for null) before v12, UNSIGNED_VARINT length + 1 (0 for null)
    /// from v12.
    fn array_len(&mut self, len: Option<usize>, what: &str) -> Result<(), EncodeError> {
        match (self.flexible, len) {
            (false, None) => self.cur.put_i32(-1),
            (true, None) => self.uvarint(0),
            (false, Some(n)) => {
                let n = i32::try_from(n)
                    .map_err(|_| self.err(format!("{what} has too many entries ({n})")))?;
                self.cur.put_i32(n);
            }
            (true, Some(n)) => {
                let n = u32::try_from(n)
                    .ok()
                    .and_then(|n| n.checked_add(1))
                    .ok_or_else(|| self.err(format!("{what} has too many entries ({n})")))?;
                self.uvarint(n);
            }
        }
        Ok(())
    }

    /// A non-null string: INT16 length before v12, COMPACT_STRING from v12.
    fn string(&mut self, s: &str, what: &str) -> Result<(), EncodeError> {
        if self.flexible {
            let n = u32::try_from(s.len())
                .ok()
                .and_then(|n| n.checked_add(1))
                .ok_or_else(|| self.err(format!("{what} is too long ({} bytes)", s.len())))?;
            self.uvarint(n);
        } else {
            let n = i16::try_from(s.len())
                .map_err(|_| self.err(format!("{what} is too long ({} bytes)", s.len())))?;
            self.cur.put_i16(n);
        }
        self.cur.put_slice(s.as_bytes());
        Ok(())
    }

    /// The length of a nullable byte string: INT32 (-1 for null) before v12, COMPACT_BYTES
    /// UNSIGNED_VARINT length + 1 (0 for null) from v12.
    fn records_len(&mut self, len: Option<usize>) -> Result<(), EncodeError> {
        let Some(len) = len else {
            if self.flexible {
                self.uvarint(0);
            } else {
                self.cur.put_i32(-1);
            }
            return Ok(());
        };
        let too_long = || format!("records of {len} bytes are too long");
        if self.flexible {
            let n = u32::try_from(len)
                .ok()
                .and_then(|n| n.checked_add(1))
                .ok_or_else(|| self.err(too_long()))?;
            self.uvarint(n);
        } else {
            let n = i32::try_from(len).map_err(|_| self.err(too_long()))?;
            self.cur.put_i32(n);
        }
        Ok(())
    }

    /// A generated struct, encoded by the crate itself (small, fixed-size parts).
    fn nested<T: Encodable>(&mut self, value: &T) -> Result<(), EncodeError> {
        let version = self.version;
        value
            .encode(&mut self.cur, version)
            .map_err(|e| self.err(e.to_string()))
    }

    /// A tagged field holding a generated struct: tag, size, struct.
    fn tagged<T: Encodable>(&mut self, tag: u32, value: &T) -> Result<(), EncodeError> {
        let size = value
            .compute_size(self.version)
            .map_err(|e| self.err(e.to_string()))?;
        let size = u32::try_from(size)
            .map_err(|_| self.err(format!("tagged field {tag} of {size} bytes is too large")))?;
        self.uvarint(tag);
        self.uvarint(size);
        self.nested(value)
    }

    /// Unknown tagged fields whose tag is at least `from`, as the generated encoder writes them.
    fn unknown_tagged(
        &mut self,
        from: i32,
        fields: &BTreeMap<i32, Bytes>,
    ) -> Result<(), EncodeError> {
        for (&tag, value) in fields.range(from..) {
            let size = u32::try_from(value.len()).map_err(|_| {
                self.err(format!(
                    "tagged field {tag} of {} bytes is too large",
                    value.len()
                ))
            })?;
            self.uvarint(tag as u32);
            self.uvarint(size);
            self.cur.put_slice(value);
        }
        Ok(())
    }

    /// The number of tagged fields, as an UNSIGNED_VARINT.
    fn tag_count(&mut self, count: usize) -> Result<(), EncodeError> {
        let count = u32::try_from(count)
            .map_err(|_| self.err(format!("{count} tagged fields are too many")))?;
        self.uvarint(count);
        Ok(())
    }

    fn response(
        &mut self,
        response: &FetchResponse,
        external: &mut impl FnMut(&str, i32) -> External<F>,
    ) -> Result<(), EncodeError> {
        self.cur.put_i32(response.throttle_time_ms);
        if self.version >= 7 {
            self.cur.put_i16(response.error_code);
            self.cur.put_i32(response.session_id);
        } else if response.session_id != 0 {
            return Err(self.err(format!(
                "session_id {} needs version 7 or later",
                response.session_id
            )));
        }
        self.array_len(Some(response.responses.len()), "responses")?;
        for topic in &response.responses {
            self.topic(topic, external)?;
        }
        if self.flexible {
            // node_endpoints (tag 0) exists from v16 only.
            self.tag_count(response.unknown_tagged_fields.len())?;
            self.unknown_tagged(1, &response.unknown_tagged_fields)?;
        }
        Ok(())
    }

    fn topic(
        &mut self,
        topic: &FetchableTopicResponse,
        external: &mut impl FnMut(&str, i32) -> External<F>,
    ) -> Result<(), EncodeError> {
        self.string(&topic.topic.0, "topic name")?;
        self.array_len(Some(topic.partitions.len()), "partitions")?;
        for partition in &topic.partitions {
            let held = external(&topic.topic.0, partition.partition_index);
            self.partition(partition, held)?;
        }
        if self.flexible {
            self.tag_count(topic.unknown_tagged_fields.len())?;
            self.unknown_tagged(0, &topic.unknown_tagged_fields)?;
        }
        Ok(())
    }

    fn partition(&mut self, p: &PartitionData, held: External<F>) -> Result<(), EncodeError> {
        self.cur.put_i32(p.partition_index);
        self.cur.put_i16(p.error_code);
        self.cur.put_i64(p.high_watermark);
        self.cur.put_i64(p.last_stable_offset);
        if self.version >= 5 {
            self.cur.put_i64(p.log_start_offset);
        }
        let aborted = p.aborted_transactions.as_ref();
        self.array_len(aborted.map(Vec::len), "aborted_transactions")?;
        for transaction in aborted.into_iter().flatten() {
            self.nested(transaction)?;
        }
        if self.version >= 11 {
            self.cur.put_i32(p.preferred_read_replica.0);
        } else if p.preferred_read_replica.0 != -1 {
            return Err(self.err(format!(
                "preferred_read_replica {} needs version 11 or later",
                p.preferred_read_replica.0
            )));
        }
        match held {
            Some((len, records)) => {
                self.records_len(Some(len))?;
                if len > 0 {
                    self.push_external(len, records);
                }
            }
            None => {
                let records = p.records.as_ref();
                self.records_len(records.map(Bytes::len))?;
                if let Some(records) = records {
                    self.cur.put_slice(records);
                }
            }
        }
        if self.flexible {
            let diverging = p.diverging_epoch != Default::default();
            let leader = p.current_leader != Default::default();
            let snapshot = p.snapshot_id != Default::default();
            let known = usize::from(diverging) + usize::from(leader) + usize::from(snapshot);
            self.tag_count(p.unknown_tagged_fields.len() + known)?;
            if diverging {
                self.tagged(0, &p.diverging_epoch)?;
            }
            if leader {
                self.tagged(1, &p.current_leader)?;
            }
            if snapshot {
                self.tagged(2, &p.snapshot_id)?;
            }
            self.unknown_tagged(3, &p.unknown_tagged_fields)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, EpochEndOffset, LeaderIdAndEpoch, SnapshotId,
    };
    use kafka_protocol::messages::{BrokerId, ProducerId, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use proptest::prelude::*;

    /// What the generated encoder writes for the same response.
    fn reference(correlation_id: i32, version: i16, response: &FetchResponse) -> Bytes {
        codec::encode_response(
            correlation_id,
            ApiKey::Fetch,
            version,
            &ResponseKind::Fetch(response.clone()),
        )
        .expect("reference encoding")
    }

    /// The frame the chunks make, external records written in place.
    fn concat(chunks: &[Chunk<Bytes>]) -> Vec<u8> {
        chunks
            .iter()
            .flat_map(|c| match c {
                Chunk::Bytes(b) | Chunk::External(b) => b.iter().copied(),
            })
            .collect()
    }

    /// Encodes with no external records.
    fn encode(correlation_id: i32, version: i16, response: &FetchResponse) -> Vec<Chunk<Bytes>> {
        encode_fetch_response(correlation_id, version, response, |_, _| None).expect("encode")
    }

    /// Asserts byte equality with the generated encoder, with records in the response and with
    /// every non-empty records field held outside it (each then a chunk of its own).
    fn check(correlation_id: i32, version: i16, response: &FetchResponse) {
        let expected = reference(correlation_id, version, response);
        let inline = encode(correlation_id, version, response);
        assert_eq!(
            concat(&inline),
            expected.as_ref(),
            "v{version} frame differs from the generated encoder"
        );
        assert!(inline.iter().all(|c| matches!(c, Chunk::Bytes(_))));
        // The records held outside; the response carries none (they must not be encoded).
        let mut emptied = response.clone();
        let mut held = std::collections::HashMap::new();
        for t in emptied.responses.iter_mut() {
            for p in t.partitions.iter_mut() {
                if let Some(r) = p.records.take_if(|r| !r.is_empty()) {
                    held.insert((t.topic.0.to_string(), p.partition_index), r);
                    p.records = Some(Bytes::from_static(b"not these"));
                }
            }
        }
        let chunks = encode_fetch_response(correlation_id, version, &emptied, |t, p| {
            held.get(&(t.to_string(), p)).map(|r| (r.len(), r.clone()))
        })
        .expect("encode");
        assert_eq!(
            concat(&chunks),
            expected.as_ref(),
            "v{version} frame with external records differs from the generated encoder"
        );
        let externals = chunks
            .iter()
            .filter(|c| matches!(c, Chunk::External(_)))
            .count();
        assert_eq!(
            externals,
            held.len(),
            "v{version}: one chunk per external records"
        );
    }

    fn partition(index: i32, records: Option<&'static [u8]>) -> PartitionData {
        PartitionData::default()
            .with_partition_index(index)
            .with_high_watermark(1000 + i64::from(index))
            .with_last_stable_offset(990)
            .with_log_start_offset(7)
            .with_records(records.map(Bytes::from_static))
    }

    fn topic(name: &'static str, partitions: Vec<PartitionData>) -> FetchableTopicResponse {
        FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str(name)))
            .with_partitions(partitions)
    }

    /// Several topics and partitions: errors, null/empty/non-empty records, null/empty/non-empty
    /// aborted transactions.
    fn mixed() -> FetchResponse {
        let aborted = vec![
            AbortedTransaction::default()
                .with_producer_id(ProducerId(42))
                .with_first_offset(100),
            AbortedTransaction::default()
                .with_producer_id(ProducerId(43))
                .with_first_offset(-1),
        ];
        FetchResponse::default()
            .with_throttle_time_ms(12)
            .with_responses(vec![
                topic(
                    "orders",
                    vec![
                        partition(0, Some(b"first batch of records"))
                            .with_aborted_transactions(None),
                        partition(1, Some(b"")).with_aborted_transactions(Some(vec![])),
                        partition(2, None).with_error_code(1),
                        partition(3, Some(&[0xAB; 300])).with_aborted_transactions(Some(aborted)),
                    ],
                ),
                topic("empty-topic", vec![]),
                topic(
                    "t",
                    vec![partition(0, Some(b"x")), partition(9, Some(b"yz"))],
                ),
            ])
    }

    #[test]
    fn every_version_matches_the_generated_encoder() {
        for version in 4..=12 {
            check(7, version, &mixed());
            check(-3, version, &FetchResponse::default());
            check(
                0,
                version,
                &FetchResponse::default().with_responses(vec![topic("only", vec![])]),
            );
        }
    }

    #[test]
    fn session_and_error_fields_from_v7() {
        let response = mixed().with_error_code(71).with_session_id(123_456);
        for version in 7..=12 {
            check(1, version, &response);
        }
        for version in 4..7 {
            assert!(
                encode_fetch_response(1, version, &response, |_, _| None::<(usize, ())>).is_err()
            );
        }
    }

    #[test]
    fn preferred_read_replica_from_v11() {
        let mut response = mixed();
        response.responses[0].partitions[1].preferred_read_replica = BrokerId(3);
        for version in 11..=12 {
            check(1, version, &response);
        }
        for version in 4..11 {
            let err = encode_fetch_response(1, version, &response, |_, _| None::<(usize, ())>)
                .unwrap_err();
            assert!(err.reason.contains("preferred_read_replica"), "{err}");
        }
    }

    #[test]
    fn v12_partition_tagged_fields_set_and_unset() {
        let mut response = mixed();
        let parts = &mut response.responses[0].partitions;
        parts[0].diverging_epoch = EpochEndOffset::default().with_epoch(5).with_end_offset(77);
        parts[1].current_leader = LeaderIdAndEpoch::default()
            .with_leader_id(BrokerId(2))
            .with_leader_epoch(9);
        parts[2].snapshot_id = SnapshotId::default().with_end_offset(10).with_epoch(1);
        parts[3].diverging_epoch = EpochEndOffset::default().with_epoch(1);
        parts[3].current_leader = LeaderIdAndEpoch::default().with_leader_epoch(4);
        parts[3].snapshot_id = SnapshotId::default().with_end_offset(3);
        parts[3]
            .unknown_tagged_fields
            .insert(5, Bytes::from_static(b"opaque"));
        response.responses[2]
            .unknown_tagged_fields
            .insert(0, Bytes::from_static(b"t"));
        response
            .unknown_tagged_fields
            .insert(4, Bytes::from_static(b"top"));
        // Tagged fields exist from v12 only; older versions drop them, as Kafka does.
        for version in 4..=12 {
            check(99, version, &response);
        }
        // Set fields make the v12 frame longer than the unset one.
        let plain = encode(99, 12, &mixed());
        let tagged = encode(99, 12, &response);
        assert!(concat(&tagged).len() > concat(&plain).len());
    }

    #[test]
    fn length_prefix_counts_every_chunk() {
        for version in 4..=12 {
            let frame = concat(&encode(5, version, &mixed()));
            let length = i32::from_be_bytes(frame[..4].try_into().unwrap());
            assert_eq!(length as usize, frame.len() - 4);
        }
    }

    #[test]
    fn other_versions_fall_back_to_the_generated_encoder() {
        let response = mixed();
        for version in 13..=16 {
            let chunks = encode(5, version, &response);
            assert_eq!(concat(&chunks), reference(5, version, &response).as_ref());
            let held = encode_fetch_response(5, version, &response, |_, _| Some((1, b"x")));
            assert!(held.is_err(), "v{version} cannot carry external records");
        }
        assert!(encode_fetch_response(5, 3, &response, |_, _| None::<(usize, ())>).is_err());
    }

    fn arb_partition() -> impl Strategy<Value = PartitionData> {
        (
            (
                any::<i32>(),
                any::<i16>(),
                any::<i64>(),
                any::<i64>(),
                any::<i64>(),
            ),
            proptest::option::of(proptest::collection::vec(any::<(i64, i64)>(), 0..3)),
            any::<i32>(),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
            (
                any::<(i32, i64)>(),
                any::<(i32, i32)>(),
                any::<(i64, i32)>(),
                0u8..8,
            ),
            proptest::collection::btree_map(
                0i32..8,
                proptest::collection::vec(any::<u8>(), 0..5),
                0..3,
            ),
        )
            .prop_map(
                |(fixed, aborted, replica, records, (div, lead, snap, mask), unknown)| {
                    let mut p = PartitionData::default()
                        .with_partition_index(fixed.0)
                        .with_error_code(fixed.1)
                        .with_high_watermark(fixed.2)
                        .with_last_stable_offset(fixed.3)
                        .with_log_start_offset(fixed.4)
                        .with_aborted_transactions(aborted.map(|list| {
                            list.into_iter()
                                .map(|(pid, first)| {
                                    AbortedTransaction::default()
                                        .with_producer_id(ProducerId(pid))
                                        .with_first_offset(first)
                                })
                                .collect()
                        }))
                        .with_preferred_read_replica(BrokerId(replica))
                        .with_records(records.map(Bytes::from));
                    if mask & 1 != 0 {
                        p.diverging_epoch = EpochEndOffset::default()
                            .with_epoch(div.0)
                            .with_end_offset(div.1);
                    }
                    if mask & 2 != 0 {
                        p.current_leader = LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(lead.0))
                            .with_leader_epoch(lead.1);
                    }
                    if mask & 4 != 0 {
                        p.snapshot_id = SnapshotId::default()
                            .with_end_offset(snap.0)
                            .with_epoch(snap.1);
                    }
                    p.unknown_tagged_fields = unknown
                        .into_iter()
                        .map(|(k, v)| (k, Bytes::from(v)))
                        .collect();
                    p
                },
            )
    }

    fn arb_response() -> impl Strategy<Value = FetchResponse> {
        let topic = (
            "[a-z._-]{0,20}",
            proptest::collection::vec(arb_partition(), 0..4),
        )
            .prop_map(|(name, partitions)| {
                FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_string(name)))
                    .with_partitions(partitions)
            });
        (
            any::<(i32, i16, i32)>(),
            proptest::collection::vec(topic, 0..4),
        )
            .prop_map(|((throttle, error, session), responses)| {
                FetchResponse::default()
                    .with_throttle_time_ms(throttle)
                    .with_error_code(error)
                    .with_session_id(session)
                    .with_responses(responses)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn random_responses_match_the_generated_encoder(
            mut response in arb_response(),
            version in 4i16..=12,
            correlation_id in any::<i32>(),
        ) {
            // Fields a version cannot carry make both encoders fail; keep them representable.
            if version < 7 {
                response.session_id = 0;
            }
            if version < 11 {
                for p in response.responses.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                    p.preferred_read_replica = BrokerId(-1);
                }
            }
            check(correlation_id, version, &response);
        }
    }
}
