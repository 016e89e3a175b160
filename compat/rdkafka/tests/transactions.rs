//! Exactly-once consume-transform-produce with rdkafka's transactional producer against the real
//! `cairn` process, which is killed with `kill -9` twice during the loop: once between a transaction's
//! first produce and its `send_offsets_to_transaction`, staying down longer than the application waits
//! for that call (where librdkafka 2.x can block without end), so the transaction's records are on disk
//! and must end aborted; once at a random moment, restarted at once. The loop does what a real application does when a call
//! fails or does not return: it aborts the transaction when the error says it is abortable, otherwise
//! drops the producer and creates a new one with the same transactional id (which fences the old one
//! and ends its open transaction), then consumes again from the group's committed offsets. Afterwards
//! the output topic read with `read_committed` holds every input record, transformed, exactly once.
//! Against an external broker (`KAFKA_BOOTSTRAP`) the test prints a skip notice: it must own the
//! process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use cairn_compat_rdkafka::{
    create_topic, idempotent_producer, owned_cairn, produce_ordered, unique_topic, watermarks,
    Cairn, Outgoing,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const PARTITIONS: i32 = 3;
const INPUT: usize = 6_000;
/// Input records per transaction at most.
const BATCH: usize = 100;
/// The transaction (counted from 0) during which the broker is killed after the produce and
/// before `send_offsets_to_transaction`.
const KILL_MID_TXN: usize = 12;
/// How long the broker stays down after that kill: longer than the loop waits for a call.
const DOWN_MID_TXN: Duration = Duration::from_secs(12);
/// Bound on each transactional call; librdkafka's own timeout is not always honoured.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on the whole loop.
const LOOP_DEADLINE: Duration = Duration::from_secs(150);

/// The transformation under test: a prefix and the value in upper case.
fn transform(value: &[u8]) -> Vec<u8> {
    let mut out = b"out:".to_vec();
    out.extend(value.iter().map(u8::to_ascii_uppercase));
    out
}

/// Runs `f` on its own thread and waits at most `timeout` for its result. A call that does not
/// return leaves its thread behind, holding its clone of the producer, which the loop stops using.
fn bounded<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(timeout).ok()
}

/// Why a transaction did not commit, and so how the application recovers.
enum Failure {
    /// librdkafka says the transaction can be aborted and the producer reused.
    Abortable(String),
    /// A fatal error, or a call that did not return: the producer is replaced.
    Replace(String),
}

fn classify(step: &str, res: Option<Result<(), KafkaError>>) -> Result<(), Failure> {
    match res {
        Some(Ok(())) => Ok(()),
        Some(Err(KafkaError::Transaction(e))) if e.txn_requires_abort() => {
            Err(Failure::Abortable(format!("{step}: {e}")))
        }
        Some(Err(e)) => Err(Failure::Replace(format!("{step}: {e}"))),
        None => Err(Failure::Replace(format!(
            "{step}: no answer within {CALL_TIMEOUT:?}"
        ))),
    }
}

fn transactional_producer(bootstrap: &str, txn_id: &str) -> Result<FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", txn_id)
        .set("transaction.timeout.ms", "30000")
        .set("linger.ms", "5")
        .set("socket.timeout.ms", "10000")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "500")
        .create()
        .context("creating transactional producer")
}

