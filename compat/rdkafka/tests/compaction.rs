//! Compacted topics with rdkafka, as the design's jobs use them: the cache-rebuild job (read a compacted
//! topic from offset 0 and get exactly the live keys with their latest values, tombstoned keys gone)
//! and the CDC job (a live follower and a late snapshot reader of a `compact,delete` topic end with the
//! same key→value map).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use cairn_compat_rdkafka::{
    base_consumer_config, create_topic, idempotent_producer, notice, produce_ordered, read_all,
    unique_topic, wait_for, watermarks, Broker, Fetched, Outgoing,
};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

/// Broker settings for these tests: the cleaner looks for work every second.
const BROKER_SETS: &[(&str, &str)] = &[("log.cleaner.backoff.ms", "1000")];

const PARTITIONS: i32 = 2;

/// Creates a topic with `scripts/kafka-tool kafka-topics --create ... --config k=v`.
fn kafka_topics_create(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<()> {
    let tool = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kafka-tool");
    let mut cmd = std::process::Command::new(tool);
    cmd.args([
        "kafka-topics",
        "--bootstrap-server",
        bootstrap,
        "--create",
        "--topic",
        topic,
    ])
    .args(["--partitions", &partitions.to_string()]);
    for (k, v) in configs {
        cmd.arg("--config").arg(format!("{k}={v}"));
    }
    let out = cmd.output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && stdout.contains("Created topic"),
        "kafka-topics --create failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
const MARKER: &[u8] = b"__roll-marker";

fn put(key: &str, value: String) -> Outgoing {
    Outgoing {
        key: key.as_bytes().to_vec(),
        value: Some(value.into_bytes()),
        partition: None,
        timestamp: None,
    }
}

fn tombstone(key: &str) -> Outgoing {
    Outgoing {
        key: key.as_bytes().to_vec(),
        value: None,
        partition: None,
        timestamp: None,
    }
}

/// The application's view of a compacted topic read from offset 0: latest value per key, tombstones
/// applied. Also reports whether the log held only one record per key and no tombstone.
fn fold(read: &BTreeMap<i32, Vec<Fetched>>) -> (HashMap<Vec<u8>, Vec<u8>>, bool) {
    let mut map = HashMap::new();
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut tombstones = 0;
    for recs in read.values() {
        for f in recs {
            let key = f.rec.key.clone().unwrap_or_default();
            if key == MARKER {
                continue;
            }
            *seen.entry(key.clone()).or_default() += 1;
            match &f.rec.value {
                Some(v) => {
                    map.insert(key, v.clone());
                }
                None => {
                    tombstones += 1;
                    map.remove(&key);
                }
            }
        }
    }
    let compacted = tombstones == 0 && seen.values().all(|&n| n == 1);
    (map, compacted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_rebuild_reads_exactly_the_live_keys() -> Result<()> {
    const KEYS: usize = 10_000;
    const ROUNDS: usize = 4;
    let mut broker = Broker::start(BROKER_SETS)?;
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("cache");
    // Created the way an operator would: Kafka's own kafka-topics with --config.
    kafka_topics_create(
        &bootstrap,
        &topic,
        PARTITIONS,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "1048576"),
            ("segment.ms", "2000"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("min.compaction.lag.ms", "0"),
            ("delete.retention.ms", "1000"),
        ],
    )?;

    // Several rounds of updates to every key, then tombstones for every 7th key, then new values
    // for every 49th key (deleted, then alive again).
    let mut expected: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut outgoing = Vec::new();
    for round in 0..ROUNDS {
        for k in 0..KEYS {
            let key = format!("key-{k:05}");
            let value = format!(
                "round {round} of {key}: {}",
                "c".repeat((k * 7 + round) % 60)
            );
            expected.insert(key.clone().into_bytes(), value.clone().into_bytes());
            outgoing.push(put(&key, value));
        }
    }
    for k in (0..KEYS).step_by(7) {
        let key = format!("key-{k:05}");
        expected.remove(key.as_bytes());
        outgoing.push(tombstone(&key));
    }
    for k in (0..KEYS).step_by(49) {
        let key = format!("key-{k:05}");
        let value = format!("reborn {key}");
        expected.insert(key.clone().into_bytes(), value.clone().into_bytes());
        outgoing.push(put(&key, value));
    }
    let written_records = outgoing.len();
    let written_bytes: usize = outgoing
        .iter()
        .map(|o| o.key.len() + o.value.as_ref().map_or(0, Vec::len))
        .sum();
    let producer = idempotent_producer(&bootstrap, &[])?;
    produce_ordered(&producer, &topic, outgoing, Duration::from_secs(60)).await?;

    // Wait for the cleaner. The active segment is never cleaned, so a marker record (ignored by the
    // reader) is appended each round: once segment.ms has passed it rolls the segment holding the
    // last updates, which then becomes cleanable.
    let started = Instant::now();
    let mut rounds = 0;
    let result = loop {
        rounds += 1;
        let markers = (0..PARTITIONS).map(|p| Outgoing {
            key: MARKER.to_vec(),
            // Large enough that each marker alone lifts the dirty ratio past 0.01, so every
            // round triggers a cleaning (the second one removes tombstones past their horizon).
            value: Some(format!("{rounds} {}", "m".repeat(16 * 1024)).into_bytes()),
            partition: Some(p),
            timestamp: None,
        });
        produce_ordered(&producer, &topic, markers, Duration::from_secs(30)).await?;
        let read = read_all(&bootstrap, &topic, PARTITIONS, Duration::from_secs(60)).await?;
        let (map, compacted) = fold(&read);
        let records: usize = read.values().map(Vec::len).sum();
        // Whatever the cleaner has done so far, the folded view is always the latest state.
        ensure!(
            map == expected,
            "reading from offset 0 gives {} live keys, expected {} (or values differ)",
            map.len(),
            expected.len()
        );
        if compacted {
            break records;
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!(
                "topic not compacted 120 s after the last write: {records} records read from \
                 offset 0 for {} live keys ({written_records} written)",
                expected.len()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    println!(
        "compacted after {:?}: {result} records for {} live keys ({written_records} written)",
        started.elapsed(),
        expected.len()
    );

    // Offsets are preserved by compaction: the low watermark is still 0 and the high watermark has
    // not moved back.
    for (p, (low, high)) in watermarks(&bootstrap, &topic, PARTITIONS)?
        .iter()
        .enumerate()
    {
        ensure!(
            *low == 0,
            "partition {p}: log start offset {low} after compaction"
        );
        ensure!(*high as usize > written_records / PARTITIONS as usize / 2);
    }
    // And the topic shrinks on disk, and stays compacted and exact across a restart (only
    // checkable when this harness owns the process and its data directory).
    if let Some(cairn) = broker.cairn() {
        let on_disk = cairn.topic_disk_bytes_with_ext(&topic, "log")?;
        println!(
            "{on_disk} bytes of .log files for {written_bytes} bytes of keys and values written"
        );
        ensure!(
            on_disk > 0,
            "no .log files of {topic} found in the data directory"
        );
        ensure!(
            on_disk < written_bytes as u64 / 2,
            "compacted topic still holds {on_disk} bytes of segments for {written_bytes} bytes written"
        );
        let status = cairn.terminate()?;
        ensure!(status.success(), "cairn exited with {status} after SIGTERM");
        cairn.restart()?;
        let read = read_all(&bootstrap, &topic, PARTITIONS, Duration::from_secs(60)).await?;
        let (map, compacted) = fold(&read);
        ensure!(
            map == expected,
            "after restart the compacted topic folds to {} keys",
            map.len()
        );
        ensure!(
            compacted,
            "after restart the topic holds duplicate keys or tombstones again"
        );
    } else {
        notice("external broker: on-disk size and restart checks of the compacted topic skipped");
    }
    Ok(())
}

/// A consumer task that applies a partition set's records to a key→value map, from offset 0.
struct Follower {
    map: Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>>,
    /// Next offset to read, per partition.
    position: Arc<Mutex<BTreeMap<i32, i64>>>,
    records: Arc<Mutex<usize>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Follower {
    fn start(bootstrap: &str, topic: &str) -> Result<Follower> {
        let consumer: StreamConsumer = base_consumer_config(bootstrap).create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        let map = Arc::new(Mutex::new(HashMap::new()));
        let position = Arc::new(Mutex::new(BTreeMap::new()));
        let records = Arc::new(Mutex::new(0));
        let (stop, mut stopped) = watch::channel(false);
        let (m, pos, n) = (map.clone(), position.clone(), records.clone());
        let task = tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    _ = stopped.changed() => break,
                    msg = consumer.recv() => msg?,
                };
                let key = msg.key().unwrap_or_default().to_vec();
                {
                    let mut map = m.lock().expect("not poisoned");
                    match msg.payload() {
                        Some(v) => {
                            map.insert(key, v.to_vec());
                        }
                        None => {
                            map.remove(&key);
                        }
                    }
                }
                *n.lock().expect("not poisoned") += 1;
                pos.lock()
                    .expect("not poisoned")
                    .insert(msg.partition(), msg.offset() + 1);
            }
            Ok(())
        });
        Ok(Follower {
            map,
            position,
            records,
            stop,
            task,
        })
    }

    fn caught_up(&self, ends: &[i64]) -> bool {
        let pos = self.position.lock().expect("not poisoned");
        ends.iter()
            .enumerate()
            .all(|(p, &end)| end == 0 || pos.get(&(p as i32)).is_some_and(|&o| o >= end))
    }

    async fn finish(self) -> Result<(HashMap<Vec<u8>, Vec<u8>>, usize)> {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(10), self.task).await???;
        let map = self.map.lock().expect("not poisoned").clone();
        let n = *self.records.lock().expect("not poisoned");
        Ok((map, n))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_snapshot_and_live_follower_agree() -> Result<()> {
    const KEYS: usize = 3_000;
    const ROUNDS: usize = 6;
    let broker = Broker::start(BROKER_SETS)?;
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("cdc");
    create_topic(
        &bootstrap,
        &topic,
        PARTITIONS,
        &[
            ("cleanup.policy", "compact,delete"),
            ("retention.ms", "3600000"),
            ("segment.bytes", "1048576"),
            ("segment.ms", "1000"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("min.compaction.lag.ms", "0"),
            // Longer than the test, so a reader never misses a tombstone it needs.
            ("delete.retention.ms", "600000"),
        ],
    )
    .await?;

    let live = Follower::start(&bootstrap, &topic)?;
    let producer = idempotent_producer(&bootstrap, &[("compression.type", "zstd")])?;
    let mut expected: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut written = 0;
    let mut snapshot = None;
    for round in 0..ROUNDS {
        let mut out = Vec::new();
        for k in 0..KEYS {
            let key = format!("row-{k:05}");
            // Each round deletes a different seventh of the rows and updates the rest.
            if (k + round) % 7 == 0 {
                expected.remove(key.as_bytes());
                out.push(tombstone(&key));
            } else {
                let value = format!(
                    "{{\"row\":{k},\"version\":{round},\"pad\":\"{}\"}}",
                    "d".repeat(k % 90)
                );
                expected.insert(key.clone().into_bytes(), value.clone().into_bytes());
                out.push(put(&key, value));
            }
        }
        written += out.len();
        produce_ordered(&producer, &topic, out, Duration::from_secs(60)).await?;

        if round == ROUNDS / 2 {
            // The snapshot reader starts once the cleaner has compacted part of the log, so it
            // really reads a compacted snapshot and then follows the live tail.
            let started = Instant::now();
            loop {
                let marker = (0..PARTITIONS).map(|p| Outgoing {
                    key: MARKER.to_vec(),
                    value: Some(b"roll".to_vec()),
                    partition: Some(p),
                    timestamp: None,
                });
                produce_ordered(&producer, &topic, marker, Duration::from_secs(30)).await?;
                let read =
                    read_all(&bootstrap, &topic, PARTITIONS, Duration::from_secs(60)).await?;
                let count: usize = read.values().map(Vec::len).sum();
                let end: i64 = read
                    .values()
                    .filter_map(|v| v.last())
                    .map(|f| f.offset + 1)
                    .sum();
                if (count as i64) < end {
                    break;
                }
                ensure!(
                    started.elapsed() < Duration::from_secs(90),
                    "no compaction seen within 90 s ({count} records for {end} offsets)"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            snapshot = Some(Follower::start(&bootstrap, &topic)?);
        }
    }
    let snapshot = snapshot.expect("started at the middle round");

    let ends: Vec<i64> = watermarks(&bootstrap, &topic, PARTITIONS)?
        .iter()
        .map(|m| m.1)
        .collect();
    wait_for(
        "both readers to reach the end",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || live.caught_up(&ends) && snapshot.caught_up(&ends),
    )
    .await?;
    let (mut live_map, live_records) = live.finish().await?;
    let (mut snap_map, snap_records) = snapshot.finish().await?;
    live_map.remove(MARKER);
    snap_map.remove(MARKER);
    println!(
        "{written} changes written; live follower read {live_records} records, snapshot reader \
         {snap_records}; {} live rows",
        expected.len()
    );
    ensure!(
        live_map == expected,
        "live follower holds {} rows, expected {} (or values differ)",
        live_map.len(),
        expected.len()
    );
    ensure!(
        snap_map == expected,
        "snapshot reader holds {} rows, expected {} (or values differ)",
        snap_map.len(),
        expected.len()
    );
    ensure!(
        snap_records < live_records,
        "the snapshot reader read {snap_records} records, no fewer than the live follower's \
         {live_records}: it did not read a compacted log"
    );
    Ok(())
}
