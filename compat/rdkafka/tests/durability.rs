//! Restart and crash tests with rdkafka against the real `cairn` process: a clean SIGTERM stop keeps
//! every record at its offset; `kill -9` during acks=all production from several producers loses no
//! acknowledged record, moves none, duplicates none, and production continues after restart.
//! Against an external broker (`KAFKA_BOOTSTRAP`) these tests print a skip notice: they must own the
//! process.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use cairn_compat_rdkafka::{
    create_topic, idempotent_producer, owned_cairn, produce_ordered, read_all, unique_topic,
    watermarks, Acked, Fetched, Outgoing, Rec,
};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureRecord};

const PARTITIONS: i32 = 3;

fn keyed(prefix: &str, range: std::ops::Range<usize>) -> impl Iterator<Item = Outgoing> + '_ {
    range.map(move |i| Outgoing {
        key: format!("{prefix}-{i:06}").into_bytes(),
        value: Some(format!("{prefix}-value-{i}-{}", "z".repeat(i % 40)).into_bytes()),
        partition: None,
        timestamp: None,
    })
}

/// Every acknowledged record is in `read` at its acknowledged offset with its key and value.
fn check_acked_present(acked: &[Acked], read: &BTreeMap<i32, Vec<Fetched>>) -> Result<()> {
    let by_offset: HashMap<(i32, i64), &Rec> = read
        .iter()
        .flat_map(|(p, v)| v.iter().map(move |f| ((*p, f.offset), &f.rec)))
        .collect();
    for a in acked {
        let Some(got) = by_offset.get(&(a.partition, a.offset)) else {
            bail!(
                "acknowledged record {:?} at partition {} offset {} is missing",
                a.rec.key.as_deref().map(String::from_utf8_lossy),
                a.partition,
                a.offset
            );
        };
        ensure!(
            got.key == a.rec.key && got.value == a.rec.value,
            "partition {} offset {}: acknowledged key {:?} but read key {:?} (or the value differs)",
            a.partition,
            a.offset,
            a.rec.key.as_deref().map(String::from_utf8_lossy),
            got.key.as_deref().map(String::from_utf8_lossy)
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_sigterm_keeps_offsets_and_continues() -> Result<()> {
    let Some(mut cairn) = owned_cairn("restart_after_sigterm_keeps_offsets_and_continues", &[])?
    else {
        return Ok(());
    };
    let bootstrap = cairn.bootstrap();
    let topic = unique_topic("restart");
    create_topic(&bootstrap, &topic, PARTITIONS, &[]).await?;

    let producer = idempotent_producer(&bootstrap, &[])?;
    let first = produce_ordered(
        &producer,
        &topic,
        keyed("a", 0..5_000),
        Duration::from_secs(30),
    )
    .await?;
    drop(producer);
    let counts_before: Vec<i64> = (0..PARTITIONS)
        .map(|p| first.iter().filter(|a| a.partition == p).count() as i64)
        .collect();

    let status = cairn.terminate()?;
    ensure!(
        status.success(),
        "cairn exited with {status} after SIGTERM, expected 0; log tail:\n{}",
        cairn.log_tail()
    );
    cairn.restart()?;

    let marks = watermarks(&bootstrap, &topic, PARTITIONS)?;
    for (p, (low, high)) in marks.iter().enumerate() {
        ensure!(
            (*low, *high) == (0, counts_before[p]),
            "after restart partition {p} has watermarks ({low}, {high}), expected (0, {})",
            counts_before[p]
        );
    }
    let read = read_all(&bootstrap, &topic, PARTITIONS, Duration::from_secs(30)).await?;
    check_acked_present(&first, &read)?;
    let total: usize = read.values().map(Vec::len).sum();
    ensure!(
        total == first.len(),
        "read {total} records after restart, produced {}",
        first.len()
    );

    // Production continues where it stopped: new offsets follow the old ones in each partition.
    let producer = idempotent_producer(&bootstrap, &[])?;
    let second = produce_ordered(
        &producer,
        &topic,
        keyed("b", 0..500),
        Duration::from_secs(30),
    )
    .await?;
    for p in 0..PARTITIONS {
        let offsets: Vec<i64> = second
            .iter()
            .filter(|a| a.partition == p)
            .map(|a| a.offset)
            .collect();
        let expected: Vec<i64> =
            (counts_before[p as usize]..counts_before[p as usize] + offsets.len() as i64).collect();
        ensure!(
            offsets == expected,
            "partition {p}: offsets after restart {:?}..., expected to continue from {}",
            &offsets[..offsets.len().min(5)],
            counts_before[p as usize]
        );
    }
    let read = read_all(&bootstrap, &topic, PARTITIONS, Duration::from_secs(30)).await?;
    check_acked_present(&first, &read)?;
    check_acked_present(&second, &read)?;
    Ok(())
}

/// How many kill -9 cycles to run (`CRASH_CYCLES`, default 3).
fn crash_cycles() -> usize {
    std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
}

const WRITERS: usize = 3;
const IN_FLIGHT: usize = 500;

/// Records one delivery report: acknowledged (with its offset) or failed.
fn settle<E>(
    rec: Rec,
    res: Result<OwnedDeliveryResult, E>,
    acked: &mut Vec<Acked>,
    failed: &mut usize,
    acked_total: &AtomicUsize,
) {
    match res {
        Ok(Ok(d)) => {
            acked.push(Acked {
                partition: d.partition,
                offset: d.offset,
                rec,
            });
            acked_total.fetch_add(1, Ordering::Relaxed);
        }
        _ => *failed += 1,
    }
}

/// One producer task: sends unique keyed records until `stop`, then waits for every outstanding
/// delivery (success or failure) and returns the acknowledged ones.
async fn writer(
    bootstrap: String,
    topic: String,
    cycle: usize,
    w: usize,
    stop: Arc<AtomicBool>,
    acked_total: Arc<AtomicUsize>,
) -> Result<(Vec<Acked>, usize)> {
    let producer = idempotent_producer(
        &bootstrap,
        &[
            ("message.timeout.ms", "20000"),
            ("reconnect.backoff.ms", "50"),
            ("reconnect.backoff.max.ms", "500"),
        ],
    )?;
    let mut pending: VecDeque<(Rec, DeliveryFuture)> = VecDeque::new();
    let mut acked = Vec::new();
    let mut failed = 0;
    let mut seq = 0usize;
    while !stop.load(Ordering::Relaxed) {
        if pending.len() >= IN_FLIGHT {
            let (rec, f) = pending.pop_front().expect("non-empty");
            let res = tokio::time::timeout(Duration::from_secs(60), f)
                .await
                .context("delivery report not within 60 s")?;
            settle(rec, res, &mut acked, &mut failed, &acked_total);
            continue;
        }
        let key = format!("c{cycle}-w{w}-{seq:07}").into_bytes();
        let value = format!("value c{cycle} w{w} #{seq} {}", "p".repeat(seq % 64)).into_bytes();
        seq += 1;
        let fr = FutureRecord::to(&topic).key(&key).payload(&value);
        match producer.send_result(fr) {
            Ok(f) => pending.push_back((
                Rec {
                    key: Some(key),
                    value: Some(value),
                    timestamp: None,
                },
                f,
            )),
            Err(_) => {
                failed += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        if seq.is_multiple_of(50) {
            tokio::task::yield_now().await;
        }
    }
    while let Some((rec, f)) = pending.pop_front() {
        let res = tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .context("delivery report not within 60 s")?;
        settle(rec, res, &mut acked, &mut failed, &acked_total);
    }
    Ok((acked, failed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_acks_all_production_loses_no_acknowledged_record() -> Result<()> {
    let test = "kill9_during_acks_all_production_loses_no_acknowledged_record";
    let Some(mut cairn) = owned_cairn(test, &[])? else {
        return Ok(());
    };
    let bootstrap = cairn.bootstrap();
    let topic = unique_topic("crash");
    // Small segments, so kills also land around segment rolls and recovery spans many segments.
    create_topic(
        &bootstrap,
        &topic,
        PARTITIONS,
        &[("segment.bytes", "1048576")],
    )
    .await?;

    let all_acked: Arc<Mutex<Vec<Acked>>> = Arc::new(Mutex::new(Vec::new()));
    for cycle in 0..crash_cycles() {
        let stop = Arc::new(AtomicBool::new(false));
        let acked_total = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                tokio::spawn(writer(
                    bootstrap.clone(),
                    topic.clone(),
                    cycle,
                    w,
                    stop.clone(),
                    acked_total.clone(),
                ))
            })
            .collect();

        // Kill while production is under way: after some acknowledgements, at a random moment.
        let started = Instant::now();
        while acked_total.load(Ordering::Relaxed) < 500 {
            ensure!(
                started.elapsed() < Duration::from_secs(30),
                "cycle {cycle}: fewer than 500 acknowledgements within 30 s; log tail:\n{}",
                cairn.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..1_000))).await;
        cairn.kill9()?;
        stop.store(true, Ordering::Relaxed);
        let at_kill = acked_total.load(Ordering::Relaxed);
        cairn.restart()?;

        let (mut acked_now, mut failed) = (0, 0);
        for t in tasks {
            let (a, f) = tokio::time::timeout(Duration::from_secs(90), t)
                .await
                .context("a producer task did not finish within 90 s")???;
            acked_now += a.len();
            failed += f;
            all_acked.lock().expect("not poisoned").extend(a);
        }
        println!(
            "cycle {cycle}: {at_kill} acknowledged before kill -9, {acked_now} in total, {failed} failed"
        );

        // Every acknowledged record, from this cycle and earlier ones, is at its offset; no key is
        // stored twice; no two acknowledgements share an offset.
        let acked = all_acked.lock().expect("not poisoned").clone();
        let read = read_all(&bootstrap, &topic, PARTITIONS, Duration::from_secs(60)).await?;
        check_acked_present(&acked, &read)?;
        let mut seen_offsets = HashMap::new();
        for a in &acked {
            if let Some(prev) = seen_offsets.insert((a.partition, a.offset), &a.rec.key) {
                bail!(
                    "two records acknowledged at partition {} offset {}: {:?} and {:?}",
                    a.partition,
                    a.offset,
                    prev.as_deref().map(String::from_utf8_lossy),
                    a.rec.key.as_deref().map(String::from_utf8_lossy)
                );
            }
        }
        let mut key_at: HashMap<&[u8], (i32, i64)> = HashMap::new();
        for (p, recs) in &read {
            for f in recs {
                let key = f.rec.key.as_deref().unwrap_or_default();
                if let Some(first) = key_at.insert(key, (*p, f.offset)) {
                    bail!(
                        "key {:?} stored twice: at {first:?} and at ({p}, {}) (an idempotent retry \
                         was appended again)",
                        String::from_utf8_lossy(key),
                        f.offset
                    );
                }
            }
        }

        // Production continues after the restart, after everything acknowledged so far.
        let max_before: Vec<i64> = (0..PARTITIONS)
            .map(|p| read.get(&p).and_then(|v| v.last()).map_or(-1, |f| f.offset))
            .collect();
        let producer = idempotent_producer(&bootstrap, &[])?;
        let prefix = format!("after-c{cycle}");
        let more = produce_ordered(
            &producer,
            &topic,
            keyed(&prefix, 0..300),
            Duration::from_secs(30),
        )
        .await?;
        for a in &more {
            ensure!(
                a.offset > max_before[a.partition as usize],
                "cycle {cycle}: new record at partition {} offset {} is not after {}",
                a.partition,
                a.offset,
                max_before[a.partition as usize]
            );
        }
        all_acked.lock().expect("not poisoned").extend(more);
    }
    let acked = all_acked.lock().expect("not poisoned").clone();
    let read = read_all(&bootstrap, &topic, PARTITIONS, Duration::from_secs(60)).await?;
    check_acked_present(&acked, &read)?;
    Ok(())
}
