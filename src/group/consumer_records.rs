//! The byte layout of the KIP-848 consumer group records in `__consumer_offsets`, as Apache
//! Kafka 4.x writes them, so its tools (and a Kafka broker) read Cairn's data.
//!
//! A key is the record type (int16: 3 group metadata, 5 member metadata, 6 target assignment
//! metadata, 7 target assignment member, 8 current member assignment) then the key's strings
//! (int16 lengths). A value is its version (int16, 0) then the flexible encoding: compact
//! strings and arrays, uuids, and tagged fields: a member's tag 0 (ClassicMemberMetadata: the
//! session timeout and JoinGroup protocols of a member using the classic protocol) is read and
//! written, others are skipped when read (Kafka's MetadataHash, AssignmentEpochs). Record type 4 (partition
//! metadata, replaced in Kafka 4.1) and 16 (resolved regular expressions, which Cairn resolves
//! again at start-up) are read as nothing. Knows only [`super::consumer::stored`]'s types.

use bytes::Bytes;

use super::consumer::stored::{ConsumerRecord, StoredCurrent, StoredMember};
use super::consumer::{Assignment, ClassicMember};
use super::state::Protocol;
use super::wire::Reader;

/// The record types read and written here (Kafka's CoordinatorRecordType numbers).
pub(super) const TYPES: std::ops::RangeInclusive<i16> = 3..=8;

/// The record's key bytes.
pub(super) fn key(record: &ConsumerRecord) -> Bytes {
    let mut w = Writer::default();
    let (kind, member) = match record {
        ConsumerRecord::Epoch { .. } => (3, None),
        ConsumerRecord::Member { member_id, .. } => (5, Some(member_id)),
        ConsumerRecord::AssignmentEpoch { .. } => (6, None),
        ConsumerRecord::Target { member_id, .. } => (7, Some(member_id)),
        ConsumerRecord::Current { member_id, .. } => (8, Some(member_id)),
    };
    w.i16(kind);
    w.short_string(record.group_id());
    if let Some(m) = member {
        w.short_string(m);
    }
    Bytes::from(w.0)
}

/// The record's value bytes; `None` for a tombstone.
pub(super) fn value(record: &ConsumerRecord) -> Option<Bytes> {
    let mut w = Writer::default();
    w.i16(0);
    match record {
        ConsumerRecord::Epoch { epoch, .. } | ConsumerRecord::AssignmentEpoch { epoch, .. } => {
            w.i32((*epoch)?);
        }
        ConsumerRecord::Member { value, .. } => {
            let m = value.as_ref()?;
            w.nullable(m.instance_id.as_deref());
            w.nullable(m.rack_id.as_deref());
            w.string(&m.client_id);
            w.string(&m.client_host);
            w.len(m.subscribed.len());
            for name in &m.subscribed {
                w.string(name);
            }
            w.nullable(m.regex.as_deref());
            w.i32(m.rebalance_timeout_ms);
            w.nullable(m.server_assignor.as_deref());
            if let Some(classic) = &m.classic {
                // Tagged field 0: ClassicMemberMetadata.
                let mut t = Writer::default();
                t.i32(classic.session_timeout_ms);
                t.len(classic.protocols.len());
                for p in &classic.protocols {
                    t.string(&p.name);
                    t.len(p.metadata.len());
                    t.0.extend_from_slice(&p.metadata);
                    t.varint(0);
                }
                t.varint(0);
                w.varint(1);
                w.varint(0);
                w.varint(u32::try_from(t.0.len()).unwrap_or(u32::MAX));
                w.0.extend_from_slice(&t.0);
                return Some(Bytes::from(w.0));
            }
        }
        ConsumerRecord::Target { value, .. } => w.assignment(value.as_ref()?),
        ConsumerRecord::Current { value, .. } => {
            let c = value.as_ref()?;
            w.i32(c.epoch);
            w.i32(c.previous_epoch);
            w.0.push(c.state as u8);
            w.assignment(&c.assigned);
            w.assignment(&c.revoking);
        }
    }
    w.varint(0);
    Some(Bytes::from(w.0))
}

