//! Consumer groups with rdkafka: three members split a 6-partition topic; a member that leaves or is
//! killed gives its partitions to the others; committed offsets resume exactly; commits survive a
//! restart of Cairn.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use cairn_compat_rdkafka::{
    base_consumer_config, create_topic, group_consumer_config, idempotent_producer, owned_cairn,
    produce_ordered, unique_topic, wait_for, watermarks, Broker, Outgoing, REQUEST_TIMEOUT,
    SESSION_TIMEOUT_MS,
};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// When a member commits: given how many records it has received so far (this one included).
type CommitPolicy = fn(usize) -> bool;

/// A group member in this process, driven by its own task.
struct Member {
    assignment: Arc<Mutex<BTreeSet<i32>>>,
    /// (partition, offset) of every record received, in order.
    received: Arc<Mutex<Vec<(i32, i64)>>>,
    /// Per partition, the offset this member last committed (next offset to read).
    committed: Arc<Mutex<BTreeMap<i32, i64>>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<()>>,
}

impl Member {
    fn spawn(bootstrap: &str, group: &str, topic: &str, commit: CommitPolicy) -> Result<Member> {
        let consumer: StreamConsumer = group_consumer_config(bootstrap, group).create()?;
        consumer.subscribe(&[topic])?;
        let assignment = Arc::new(Mutex::new(BTreeSet::new()));
        let received = Arc::new(Mutex::new(Vec::new()));
        let committed = Arc::new(Mutex::new(BTreeMap::new()));
        let (stop, mut stopped) = watch::channel(false);
        let (a, r, c) = (assignment.clone(), received.clone(), committed.clone());
        let task = tokio::spawn(async move {
            while !*stopped.borrow() {
                tokio::select! {
                    _ = stopped.changed() => break,
                    m = tokio::time::timeout(Duration::from_millis(100), consumer.recv()) => {
                        if let Ok(Ok(m)) = m {
                            let n = {
                                let mut r = r.lock().expect("not poisoned");
                                r.push((m.partition(), m.offset()));
                                r.len()
                            };
                            if commit(n) {
                                tokio::task::block_in_place(|| {
                                    consumer.commit_message(&m, CommitMode::Sync)
                                })
                                .context("synchronous commit")?;
                                c.lock()
                                    .expect("not poisoned")
                                    .insert(m.partition(), m.offset() + 1);
                            }
                        }
                    }
                }
                let now: BTreeSet<i32> = consumer
                    .assignment()
                    .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
                    .unwrap_or_default();
                *a.lock().expect("not poisoned") = now;
            }
            // Dropping the consumer closes it: it leaves the group.
            tokio::task::block_in_place(move || drop(consumer));
            Ok(())
        });
        Ok(Member {
            assignment,
            received,
            committed,
            stop,
            task,
        })
    }

    fn assignment(&self) -> BTreeSet<i32> {
        self.assignment.lock().expect("not poisoned").clone()
    }

    fn received(&self) -> Vec<(i32, i64)> {
        self.received.lock().expect("not poisoned").clone()
    }

    /// Stops the member and closes its consumer (LeaveGroup).
    async fn close(self) -> Result<(Vec<(i32, i64)>, BTreeMap<i32, i64>)> {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .context("member did not close within 30 s")???;
        let received = self.received.lock().expect("not poisoned").clone();
        let committed = self.committed.lock().expect("not poisoned").clone();
        Ok((received, committed))
    }
}

/// A group member in a child process (`group-member`), killed with SIGKILL by the test.
struct ChildMember {
    child: Child,
    assignment: Arc<Mutex<BTreeSet<i32>>>,
}

impl ChildMember {
    fn spawn(bootstrap: &str, group: &str, topic: &str) -> Result<ChildMember> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_group-member"))
            .args([bootstrap, group, topic])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning group-member")?;
        let stdout = child.stdout.take().context("child stdout")?;
        let assignment = Arc::new(Mutex::new(BTreeSet::new()));
        let a = assignment.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(list) = line.strip_prefix("ASSIGNED ") {
                    *a.lock().expect("not poisoned") =
                        list.split(',').filter_map(|p| p.parse().ok()).collect();
                }
            }
        });
        Ok(ChildMember { child, assignment })
    }

    fn assignment(&self) -> BTreeSet<i32> {
        self.assignment.lock().expect("not poisoned").clone()
    }

    fn kill9(&mut self) -> Result<()> {
        self.child.kill().context("killing group-member")?;
        self.child.wait().context("reaping group-member")?;
        Ok(())
    }
}

impl Drop for ChildMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True when the assignments are disjoint, cover `0..partitions`, and nobody is left without one.
fn is_split(assignments: &[BTreeSet<i32>], partitions: i32) -> bool {
    let total: usize = assignments.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<i32> = assignments.iter().flatten().copied().collect();
    total == partitions as usize
        && union == (0..partitions).collect()
        && assignments.iter().all(|a| !a.is_empty())
}

const PARTITIONS: i32 = 6;

