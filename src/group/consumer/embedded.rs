//! The consumer protocol's own bytes inside the classic protocol: the subscription a member
//! sends in JoinGroup (ConsumerProtocolSubscription) and the assignment it receives from
//! SyncGroup (ConsumerProtocolAssignment), versions 0 to 3.
//!
//! A consumer group with classic members reads their subscriptions (topics, owned partitions,
//! rack) and writes their assignments itself, as Kafka's coordinator does after an online
//! upgrade. Both layouts are not flexible: int16 version, int32 array counts, int16 string
//! lengths, int32 byte lengths. A version newer than 3 is read as 3 (later versions only add
//! fields at the end). Pure: no I/O; bad bytes are an `Err`, never a panic.

use bytes::Bytes;

use crate::group::wire::Reader;

fn reader(data: &[u8]) -> Reader<'_> {
    Reader::new(data, false).of("consumer protocol data")
}

/// Partitions by topic name.
pub type NamedPartitions = std::collections::BTreeMap<String, std::collections::BTreeSet<i32>>;

/// What a ConsumerProtocolSubscription says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    pub version: i16,
    pub topics: Vec<String>,
    /// Version 1+; empty before.
    pub owned: NamedPartitions,
    /// Version 3+.
    pub rack_id: Option<String>,
}

/// Reads a ConsumerProtocolSubscription.
pub fn parse_subscription(data: &[u8]) -> Result<Subscription, String> {
    let mut r = reader(data);
    let version = r.i16()?;
    if version < 0 {
        return Err(format!("negative subscription version {version}"));
    }
    let mut topics = Vec::new();
    for _ in 0..count(&mut r)? {
        topics.push(r.string()?);
    }
    r.bytes()?;
    let mut owned = NamedPartitions::new();
    if version >= 1 {
        owned = partitions(&mut r)?;
    }
    if version >= 2 {
        r.i32()?;
    }
    let rack_id = if version >= 3 {
        r.nullable_string()?
    } else {
        None
    };
    Ok(Subscription {
        version,
        topics,
        owned,
        rack_id,
    })
}

/// Reads the partitions of a ConsumerProtocolAssignment; empty bytes are an empty assignment
/// (a member that joined but never received one).
pub fn parse_assignment(data: &[u8]) -> Result<NamedPartitions, String> {
    if data.is_empty() {
        return Ok(NamedPartitions::new());
    }
    let mut r = reader(data);
    let version = r.i16()?;
    if version < 0 {
        return Err(format!("negative assignment version {version}"));
    }
    partitions(&mut r)
}

/// Writes a ConsumerProtocolAssignment at `version` (clamped to 0..=3) with no user data.
pub fn write_assignment(version: i16, partitions: &NamedPartitions) -> Bytes {
    let mut out = Vec::new();
    out.extend_from_slice(&version.clamp(0, 3).to_be_bytes());
    out.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
    for (topic, ps) in partitions {
        let name = &topic.as_bytes()[..topic.len().min(i16::MAX as usize)];
        out.extend_from_slice(&(name.len() as i16).to_be_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&(ps.len() as i32).to_be_bytes());
        for p in ps {
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
    // Null user data.
    out.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(out)
}

/// The version a subscription's bytes start with (0 when they do not say).
pub fn version_of(data: &[u8]) -> i16 {
    match data {
        [a, b, ..] => i16::from_be_bytes([*a, *b]).max(0),
        _ => 0,
    }
}

/// An array count: never null (the layouts' arrays are not nullable).
fn count(r: &mut Reader<'_>) -> Result<usize, String> {
    r.len(true)?.ok_or_else(|| "null array".to_string())
}

fn partitions(r: &mut Reader<'_>) -> Result<NamedPartitions, String> {
    let mut out = NamedPartitions::new();
    for _ in 0..count(r)? {
        let topic = r.string()?;
        let mut ps = std::collections::BTreeSet::new();
        for _ in 0..count(r)? {
            ps.insert(r.i32()?);
        }
        if !ps.is_empty() {
            out.entry(topic).or_default().extend(ps);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(version: i16, topics: &[&str], owned: &[(&str, i32)], rack: &str) -> Vec<u8> {
        let mut b = version.to_be_bytes().to_vec();
        b.extend((topics.len() as i32).to_be_bytes());
        for t in topics {
            b.extend((t.len() as i16).to_be_bytes());
            b.extend(t.as_bytes());
        }
        b.extend(2i32.to_be_bytes());
        b.extend([9, 9]);
        if version >= 1 {
            b.extend((owned.len() as i32).to_be_bytes());
            for (t, p) in owned {
                b.extend((t.len() as i16).to_be_bytes());
                b.extend(t.as_bytes());
                b.extend(1i32.to_be_bytes());
                b.extend(p.to_be_bytes());
            }
        }
        if version >= 2 {
            b.extend(7i32.to_be_bytes());
        }
        if version >= 3 {
            b.extend((rack.len() as i16).to_be_bytes());
            b.extend(rack.as_bytes());
        }
        b
    }

    #[test]
    fn every_subscription_version_is_read() {
        let v0 = parse_subscription(&subscription(0, &["a", "b"], &[], "")).unwrap();
        assert_eq!(v0.topics, ["a", "b"]);
        assert!(v0.owned.is_empty() && v0.rack_id.is_none());
        let v3 = parse_subscription(&subscription(3, &["a"], &[("a", 2)], "r1")).unwrap();
        assert_eq!(v3.owned, [("a".to_string(), [2].into())].into());
        assert_eq!(v3.rack_id.as_deref(), Some("r1"));
        // A newer version is read as 3, its extra fields ignored.
        let mut v4 = subscription(3, &["a"], &[], "r");
        v4[1] = 4;
        v4.extend([1, 2, 3]);
        assert_eq!(parse_subscription(&v4).unwrap().topics, ["a"]);
        // Cut anywhere, or hostile counts: an error, not a panic.
        let good = subscription(3, &["a"], &[("a", 1)], "r");
        for cut in 0..good.len() {
            assert!(parse_subscription(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(parse_subscription(&[0, 0, 0x7f, 0xff, 0xff, 0xff]).is_err());
        assert!(parse_subscription(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn assignments_round_trip_at_the_member_version() {
        let parts: NamedPartitions = [("t".to_string(), [0, 3].into())].into();
        for version in [0, 1, 3, 9] {
            let bytes = write_assignment(version, &parts);
            assert_eq!(version_of(&bytes), version.min(3));
            assert_eq!(parse_assignment(&bytes).unwrap(), parts);
        }
        assert!(parse_assignment(&[]).unwrap().is_empty());
        assert!(parse_assignment(&[0, 0, 0, 0, 0, 9]).is_err());
    }
}