/// Decodes a record whose key starts with a type in [`TYPES`]; `Ok(None)` for type 4.
pub(super) fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Option<ConsumerRecord>, String> {
    let mut k = Reader::new(key, true);
    let kind = k.i16()?;
    let group_id = k.short_string()?;
    let member_id = if matches!(kind, 5 | 7 | 8) {
        k.short_string()?
    } else {
        String::new()
    };
    let mut v = match value {
        Some(bytes) => {
            let mut r = Reader::new(bytes, true);
            let version = r.i16()?;
            if version != 0 {
                return Err(format!(
                    "unknown version {version} of consumer group record type {kind}"
                ));
            }
            Some(r)
        }
        None => None,
    };
    let record = match kind {
        3 | 6 => {
            let epoch = v.as_mut().map(|r| r.i32()).transpose()?;
            if kind == 3 {
                ConsumerRecord::Epoch { group_id, epoch }
            } else {
                ConsumerRecord::AssignmentEpoch { group_id, epoch }
            }
        }
        5 => {
            let value = match v.as_mut() {
                Some(r) => {
                    let mut m = read_member(r)?;
                    for (tag, bytes) in r.tagged()? {
                        if tag == 0 {
                            m.classic = Some(read_classic(&mut Reader::new(bytes, true))?);
                        }
                    }
                    Some(m)
                }
                None => None,
            };
            ConsumerRecord::Member {
                group_id,
                member_id,
                value,
            }
        }
        7 => ConsumerRecord::Target {
            group_id,
            member_id,
            value: v.as_mut().map(read_assignment).transpose()?,
        },
        8 => ConsumerRecord::Current {
            group_id,
            member_id,
            value: v.as_mut().map(read_current).transpose()?,
        },
        _ => return Ok(None),
    };
    if let Some(r) = v.as_mut().filter(|_| kind != 5) {
        r.tagged_fields()?;
    }
    Ok(Some(record))
}

fn read_member(r: &mut Reader<'_>) -> Result<StoredMember, String> {
    let instance_id = r.nullable_string()?;
    let rack_id = r.nullable_string()?;
    let client_id = r.string()?;
    let client_host = r.string()?;
    let count = r.array_len()?;
    let mut subscribed = Vec::new();
    for _ in 0..count {
        subscribed.push(r.string()?);
    }
    Ok(StoredMember {
        instance_id,
        rack_id,
        client_id,
        client_host,
        subscribed,
        regex: r.nullable_string()?,
        rebalance_timeout_ms: r.i32()?,
        server_assignor: r.nullable_string()?,
        classic: None,
    })
}

fn read_classic(r: &mut Reader<'_>) -> Result<ClassicMember, String> {
    let session_timeout_ms = r.i32()?;
    let mut protocols = Vec::new();
    for _ in 0..r.array_len()? {
        let name = r.string()?;
        let metadata = r.nullable_bytes()?.ok_or("null protocol metadata")?;
        let metadata = Bytes::copy_from_slice(metadata);
        r.tagged_fields()?;
        protocols.push(Protocol { name, metadata });
    }
    r.tagged_fields()?;
    Ok(ClassicMember {
        session_timeout_ms,
        protocols,
    })
}

