//! Small durable metadata files and their text formats: Kafka's offset checkpoint files
//! (`recovery-point-offset-checkpoint`, `log-start-offset-checkpoint`), `partition.metadata`,
//! the clean-shutdown marker, Cairn's topic metadata files and the producer-id block.
//!
//! Every write is atomic: `<name>.tmp`, fsync, rename, fsync of the directory. Formats are pure
//! functions (tested below); only [`write_atomic`] and the `read_*` helpers touch the disk, through
//! `std::fs` directly (these files are small and off the hot path). Knows nothing of segments.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::TopicInfo;

/// Kafka's clean-shutdown marker file name.
pub const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";
pub const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";
pub const LOG_START_FILE: &str = "log-start-offset-checkpoint";
pub const PARTITION_METADATA_FILE: &str = "partition.metadata";

/// Writes `contents` to `path` atomically and durably.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

/// Topic-partition → offset, as in Kafka's checkpoint files.
pub type OffsetMap = BTreeMap<(String, i32), i64>;

/// Kafka's checkpoint text: version 0, entry count, then `topic partition offset` lines.
pub fn encode_offsets(offsets: &OffsetMap) -> String {
    let mut out = format!("0\n{}\n", offsets.len());
    for ((topic, partition), offset) in offsets {
        out.push_str(&format!("{topic} {partition} {offset}\n"));
    }
    out
}

/// Parses Kafka's checkpoint text; any bad version, line or count is an error.
pub fn decode_offsets(text: &str) -> Result<OffsetMap, String> {
    let mut lines = text.lines();
    match lines.next().map(str::trim) {
        Some("0") => {}
        other => return Err(format!("bad checkpoint version {other:?}")),
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or("bad checkpoint entry count")?;
    let mut out = OffsetMap::new();
    for line in lines.by_ref().take(count) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [topic, partition, offset] = parts[..] else {
            return Err(format!("bad checkpoint line {line:?}"));
        };
        let partition = partition
            .parse()
            .map_err(|_| format!("bad partition in {line:?}"))?;
        let offset = offset
            .parse()
            .map_err(|_| format!("bad offset in {line:?}"))?;
        out.insert((topic.to_string(), partition), offset);
    }
    if out.len() != count || lines.any(|l| !l.trim().is_empty()) {
        return Err(format!(
            "checkpoint declares {count} entries, found {}",
            out.len()
        ));
    }
    Ok(out)
}