async fn topic_with_records(bootstrap: &str, prefix: &str, per_partition: usize) -> Result<String> {
    let topic = unique_topic(prefix);
    create_topic(bootstrap, &topic, PARTITIONS, &[]).await?;
    let producer = idempotent_producer(bootstrap, &[])?;
    let out = (0..per_partition * PARTITIONS as usize).map(|i| Outgoing {
        key: format!("k{i}").into_bytes(),
        value: Some(format!("v{i}").into_bytes()),
        partition: Some((i % PARTITIONS as usize) as i32),
        timestamp: None,
    });
    produce_ordered(&producer, &topic, out, Duration::from_secs(30)).await?;
    Ok(topic)
}

fn never(_: usize) -> bool {
    false
}

fn always(_: usize) -> bool {
    true
}

/// Waits until the given members split all partitions, and the split holds on a second look.
async fn wait_split(what: &str, members: &[&Member], extra: Option<&ChildMember>) -> Result<()> {
    let snapshot = || {
        let mut all: Vec<BTreeSet<i32>> = members.iter().map(|m| m.assignment()).collect();
        if let Some(c) = extra {
            all.push(c.assignment());
        }
        all
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let first = snapshot();
        if is_split(&first, PARTITIONS) {
            tokio::time::sleep(Duration::from_millis(700)).await;
            if snapshot() == first {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{what}: no stable split of {PARTITIONS} partitions within 60 s: {first:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_split_partitions_and_a_leaving_member_hands_them_over() -> Result<()> {
    let broker = Broker::start(&[])?;
    let bootstrap = broker.bootstrap();
    let topic = topic_with_records(&bootstrap, "group-split", 20).await?;
    let group = unique_topic("g-split");

    let a = Member::spawn(&bootstrap, &group, &topic, never)?;
    let b = Member::spawn(&bootstrap, &group, &topic, never)?;
    let c = Member::spawn(&bootstrap, &group, &topic, never)?;
    wait_split("three members", &[&a, &b, &c], None).await?;
    let before = [a.assignment(), b.assignment(), c.assignment()];
    ensure!(
        before.iter().all(|s| s.len() == 2),
        "6 partitions over 3 members should be 2 each: {before:?}"
    );

    // C leaves (closes): its partitions move to A and B, well before a session timeout would.
    let left = Instant::now();
    c.close().await?;
    wait_split("after a member left", &[&a, &b], None).await?;
    let moved_in = left.elapsed();
    println!("partitions moved {moved_in:?} after a member left");
    ensure!(
        moved_in < Duration::from_millis(SESSION_TIMEOUT_MS) + Duration::from_secs(1),
        "a leaving member's partitions took {moved_in:?} to move: LeaveGroup seems ignored"
    );
    // Between them, A and B read every record of the topic.
    let ends = watermarks(&bootstrap, &topic, PARTITIONS)?;
    wait_for(
        "A and B to read all records",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let got: BTreeSet<(i32, i64)> = a.received().into_iter().chain(b.received()).collect();
            (0..PARTITIONS).all(|p| got.contains(&(p, ends[p as usize].1 - 1)))
        },
    )
    .await?;
    a.close().await?;
    b.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_loses_its_partitions_after_the_session_timeout() -> Result<()> {
    let broker = Broker::start(&[])?;
    let bootstrap = broker.bootstrap();
    let topic = topic_with_records(&bootstrap, "group-kill", 10).await?;
    let group = unique_topic("g-kill");

    let a = Member::spawn(&bootstrap, &group, &topic, never)?;
    let b = Member::spawn(&bootstrap, &group, &topic, never)?;
    let mut victim = ChildMember::spawn(&bootstrap, &group, &topic)?;
    wait_split("two members and a child process", &[&a, &b], Some(&victim)).await?;
    let orphaned = victim.assignment();
    ensure!(!orphaned.is_empty());

    let killed = Instant::now();
    victim.kill9()?;
    wait_split("after a member was killed", &[&a, &b], None).await?;
    let moved_in = killed.elapsed();
    println!("partitions {orphaned:?} moved {moved_in:?} after kill -9 of their member");
    let survivors: BTreeSet<i32> = a.assignment().union(&b.assignment()).copied().collect();
    ensure!(orphaned.is_subset(&survivors));
    a.close().await?;
    b.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_resume_exactly() -> Result<()> {
    const PER_PARTITION: i64 = 100;
    const COMMITTED: usize = 350;
    let broker = Broker::start(&[])?;
    let bootstrap = broker.bootstrap();
    let topic = topic_with_records(&bootstrap, "group-resume", PER_PARTITION as usize).await?;
    let group = unique_topic("g-resume");

    // The first member commits each of its first 350 records, then reads on without committing.
    fn first_350(n: usize) -> bool {
        n <= COMMITTED
    }
    let first = Member::spawn(&bootstrap, &group, &topic, first_350)?;
    wait_for(
        "the first member to read 400 records",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || first.received().len() >= 400,
    )
    .await?;
    let (got1, committed1) = first.close().await?;

    // The broker returns exactly what the member committed.
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(&topic, p);
    }
    let probe: StreamConsumer = group_consumer_config(&bootstrap, &group).create()?;
    let stored = probe.committed_offsets(tpl, REQUEST_TIMEOUT)?;
    drop(probe);
    let mut committed = BTreeMap::new();
    for p in 0..PARTITIONS {
        let e = stored
            .find_partition(&topic, p)
            .context("partition missing from OffsetFetch")?;
        let want = committed1.get(&p).copied();
        match (e.offset(), want) {
            (Offset::Offset(o), Some(w)) if o == w => {}
            (Offset::Invalid, None) => {}
            (got, want) => {
                bail!("partition {p}: committed offset {got:?}, member committed {want:?}")
            }
        }
        committed.insert(p, want.unwrap_or(0));
    }

    let second = Member::spawn(&bootstrap, &group, &topic, never)?;
    wait_for(
        "the second member to reach the end of every partition",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            let got = second.received();
            (0..PARTITIONS)
                .all(|p| committed[&p] == PER_PARTITION || got.contains(&(p, PER_PARTITION - 1)))
        },
    )
    .await?;
    let (got2, _) = second.close().await?;

    for p in 0..PARTITIONS {
        let c = committed[&p];
        let one: Vec<i64> = got1.iter().filter(|r| r.0 == p).map(|r| r.1).collect();
        let two: Vec<i64> = got2.iter().filter(|r| r.0 == p).map(|r| r.1).collect();
        let end1 = one.last().map_or(0, |o| o + 1);
        ensure!(
            one == (0..end1).collect::<Vec<_>>(),
            "partition {p}: first member read {one:?}, not a prefix"
        );
        ensure!(
            c <= end1,
            "partition {p}: committed {c} beyond what was read ({end1})"
        );
        ensure!(
            two == (c..PER_PARTITION).collect::<Vec<_>>(),
            "partition {p}: second member resumed at {:?}, committed offset was {c} (read {} records)",
            two.first(),
            two.len()
        );
        // Records read twice are exactly the first member's uncommitted tail.
        let twice = end1 - c;
        println!("partition {p}: committed {c}, first member read to {end1}, {twice} re-read");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_restart() -> Result<()> {
    let test = "committed_offsets_survive_a_restart";
    let Some(mut cairn) = owned_cairn(test, &[])? else {
        return Ok(());
    };
    let bootstrap = cairn.bootstrap();
    let topic = topic_with_records(&bootstrap, "group-restart", 50).await?;
    let group = unique_topic("g-restart");
    let ends: Vec<i64> = watermarks(&bootstrap, &topic, PARTITIONS)?
        .iter()
        .map(|m| m.1)
        .collect();

    let m = Member::spawn(&bootstrap, &group, &topic, always)?;
    wait_for(
        "the member to read and commit everything",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            let c = m.committed.lock().expect("not poisoned");
            (0..PARTITIONS).all(|p| c.get(&p) == Some(&ends[p as usize]))
        },
    )
    .await?;
    m.close().await?;

    let status = cairn.terminate()?;
    ensure!(status.success(), "cairn exited with {status} after SIGTERM");
    cairn.restart()?;

    let committed = |bootstrap: &str| -> Result<Vec<Offset>> {
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(&topic, p);
        }
        let probe: StreamConsumer = group_consumer_config(bootstrap, &group).create()?;
        let got = probe.committed_offsets(tpl, REQUEST_TIMEOUT)?;
        Ok((0..PARTITIONS)
            .map(|p| {
                got.find_partition(&topic, p)
                    .map_or(Offset::Invalid, |e| e.offset())
            })
            .collect())
    };
    let after = committed(&bootstrap)?;
    let want: Vec<Offset> = ends.iter().map(|&e| Offset::Offset(e)).collect();
    ensure!(
        after == want,
        "committed offsets after restart {after:?}, expected {want:?}"
    );

    // The group resumes after the restart: it reads only what was produced since.
    let producer = idempotent_producer(&bootstrap, &[])?;
    let out = (0..60).map(|i| Outgoing {
        key: format!("late{i}").into_bytes(),
        value: Some(b"late".to_vec()),
        partition: Some(i % PARTITIONS),
        timestamp: None,
    });
    produce_ordered(&producer, &topic, out, Duration::from_secs(30)).await?;
    let m = Member::spawn(&bootstrap, &group, &topic, never)?;
    wait_for(
        "the group to read the 60 new records",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || m.received().len() >= 60,
    )
    .await?;
    let (got, _) = m.close().await?;
    for (p, o) in &got {
        ensure!(
            *o >= ends[*p as usize],
            "after restart the group re-read partition {p} offset {o} (committed {})",
            ends[*p as usize]
        );
    }
    ensure!(
        got.len() == 60,
        "read {} records after restart, expected 60",
        got.len()
    );
    // A reader outside the group still sees the whole topic: nothing was lost by the restart.
    let reader: StreamConsumer = base_consumer_config(&bootstrap).create()?;
    for p in 0..PARTITIONS {
        let (low, high) = reader.fetch_watermarks(&topic, p, REQUEST_TIMEOUT)?;
        ensure!((low, high) == (0, ends[p as usize] + 10));
    }
    Ok(())
}