/// A new producer with `txn_id` whose `init_transactions` succeeded (retried while the broker
/// restarts). Its InitProducerId fences every earlier producer with the same id.
fn ready_producer(bootstrap: &str, txn_id: &str, deadline: Instant) -> Result<FutureProducer> {
    loop {
        let producer = transactional_producer(bootstrap, txn_id)?;
        let p = producer.clone();
        match bounded(CALL_TIMEOUT, move || p.init_transactions(CALL_TIMEOUT)) {
            Some(Ok(())) => return Ok(producer),
            other => {
                let why = match other {
                    Some(Err(e)) => e.to_string(),
                    _ => "no answer".to_string(),
                };
                println!("init_transactions failed ({why}); creating the producer again");
                std::thread::spawn(move || drop(producer));
            }
        }
        if Instant::now() > deadline {
            bail!(
                "no producer with transactional id {txn_id} could initialise before the deadline"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A read_committed consumer in `group`, assigned every input partition at the group's committed
/// offset (0 when nothing is committed), and those offsets.
fn positioned_consumer(
    bootstrap: &str,
    group: &str,
    topic: &str,
    deadline: Instant,
) -> Result<(BaseConsumer, Vec<i64>)> {
    loop {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "false")
            .set("socket.timeout.ms", "10000")
            .create()
            .context("creating consumer")?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(topic, p);
        }
        match consumer.committed_offsets(tpl, CALL_TIMEOUT) {
            Ok(committed) => {
                let mut pos = vec![0; PARTITIONS as usize];
                let mut assign = TopicPartitionList::new();
                for e in committed.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        pos[e.partition() as usize] = o;
                    }
                    let at = pos[e.partition() as usize];
                    assign.add_partition_offset(topic, e.partition(), Offset::Offset(at))?;
                }
                consumer.assign(&assign)?;
                return Ok((consumer, pos));
            }
            Err(e) => println!("reading the committed offsets failed ({e}); trying again"),
        }
        if Instant::now() > deadline {
            bail!("the committed offsets of {group} could not be read before the deadline");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One polled input record.
struct InputRec {
    partition: i32,
    offset: i64,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// Up to `BATCH` records, waiting briefly for more once some arrived.
fn poll_batch(consumer: &BaseConsumer) -> Vec<InputRec> {
    let mut batch = Vec::new();
    let started = Instant::now();
    while batch.len() < BATCH && started.elapsed() < Duration::from_secs(1) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => batch.push(InputRec {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().unwrap_or_default().to_vec(),
                value: m.payload().unwrap_or_default().to_vec(),
            }),
            // Transport errors while the broker is down: librdkafka reconnects by itself.
            Some(Err(_)) => {}
            None if !batch.is_empty() => break,
            None => {}
        }
    }
    batch
}

/// What the loop went through, for the test's output.
#[derive(Debug, Default)]
struct Stats {
    committed: usize,
    aborted: usize,
    producers_replaced: usize,
}

/// Kills the broker and starts it again on the same data directory and port.
fn kill_and_restart(cairn: &Mutex<Cairn>, when: &str) -> Result<()> {
    let mut cairn = cairn.lock().expect("not poisoned");
    cairn.kill9()?;
    println!("kill -9 {when}");
    cairn.restart()
}

/// The consume-transform-produce loop, until the group's committed offsets reach `ends`.
fn run_loop(
    bootstrap: &str,
    input: &str,
    output: &str,
    ends: &[i64],
    cairn: &Arc<Mutex<Cairn>>,
) -> Result<Stats> {
    let deadline = Instant::now() + LOOP_DEADLINE;
    let group = unique_topic("eos-group");
    let txn_id = unique_topic("eos-txn");
    let mut stats = Stats::default();
    let mut producer = ready_producer(bootstrap, &txn_id, deadline)?;
    let (mut consumer, mut pos) = positioned_consumer(bootstrap, &group, input, deadline)?;
    let kill_random_at = KILL_MID_TXN + 15 + fastrand::usize(0..10);
    let mut killer = None;
    let mut restarter = None;
    let mut kill_mid_txn = || -> Result<(), String> {
        cairn
            .lock()
            .expect("not poisoned")
            .kill9()
            .map_err(|e| e.to_string())?;
        println!(
            "kill -9 between the produce and send_offsets_to_transaction, down for {DOWN_MID_TXN:?}"
        );
        let cairn = cairn.clone();
        restarter = Some(std::thread::spawn(move || {
            std::thread::sleep(DOWN_MID_TXN);
            cairn.lock().expect("not poisoned").restart()
        }));
        Ok(())
    };
    let mut txn_no = 0;
    while pos.as_slice() != ends {
        ensure!(
            Instant::now() < deadline,
            "the loop did not finish within {LOOP_DEADLINE:?}: at {pos:?} of {ends:?}, {stats:?}"
        );
        let batch = poll_batch(&consumer);
        if batch.is_empty() {
            continue;
        }
        let mut next = pos.clone();
        for r in &batch {
            ensure!(
                r.offset >= pos[r.partition as usize],
                "partition {} returned offset {} before the position {}",
                r.partition,
                r.offset,
                pos[r.partition as usize]
            );
            next[r.partition as usize] = r.offset + 1;
        }
        if txn_no == kill_random_at {
            // A kill at a random moment of this or the following transactions.
            let cairn = cairn.clone();
            let delay = Duration::from_millis(fastrand::u64(0..60));
            killer = Some(std::thread::spawn(move || {
                std::thread::sleep(delay);
                kill_and_restart(
                    &cairn,
                    &format!("{delay:?} after transaction {txn_no} began"),
                )
            }));
        }
        let outcome = transaction(
            &producer,
            &consumer,
            output,
            input,
            &batch,
            &next,
            if txn_no == KILL_MID_TXN {
                Some(&mut kill_mid_txn)
            } else {
                None
            },
        );
        txn_no += 1;
        match outcome {
            Ok(()) => {
                stats.committed += 1;
                pos = next;
                continue;
            }
            Err(Failure::Abortable(why)) => {
                let p = producer.clone();
                match classify(
                    "abort_transaction",
                    bounded(CALL_TIMEOUT, move || p.abort_transaction(CALL_TIMEOUT)),
                ) {
                    Ok(()) => {
                        println!("transaction {txn_no} aborted after: {why}");
                        stats.aborted += 1;
                    }
                    Err(Failure::Abortable(e) | Failure::Replace(e)) => {
                        println!("abort failed ({e}) after: {why}; replacing the producer");
                        replace(&mut producer, bootstrap, &txn_id, deadline, &mut stats)?;
                    }
                }
            }
            Err(Failure::Replace(why)) => {
                println!("transaction {txn_no} failed: {why}; replacing the producer");
                replace(&mut producer, bootstrap, &txn_id, deadline, &mut stats)?;
            }
        }
        // Consume again from what the group committed (the failed transaction's offsets are either
        // committed with its output or not at all).
        (consumer, pos) = positioned_consumer(bootstrap, &group, input, deadline)?;
    }
    if let Some(r) = restarter {
        r.join().expect("restarter thread panicked")?;
    }
    if let Some(k) = killer {
        k.join().expect("killer thread panicked")?;
    }
    Ok(stats)
}

fn replace(
    producer: &mut FutureProducer,
    bootstrap: &str,
    txn_id: &str,
    deadline: Instant,
    stats: &mut Stats,
) -> Result<()> {
    let old = std::mem::replace(producer, ready_producer(bootstrap, txn_id, deadline)?);
    // Dropping may wait on librdkafka; a stuck call's thread may still hold a clone.
    std::thread::spawn(move || drop(old));
    stats.producers_replaced += 1;
    Ok(())
}

/// One transaction: the batch transformed into `output`, the consumer's next offsets sent, commit.
/// With `kill`, it is called after the produce (flushed), before the offsets are sent.
fn transaction(
    producer: &FutureProducer,
    consumer: &BaseConsumer,
    output: &str,
    input: &str,
    batch: &[InputRec],
    next: &[i64],
    kill: Option<&mut dyn FnMut() -> Result<(), String>>,
) -> Result<(), Failure> {
    let p = producer.clone();
    classify(
        "begin_transaction",
        bounded(CALL_TIMEOUT, move || p.begin_transaction()),
    )?;
    for r in batch {
        let value = transform(&r.value);
        let rec = FutureRecord::to(output).key(&r.key).payload(&value);
        // Delivery failures surface in commit_transaction.
        if let Err((e, _)) = producer.send_result(rec) {
            return Err(Failure::Abortable(format!("produce: {e}")));
        }
    }
    if let Some(kill) = kill {
        // Let the produce requests reach the broker, then kill it.
        let _ = producer.flush(Duration::from_secs(5));
        kill().map_err(|e| Failure::Replace(format!("kill: {e}")))?;
    }
    let mut offsets = TopicPartitionList::new();
    for (p, &o) in next.iter().enumerate() {
        offsets
            .add_partition_offset(input, p as i32, Offset::Offset(o))
            .map_err(|e| Failure::Replace(format!("offsets: {e}")))?;
    }
    let meta = consumer
        .group_metadata()
        .ok_or_else(|| Failure::Replace("the consumer has no group metadata".into()))?;
    let p = producer.clone();
    classify(
        "send_offsets_to_transaction",
        bounded(CALL_TIMEOUT, move || {
            p.send_offsets_to_transaction(&offsets, &meta, CALL_TIMEOUT)
        }),
    )?;
    let p = producer.clone();
    classify(
        "commit_transaction",
        bounded(CALL_TIMEOUT, move || p.commit_transaction(CALL_TIMEOUT)),
    )
}

/// Every record of `topic` a consumer with `isolation` (`read_committed` or `read_uncommitted`)
/// sees, until each partition reports its end.
fn read_output(bootstrap: &str, topic: &str, isolation: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique_topic("eos-check"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut at_end = vec![false; PARTITIONS as usize];
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !at_end.iter().all(|e| *e) {
        ensure!(
            Instant::now() < deadline,
            "reading {topic} with {isolation} did not reach the end of every partition: \
             {at_end:?}, {} records",
            out.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push((
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            )),
            Some(Err(KafkaError::PartitionEOF(p))) => at_end[p as usize] = true,
            Some(Err(e)) => bail!("reading {topic}: {e}"),
            None => {}
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_transform_produce_is_exactly_once_across_kill9() -> Result<()> {
    let test = "consume_transform_produce_is_exactly_once_across_kill9";
    let Some(cairn) = owned_cairn(test, &[])? else {
        return Ok(());
    };
    let bootstrap = cairn.bootstrap();
    let input = unique_topic("eos-in");
    let output = unique_topic("eos-out");
    create_topic(&bootstrap, &input, PARTITIONS, &[]).await?;
    create_topic(&bootstrap, &output, PARTITIONS, &[]).await?;

    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..INPUT)
        .map(|i| {
            (
                format!("k-{i:06}").into_bytes(),
                format!("value-{i}-{}", "x".repeat(i % 30)).into_bytes(),
            )
        })
        .collect();
    let producer = idempotent_producer(&bootstrap, &[])?;
    produce_ordered(
        &producer,
        &input,
        records.iter().map(|(k, v)| Outgoing {
            key: k.clone(),
            value: Some(v.clone()),
            partition: None,
            timestamp: None,
        }),
        Duration::from_secs(30),
    )
    .await?;
    drop(producer);
    let ends: Vec<i64> = watermarks(&bootstrap, &input, PARTITIONS)?
        .into_iter()
        .map(|(_, high)| high)
        .collect();
    ensure!(
        ends.iter().sum::<i64>() == INPUT as i64,
        "input watermarks {ends:?} do not add up to {INPUT}"
    );

    let cairn = Arc::new(Mutex::new(cairn));
    let stats = {
        let (bootstrap, input, output, ends, cairn) = (
            bootstrap.clone(),
            input.clone(),
            output.clone(),
            ends.clone(),
            cairn.clone(),
        );
        tokio::task::spawn_blocking(move || run_loop(&bootstrap, &input, &output, &ends, &cairn))
            .await
            .context("the loop panicked")?
    };
    let stats = match stats {
        Ok(s) => s,
        Err(e) => bail!(
            "{e:#}; broker log tail:\n{}",
            cairn.lock().expect("not poisoned").log_tail()
        ),
    };
    println!("{stats:?}");

    let got = tokio::task::spawn_blocking({
        let (bootstrap, output) = (bootstrap.clone(), output.clone());
        move || read_output(&bootstrap, &output, "read_committed")
    })
    .await
    .context("the reader panicked")??;
    let uncommitted = tokio::task::spawn_blocking({
        let (bootstrap, output) = (bootstrap.clone(), output.clone());
        move || read_output(&bootstrap, &output, "read_uncommitted")
    })
    .await
    .context("the reader panicked")??;
    println!(
        "output: {} records read_committed, {} read_uncommitted",
        got.len(),
        uncommitted.len()
    );
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    let expected: HashMap<&[u8], Vec<u8>> = records
        .iter()
        .map(|(k, v)| (k.as_slice(), transform(v)))
        .collect();
    for (k, v) in &got {
        let Some(want) = expected.get(k.as_slice()) else {
            bail!(
                "output has key {:?} that is not in the input",
                String::from_utf8_lossy(k)
            );
        };
        ensure!(
            v == want,
            "output key {:?} has value {:?}, expected {:?}",
            String::from_utf8_lossy(k),
            String::from_utf8_lossy(v),
            String::from_utf8_lossy(want)
        );
        *seen.entry(k.clone()).or_default() += 1;
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    ensure!(
        duplicated.is_empty(),
        "{} output keys appear more than once with read_committed, e.g. {:?}",
        seen.values().filter(|n| **n > 1).count(),
        duplicated
            .iter()
            .map(|(k, n)| (String::from_utf8_lossy(k), **n))
            .collect::<Vec<_>>()
    );
    ensure!(
        seen.len() == INPUT && got.len() == INPUT,
        "read_committed output holds {} records for {} distinct keys, expected each of the {INPUT} \
         input records once ({:?})",
        got.len(),
        seen.len(),
        stats
    );
    // The transaction cut by the long kill had its records acknowledged before the kill: they are
    // in the log, and only the aborted-transaction filtering kept them out of the checks above.
    ensure!(
        stats.producers_replaced + stats.aborted > 0 && uncommitted.len() > INPUT,
        "the kill between produce and send_offsets left no aborted records in the output \
         ({} read_uncommitted, {stats:?}): the test did not exercise recovery",
        uncommitted.len()
    );
    Ok(())
}
