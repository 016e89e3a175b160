//! Produce and consume with rdkafka: 100,000 keyed records per compression codec with idempotence and
//! acks=all, read back exactly; seeks by offset and by timestamp (`offsets_for_times`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use cairn_compat_rdkafka::{
    base_consumer_config, create_topic, idempotent_producer, produce_ordered, read_all,
    unique_topic, watermarks, Acked, Broker, Outgoing, REQUEST_TIMEOUT,
};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

const RECORDS: usize = 100_000;
const PARTITIONS: i32 = 3;

fn value_for(codec: &str, i: usize) -> Vec<u8> {
    // Varied but compressible: a header unique to the record and a filler whose length varies.
    let filler = "abcdefghij".repeat(i % 9);
    format!(
        "value-{codec}-{i:07}-{filler}-{}",
        i.wrapping_mul(2_654_435_761) % 1_000_003
    )
    .into_bytes()
}

async fn roundtrip(codec: &str) -> Result<()> {
    let broker = Broker::start(&[])?;
    let bootstrap = broker.bootstrap();
    let topic = unique_topic(&format!("codec-{codec}"));
    create_topic(&bootstrap, &topic, PARTITIONS, &[]).await?;

    let started = Instant::now();
    let producer = idempotent_producer(&bootstrap, &[("compression.type", codec)])?;
    let outgoing = (0..RECORDS).map(|i| Outgoing {
        key: format!("key-{i:07}").into_bytes(),
        value: Some(value_for(codec, i)),
        partition: None,
        timestamp: None,
    });
    let acked = produce_ordered(&producer, &topic, outgoing, Duration::from_secs(60)).await?;
    let produced_in = started.elapsed();

    // Per partition, in produce order: the acknowledged offsets must be 0, 1, 2, ...
    let mut per_partition: BTreeMap<i32, Vec<&Acked>> = BTreeMap::new();
    for a in &acked {
        per_partition.entry(a.partition).or_default().push(a);
    }
    ensure!(
        per_partition.len() == PARTITIONS as usize,
        "keys should spread over all {PARTITIONS} partitions, got {:?}",
        per_partition.keys().collect::<Vec<_>>()
    );
    for (p, recs) in &per_partition {
        for (i, a) in recs.iter().enumerate() {
            ensure!(
                a.offset == i as i64,
                "{codec}: partition {p}: record #{i} in produce order was acknowledged at offset {}",
                a.offset
            );
        }
    }

    let marks = watermarks(&bootstrap, &topic, PARTITIONS)?;
    for (p, (low, high)) in marks.iter().enumerate() {
        let expected = per_partition[&(p as i32)].len() as i64;
        ensure!(
            *low == 0 && *high == expected,
            "{codec}: partition {p} watermarks ({low}, {high}), expected (0, {expected})"
        );
    }

    let read = read_all(&bootstrap, &topic, PARTITIONS, Duration::from_secs(60)).await?;
    for (p, got) in &read {
        let want = &per_partition[p];
        ensure!(
            got.len() == want.len(),
            "{codec}: partition {p}: read {} records, produced {}",
            got.len(),
            want.len()
        );
        for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
            ensure!(
                g.offset == i as i64,
                "{codec}: partition {p}: record #{i} read at offset {}",
                g.offset
            );
            ensure!(
                g.rec.key == w.rec.key && g.rec.value == w.rec.value,
                "{codec}: partition {p} offset {}: read key {:?}, expected key {:?} (or value differs)",
                g.offset,
                g.rec.key.as_deref().map(String::from_utf8_lossy),
                w.rec.key.as_deref().map(String::from_utf8_lossy)
            );
        }
    }
    println!(
        "{codec}: {RECORDS} records produced in {produced_in:?}, read back exactly in {:?} total",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codec_none_roundtrip() -> Result<()> {
    roundtrip("none").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codec_gzip_roundtrip() -> Result<()> {
    roundtrip("gzip").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codec_snappy_roundtrip() -> Result<()> {
    roundtrip("snappy").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codec_lz4_roundtrip() -> Result<()> {
    roundtrip("lz4").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codec_zstd_roundtrip() -> Result<()> {
    roundtrip("zstd").await
}

/// Records 0..N with timestamps T0, T0+10, T0+20, ... on one partition.
const SEEK_RECORDS: i64 = 2_000;
const STEP_MS: i64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_by_offset_and_timestamp() -> Result<()> {
    let broker = Broker::start(&[])?;
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("seek");
    create_topic(&bootstrap, &topic, 1, &[]).await?;

    // Timestamps in the recent past so no broker treats them as out of range.
    let t0 = chrono_now_ms() - 3_600_000;
    let producer = idempotent_producer(&bootstrap, &[])?;
    let outgoing = (0..SEEK_RECORDS).map(|i| Outgoing {
        key: format!("k{i}").into_bytes(),
        value: Some(format!("v{i}").into_bytes()),
        partition: Some(0),
        timestamp: Some(t0 + i * STEP_MS),
    });
    let acked = produce_ordered(&producer, &topic, outgoing, Duration::from_secs(30)).await?;
    ensure!(acked.iter().enumerate().all(|(i, a)| a.offset == i as i64));

    // Seek by offset: assign at an explicit offset; the first record is that offset.
    for start in [0, 1, 777, SEEK_RECORDS - 1] {
        let c: StreamConsumer = base_consumer_config(&bootstrap).create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(start))?;
        c.assign(&tpl)?;
        let m = tokio::time::timeout(REQUEST_TIMEOUT, c.recv())
            .await
            .with_context(|| format!("no record after assigning at offset {start}"))??;
        ensure!(
            m.offset() == start,
            "assigned at {start}, first record at {}",
            m.offset()
        );
        ensure!(m.key() == Some(format!("k{start}").as_bytes()));
        ensure!(
            m.timestamp().to_millis() == Some(t0 + start * STEP_MS),
            "offset {start}: timestamp {:?}, produced {}",
            m.timestamp().to_millis(),
            t0 + start * STEP_MS
        );
        // A seek on the running consumer moves it too.
        let back = start / 2;
        c.seek(&topic, 0, Offset::Offset(back), REQUEST_TIMEOUT)?;
        let m = tokio::time::timeout(REQUEST_TIMEOUT, c.recv())
            .await
            .context("no record after seek")??;
        ensure!(
            m.offset() == back,
            "after seek to {back}, first record at {}",
            m.offset()
        );
    }

    // Seek by timestamp: the first offset whose timestamp is >= T.
    let c: StreamConsumer = base_consumer_config(&bootstrap).create()?;
    let cases: [(i64, i64); 6] = [
        (t0 - 1_000, 0),                                       // before everything: offset 0
        (t0, 0),                                               // exact first
        (t0 + 500 * STEP_MS, 500),                             // exact match
        (t0 + 500 * STEP_MS + 1, 501),                         // between two records
        (t0 + (SEEK_RECORDS - 1) * STEP_MS, SEEK_RECORDS - 1), // exact last
        (t0 + 1234 * STEP_MS - 3, 1234),
    ];
    for (ts, want) in cases {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(ts))?;
        let res = c.offsets_for_times(tpl, REQUEST_TIMEOUT)?;
        let got = res
            .find_partition(&topic, 0)
            .context("partition missing from offsets_for_times")?;
        ensure!(
            got.error().is_ok(),
            "offsets_for_times({ts}): {:?}",
            got.error()
        );
        ensure!(
            got.offset() == Offset::Offset(want),
            "offsets_for_times(T0{:+}) = {:?}, expected offset {want}",
            ts - t0,
            got.offset()
        );
        // And a consumer assigned there starts at that record.
        let cc: StreamConsumer = base_consumer_config(&bootstrap).create()?;
        let mut at = TopicPartitionList::new();
        at.add_partition_offset(&topic, 0, got.offset())?;
        cc.assign(&at)?;
        let m = tokio::time::timeout(REQUEST_TIMEOUT, cc.recv())
            .await
            .context("no record at the offset found by timestamp")??;
        ensure!(m.offset() == want);
        ensure!(m.timestamp().to_millis().is_some_and(|t| t >= ts));
    }
    // A timestamp past the last record: no such offset, reported as the end (-1).
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(
        &topic,
        0,
        Offset::Offset(t0 + SEEK_RECORDS * STEP_MS + 60_000),
    )?;
    let res = c.offsets_for_times(tpl, REQUEST_TIMEOUT)?;
    let got = res.find_partition(&topic, 0).context("partition missing")?;
    ensure!(
        got.offset() == Offset::End,
        "offsets_for_times past the end = {:?}, expected End (-1)",
        got.offset()
    );
    Ok(())
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}