fn read_current(r: &mut Reader<'_>) -> Result<StoredCurrent, String> {
    Ok(StoredCurrent {
        epoch: r.i32()?,
        previous_epoch: r.i32()?,
        state: r.i8()?,
        assigned: read_assignment(r)?,
        revoking: read_assignment(r)?,
    })
}

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn i16(&mut self, v: i16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn varint(&mut self, mut v: u32) {
        while v >= 0x80 {
            self.0.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    /// A key string: int16 length (group and member ids come from int16-length fields).
    fn short_string(&mut self, s: &str) {
        let bytes = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
        self.i16(bytes.len() as i16);
        self.0.extend_from_slice(bytes);
    }
    /// A compact array or string length.
    fn len(&mut self, n: usize) {
        self.varint(u32::try_from(n + 1).unwrap_or(u32::MAX));
    }
    fn string(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn nullable(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.string(s),
            None => self.varint(0),
        }
    }
    /// `[]TopicPartitions`: topic id, partitions, no tagged fields.
    fn assignment(&mut self, a: &Assignment) {
        self.len(a.len());
        for (topic, partitions) in a {
            self.0.extend_from_slice(topic.as_bytes());
            self.len(partitions.len());
            for p in partitions {
                self.i32(*p);
            }
            self.varint(0);
        }
    }
}

/// `[]TopicPartitions`: topic id, partitions, tagged fields.
fn read_assignment(r: &mut Reader<'_>) -> Result<Assignment, String> {
    let mut a = Assignment::new();
    for _ in 0..r.array_len()? {
        let id = r.uuid()?;
        let mut partitions = std::collections::BTreeSet::new();
        for _ in 0..r.array_len()? {
            partitions.insert(r.i32()?);
        }
        r.tagged_fields()?;
        if !partitions.is_empty() {
            a.entry(id).or_default().extend(partitions);
        }
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(r: ConsumerRecord) {
        let (k, v) = (key(&r), value(&r));
        assert_eq!(decode(&k, v.as_deref()), Ok(Some(r)));
    }

    #[test]
    fn every_record_round_trips() {
        let a: Assignment = [(uuid::Uuid::from_u128(7), [0, 2].into())].into();
        let g = || "g".to_string();
        let m = || "m-1".to_string();
        round_trip(ConsumerRecord::Epoch {
            group_id: g(),
            epoch: Some(5),
        });
        round_trip(ConsumerRecord::Epoch {
            group_id: g(),
            epoch: None,
        });
        round_trip(ConsumerRecord::AssignmentEpoch {
            group_id: g(),
            epoch: Some(4),
        });
        round_trip(ConsumerRecord::Member {
            group_id: g(),
            member_id: m(),
            value: Some(StoredMember {
                instance_id: Some("i".into()),
                rack_id: None,
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                subscribed: vec!["a".into(), "b".into()],
                regex: Some("^x.*".into()),
                rebalance_timeout_ms: 30_000,
                server_assignor: Some("range".into()),
                classic: None,
            }),
        });
        round_trip(ConsumerRecord::Member {
            group_id: g(),
            member_id: m(),
            value: Some(StoredMember {
                instance_id: None,
                rack_id: Some("r".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                subscribed: vec!["a".into()],
                regex: None,
                rebalance_timeout_ms: 30_000,
                server_assignor: None,
                classic: Some(ClassicMember {
                    session_timeout_ms: 10_000,
                    protocols: vec![
                        Protocol {
                            name: "range".into(),
                            metadata: Bytes::from_static(&[0, 1, 0, 0, 0, 0]),
                        },
                        Protocol {
                            name: "cooperative-sticky".into(),
                            metadata: Bytes::new(),
                        },
                    ],
                }),
            }),
        });
        round_trip(ConsumerRecord::Target {
            group_id: g(),
            member_id: m(),
            value: Some(a.clone()),
        });
        round_trip(ConsumerRecord::Current {
            group_id: g(),
            member_id: m(),
            value: Some(StoredCurrent {
                epoch: 3,
                previous_epoch: 2,
                state: 1,
                assigned: a.clone(),
                revoking: Assignment::new(),
            }),
        });
        round_trip(ConsumerRecord::Current {
            group_id: g(),
            member_id: m(),
            value: None,
        });
    }

    #[test]
    fn kafka_byte_layout_and_tagged_fields() {
        let r = ConsumerRecord::Epoch {
            group_id: "g".into(),
            epoch: Some(2),
        };
        assert_eq!(key(&r).as_ref(), &[0, 3, 0, 1, b'g']);
        assert_eq!(value(&r).unwrap().as_ref(), &[0, 0, 0, 0, 0, 2, 0]);
        // Kafka 4.1+ adds MetadataHash as tagged field 0: read past it.
        let tagged = [0, 0, 0, 0, 0, 2, 1, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(decode(&key(&r), Some(&tagged)), Ok(Some(r)));
        // Partition metadata (type 4) is read as nothing; garbage is an error, not a panic.
        assert_eq!(decode(&[0, 4, 0, 1, b'g'], Some(&[0, 0, 1, 0])), Ok(None));
        assert!(decode(&[0, 5, 0, 1, b'g'], Some(&[0, 0])).is_err());
        assert!(decode(&[0, 7, 0, 1, b'g', 0, 1, b'm'], Some(&[0, 0, 200, 1])).is_err());
        assert!(decode(&[0, 3, 0, 1, b'g'], Some(&[0, 1, 0, 0, 0, 1, 0])).is_err());
    }
}
