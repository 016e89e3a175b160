//! Cleaning throughput benchmark: writes a compacted partition with several rounds of updates to
//! the same keys, then times one full cleaning (every pass) and reports MB/s of log cleaned and
//! memory (the key map and the process's peak resident set during cleaning).
//!
//! Run: `cargo run --release --example clean_bench -- [--keys N] [--rounds R] [--value-bytes B]
//! [--batch N] [--codec none|gzip|snappy|lz4|zstd] [--buffer BYTES]`. Uses a temp dir; no network.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use cairn::config::BrokerConfig;
use cairn::log::cleaner::{Cleaner, CleanerConfig};
use cairn::log::{AppendOrigin, LogManager, LogManagerOptions};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

struct Args {
    keys: usize,
    rounds: usize,
    value_bytes: usize,
    batch: usize,
    codec: Compression,
    buffer: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        keys: 200_000,
        rounds: 5,
        value_bytes: 100,
        batch: 100,
        codec: Compression::None,
        buffer: 128 << 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--keys" => a.keys = value.parse()?,
            "--rounds" => a.rounds = value.parse()?,
            "--value-bytes" => a.value_bytes = value.parse()?,
            "--batch" => a.batch = value.parse::<usize>()?.max(1),
            "--buffer" => a.buffer = value.parse()?,
            "--codec" => {
                a.codec = match value.as_str() {
                    "none" => Compression::None,
                    "gzip" => Compression::Gzip,
                    "snappy" => Compression::Snappy,
                    "lz4" => Compression::Lz4,
                    "zstd" => Compression::Zstd,
                    other => bail!("unknown codec {other}"),
                }
            }
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

/// Peak resident set (VmHWM) in bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn current_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let dir = tempfile::tempdir()?;
    let mut broker = BrokerConfig::default();
    broker.set("log.cleaner.enable", "false")?;
    let log = LogManager::open(LogManagerOptions {
        data_dir: dir.path().to_path_buf(),
        broker,
    })?;
    let overrides: BTreeMap<String, String> = [
        ("cleanup.policy", "compact"),
        ("flush.messages", "1000000000"),
        ("segment.bytes", "67108864"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    log.create_topic("bench", 1, overrides, false)?;
    let p = log.partition("bench", 0).context("partition")?;

    // Values are random letters: compressible about as much as typical text, not trivially.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next_value = move || {
        let bytes: Vec<u8> = (0..args.value_bytes)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                b'a' + (seed % 26) as u8
            })
            .collect();
        Bytes::from(bytes)
    };
    let write_started = Instant::now();
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    for _round in 0..args.rounds {
        let mut k = 0;
        while k < args.keys {
            let n = args.batch.min(args.keys - k);
            let records: Vec<Record> = (0..n)
                .map(|i| Record {
                    transactional: false,
                    control: false,
                    delete_horizon_ms: None,
                    partition_leader_epoch: -1,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: i as i64,
                    sequence: -1,
                    timestamp: ts,
                    key: Some(Bytes::from(format!("key-{:010}", k + i))),
                    value: Some(next_value()),
                    headers: vec![],
                })
                .collect();
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                &records,
                &RecordEncodeOptions {
                    version: 2,
                    compression: args.codec,
                },
            )?;
            p.append(buf.freeze(), AppendOrigin::Client)?;
            k += n;
        }
    }
    p.roll()?;
    let write_secs = write_started.elapsed().as_secs_f64();
    let log_bytes: u64 = p.sealed_segments().iter().map(|s| s.size).sum();

    // Reset the peak-RSS counter (Linux: "5" → clear_refs resets VmHWM) so the peak below is
    // the cleaning's.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = current_rss();
    let config = CleanerConfig {
        dedupe_buffer_size: args.buffer,
        io_max_bytes_per_second: f64::MAX,
        backoff: std::time::Duration::from_secs(15),
    };
    let mut cleaner = Cleaner::new(dir.path(), config);
    let started = Instant::now();
    let now = ts + 1;
    let passes = cleaner.clean_fully(&p, now, true)?;
    let secs = started.elapsed().as_secs_f64();
    let peak = peak_rss();
    let after: u64 = p.sealed_segments().iter().map(|s| s.size).sum();
    let map_bytes = passes.iter().map(|s| s.map_memory_bytes).max().unwrap_or(0);
    let records_read: u64 = passes.iter().map(|s| s.records_read).sum();
    let records_kept: u64 = passes.iter().map(|s| s.records_kept).sum();
    let mb = log_bytes as f64 / 1e6;
    println!(
        "keys={} rounds={} value_bytes={} batch={} codec={} buffer={}",
        args.keys,
        args.rounds,
        args.value_bytes,
        args.batch,
        args.codec.name(),
        args.buffer
    );
    println!("written: {mb:.1} MB in {write_secs:.2} s");
    println!(
        "cleaned: {mb:.1} MB -> {:.1} MB, {records_read} records read, {records_kept} kept, {} pass(es)",
        after as f64 / 1e6,
        passes.len()
    );
    println!(
        "time: {secs:.2} s = {:.1} MB/s of log cleaned ({:.2} M records/s)",
        mb / secs,
        records_read as f64 / 1e6 / secs
    );
    let map_secs: f64 = passes.iter().map(|s| s.map_duration.as_secs_f64()).sum();
    let swap_secs: f64 = passes.iter().map(|s| s.swap_duration.as_secs_f64()).sum();
    let longest_swap = passes
        .iter()
        .map(|s| s.longest_swap.as_secs_f64())
        .fold(0.0, f64::max);
    println!(
        "phases: key map {map_secs:.2} s, rewrite {:.2} s, swaps {swap_secs:.3} s (partition lock held at most {:.1} ms)",
        secs - map_secs - swap_secs,
        longest_swap * 1e3
    );
    println!(
        "memory: key map {:.1} MiB; process RSS {:.1} MiB before, peak {:.1} MiB during cleaning",
        map_bytes as f64 / (1 << 20) as f64,
        rss_before as f64 / (1 << 20) as f64,
        peak as f64 / (1 << 20) as f64
    );
    log.shutdown()?;
    Ok(())
}