/// Reads a checkpoint file; a missing or unreadable one gives an empty map (logged), as in Kafka.
pub fn read_offsets(path: &Path) -> OffsetMap {
    match fs::read_to_string(path) {
        Ok(text) => decode_offsets(&text).unwrap_or_else(|e| {
            tracing::warn!(file = %path.display(), error = %e, "ignoring bad checkpoint file");
            OffsetMap::new()
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => OffsetMap::new(),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read checkpoint file");
            OffsetMap::new()
        }
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A UUID as Kafka prints it: URL-safe base64 without padding (22 characters).
pub fn uuid_to_kafka(id: &uuid::Uuid) -> String {
    let bytes = id.as_bytes();
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Parses Kafka's UUID text form.
pub fn uuid_from_kafka(text: &str) -> Result<uuid::Uuid, String> {
    let text = text.trim();
    if text.len() != 22 {
        return Err(format!("bad uuid {text:?}"));
    }
    let mut bits: u128 = 0;
    for (i, c) in text.bytes().enumerate() {
        let v = B64
            .iter()
            .position(|&b| b == c)
            .ok_or_else(|| format!("bad uuid {text:?}"))? as u128;
        // 22 × 6 = 132 bits: the last character carries 2 data bits and 4 bits of padding.
        bits = if i < 21 {
            bits << 6 | v
        } else {
            bits << 2 | v >> 4
        };
    }
    Ok(uuid::Uuid::from_u128(bits))
}

/// `partition.metadata`: exactly `version: 0\ntopic_id: <uuid>` with no trailing newline.
pub fn encode_partition_metadata(topic_id: &uuid::Uuid) -> String {
    format!("version: 0\ntopic_id: {}", uuid_to_kafka(topic_id))
}

pub fn decode_partition_metadata(text: &str) -> Result<uuid::Uuid, String> {
    let mut version = None;
    let mut id = None;
    for line in text.lines() {
        match line.split_once(':') {
            Some(("version", v)) => version = Some(v.trim().to_string()),
            Some(("topic_id", v)) => id = Some(uuid_from_kafka(v)?),
            _ => return Err(format!("bad partition.metadata line {line:?}")),
        }
    }
    if version.as_deref() != Some("0") {
        return Err("partition.metadata version is not 0".into());
    }
    match id {
        Some(id) if !id.is_nil() => Ok(id),
        _ => Err("partition.metadata has no topic id".into()),
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Cairn's topic metadata file: `key=value` lines; overrides as `config.<name>=<value>`.
pub fn encode_topic(info: &TopicInfo) -> String {
    let mut out = format!(
        "version=1\nname={}\ntopic_id={}\npartitions={}\ninternal={}\n",
        escape(&info.name),
        info.topic_id,
        info.partitions,
        info.internal
    );
    for (k, v) in &info.overrides {
        out.push_str(&format!("config.{}={}\n", escape(k), escape(v)));
    }
    out
}

pub fn decode_topic(text: &str) -> Result<TopicInfo, String> {
    let mut fields = BTreeMap::new();
    let mut overrides = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("bad topic metadata line {line:?}"))?;
        match k.strip_prefix("config.") {
            Some(name) => {
                overrides.insert(unescape(name), unescape(v));
            }
            None => {
                fields.insert(k.to_string(), unescape(v));
            }
        }
    }
    let field = |k: &str| {
        fields
            .get(k)
            .ok_or_else(|| format!("topic metadata lacks {k}"))
    };
    if field("version")? != "1" {
        return Err("unknown topic metadata version".into());
    }
    let topic_id = uuid::Uuid::parse_str(field("topic_id")?).map_err(|e| e.to_string())?;
    if topic_id.is_nil() {
        return Err("topic id is the zero uuid".into());
    }
    Ok(TopicInfo {
        name: field("name")?.clone(),
        topic_id,
        partitions: field("partitions")?
            .parse()
            .map_err(|_| "bad partition count")?,
        overrides,
        internal: field("internal")? == "true",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_in_kafka_format() {
        let mut m = OffsetMap::new();
        m.insert(("my-topic".into(), 0), 1234);
        m.insert(("my-topic".into(), 1), 99);
        let text = encode_offsets(&m);
        assert_eq!(text, "0\n2\nmy-topic 0 1234\nmy-topic 1 99\n");
        assert_eq!(decode_offsets(&text), Ok(m));
        assert!(decode_offsets("1\n0\n").is_err());
        assert!(decode_offsets("0\n2\nt 0 1\n").is_err());
        assert!(decode_offsets("0\n1\nt x 1\n").is_err());
        assert!(decode_offsets("0\n1\nt 0 1 extra\n").is_err());
        assert_eq!(decode_offsets("0\n0\n"), Ok(OffsetMap::new()));
    }

    #[test]
    fn atomic_write_replaces_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_START_FILE);
        assert!(read_offsets(&path).is_empty());
        let mut m = OffsetMap::new();
        m.insert(("t".into(), 3), 7);
        write_atomic(&path, encode_offsets(&m).as_bytes()).unwrap();
        assert_eq!(read_offsets(&path), m);
        fs::write(&path, "garbage").unwrap();
        assert!(read_offsets(&path).is_empty());
        assert!(!dir.path().join("log-start-offset-checkpoint.tmp").exists());
    }

    #[test]
    fn uuid_matches_kafka_text_form() {
        // Kafka prints Uuid(0x0123456789abcdef, 0xfedcba9876543210) as ASNFZ4mrze_-3LqYdlQyEA.
        let id = uuid::Uuid::from_u128(0x0123456789abcdef_fedcba9876543210);
        assert_eq!(uuid_to_kafka(&id), "ASNFZ4mrze_-3LqYdlQyEA");
        assert_eq!(uuid_from_kafka("ASNFZ4mrze_-3LqYdlQyEA"), Ok(id));
        let random = uuid::Uuid::new_v4();
        assert_eq!(uuid_from_kafka(&uuid_to_kafka(&random)), Ok(random));
        let text = encode_partition_metadata(&id);
        assert_eq!(text, "version: 0\ntopic_id: ASNFZ4mrze_-3LqYdlQyEA");
        assert_eq!(decode_partition_metadata(&text), Ok(id));
        assert!(decode_partition_metadata("version: 0\ntopic_id: AAAAAAAAAAAAAAAAAAAAAA").is_err());
    }

    #[test]
    fn topic_metadata_round_trips() {
        let mut overrides = BTreeMap::new();
        overrides.insert("cleanup.policy".to_string(), "compact,delete".to_string());
        overrides.insert("odd".to_string(), "a=b\nc\\d".to_string());
        let info = TopicInfo {
            name: "orders.v1".into(),
            topic_id: uuid::Uuid::new_v4(),
            partitions: 3,
            overrides,
            internal: true,
        };
        let back = decode_topic(&encode_topic(&info)).unwrap();
        assert_eq!(back.name, info.name);
        assert_eq!(back.topic_id, info.topic_id);
        assert_eq!(back.partitions, 3);
        assert_eq!(back.overrides, info.overrides);
        assert!(back.internal);
        assert!(decode_topic("version=1\nname=x\n").is_err());
    }
}
