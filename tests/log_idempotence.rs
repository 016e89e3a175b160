//! Idempotent producers through the log engine: retries answered with their original offsets,
//! sequence and epoch errors, and producer state that survives clean and unclean restarts.

mod log_support;

use std::time::{Duration, Instant};

use cairn::log::{AppendOrigin, Isolation, LogError};
use log_support::*;

#[test]
fn a_retry_gets_the_original_offsets_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic("idem", 1, overrides(&[]), false).unwrap();
    let p = log.partition("idem", 0).unwrap();
    let pid = log.allocate_producer_id().unwrap();
    p.append(batch(&["other"], now_ms()), AppendOrigin::Client)
        .unwrap();
    let first = idempotent(&["a", "b"], (pid, 0, 0));
    let a = p.append(first.clone(), AppendOrigin::Client).unwrap();
    assert_eq!((a.base_offset, a.last_offset, a.duplicate), (1, 2, false));
    let b = p
        .append(idempotent(&["c"], (pid, 0, 2)), AppendOrigin::Client)
        .unwrap();
    assert_eq!(b.base_offset, 3);
    let retry = p.append(first, AppendOrigin::Client).unwrap();
    assert_eq!(
        (retry.base_offset, retry.last_offset, retry.duplicate),
        (1, 2, true)
    );
    assert_eq!(p.offsets().log_end_offset, 4);
    block_on(p.wait_durable(4)).unwrap();
    let all = decode(
        &p.read(0, 1 << 20, Isolation::ReadUncommitted)
            .unwrap()
            .records,
    );
    assert_eq!(all.len(), 4);
    log.shutdown().unwrap();
}

#[test]
fn out_of_order_sequences_and_fenced_epochs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic("seq", 1, overrides(&[]), false).unwrap();
    let p = log.partition("seq", 0).unwrap();
    p.append(idempotent(&["a"], (7, 3, 0)), AppendOrigin::Client)
        .unwrap();
    assert!(matches!(
        p.append(idempotent(&["gap"], (7, 3, 5)), AppendOrigin::Client),
        Err(LogError::OutOfOrderSequence {
            producer_id: 7,
            sequence: 5,
            expected: 1
        })
    ));
    assert!(matches!(
        p.append(idempotent(&["old"], (7, 2, 1)), AppendOrigin::Client),
        Err(LogError::InvalidProducerEpoch {
            producer_id: 7,
            epoch: 2,
            current_epoch: 3
        })
    ));
    assert!(matches!(
        p.append(idempotent(&["bump"], (7, 4, 1)), AppendOrigin::Client),
        Err(LogError::OutOfOrderSequence { expected: 0, .. })
    ));
    assert_eq!(
        p.append(idempotent(&["bump"], (7, 4, 0)), AppendOrigin::Client)
            .unwrap()
            .base_offset,
        1
    );
    // The fenced epoch stays fenced.
    assert!(matches!(
        p.append(idempotent(&["stale"], (7, 3, 1)), AppendOrigin::Client),
        Err(LogError::InvalidProducerEpoch { .. })
    ));
    // Sequences wrap past i32::MAX to 0.
    p.append(
        idempotent(&["x", "y"], (8, 0, i32::MAX - 1)),
        AppendOrigin::Client,
    )
    .unwrap();
    p.append(idempotent(&["z"], (8, 0, 0)), AppendOrigin::Client)
        .unwrap();
    assert_eq!(p.offsets().log_end_offset, 5);
    log.shutdown().unwrap();
}

#[test]
fn producer_state_survives_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = idempotent(&["a", "b", "c"], (42, 1, 10));
    {
        let log = open(dir.path(), &[]);
        log.create_topic("keep", 1, overrides(&[]), false).unwrap();
        let p = log.partition("keep", 0).unwrap();
        p.append(idempotent(&["z"], (42, 1, 9)), AppendOrigin::Client)
            .unwrap();
        p.append(first.clone(), AppendOrigin::Client).unwrap();
        log.shutdown().unwrap();
    }
    let log = open(dir.path(), &[]);
    let p = log.partition("keep", 0).unwrap();
    let retry = p.append(first, AppendOrigin::Client).unwrap();
    assert_eq!(
        (retry.base_offset, retry.last_offset, retry.duplicate),
        (1, 3, true)
    );
    assert!(matches!(
        p.append(idempotent(&["gap"], (42, 1, 20)), AppendOrigin::Client),
        Err(LogError::OutOfOrderSequence { expected: 13, .. })
    ));
    assert!(matches!(
        p.append(idempotent(&["old"], (42, 0, 13)), AppendOrigin::Client),
        Err(LogError::InvalidProducerEpoch { .. })
    ));
    assert_eq!(
        p.append(idempotent(&["next"], (42, 1, 13)), AppendOrigin::Client)
            .unwrap()
            .base_offset,
        4
    );
    log.shutdown().unwrap();
}

#[test]
fn producer_state_survives_a_crash_via_snapshots_and_the_log_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut batches = Vec::new();
    {
        let log = open(dir.path(), &[]);
        log.create_topic("crash", 1, overrides(&[("segment.bytes", "400")]), false)
            .unwrap();
        let p = log.partition("crash", 0).unwrap();
        for i in 0..20 {
            let b = idempotent(&[&format!("value-number-{i}")], (5, 0, i));
            p.append(b.clone(), AppendOrigin::Client).unwrap();
            batches.push(b);
        }
        block_on(p.wait_durable(20)).unwrap();
        assert!(p.sealed_segments().len() >= 2, "rolled, so snapshots exist");
        log.halt();
    }
    let log = open(dir.path(), &[]);
    let p = log.partition("crash", 0).unwrap();
    assert_eq!(p.offsets().log_end_offset, 20);
    let retry = p.append(batches[19].clone(), AppendOrigin::Client).unwrap();
    assert_eq!((retry.base_offset, retry.duplicate), (19, true));
    assert!(matches!(
        p.append(idempotent(&["skip"], (5, 0, 25)), AppendOrigin::Client),
        Err(LogError::OutOfOrderSequence { expected: 20, .. })
    ));
    assert_eq!(
        p.append(idempotent(&["ok"], (5, 0, 20)), AppendOrigin::Client)
            .unwrap()
            .base_offset,
        20
    );
    log.shutdown().unwrap();
}

/// Eight batches of one producer (two records each), with rolls (so producer snapshots) after
/// the third and the seventh; then a restart, clean or as after a crash. Each of the last five
/// batches, retried (as a producer with several requests in flight at a kill does), is answered
/// as a duplicate with its original offsets; the sixth-last is out of order, as before the
/// restart. The snapshot at the last roll holds only the seventh batch (Kafka's format): the
/// earlier ones come back from Cairn's companion file beside it.
fn the_last_five_batches_are_known_after_a_restart(crash: bool) {
    let dir = tempfile::tempdir().unwrap();
    let pid = 77;
    let batches: Vec<_> = (0..8)
        .map(|i| idempotent(&[&format!("a{i}"), &format!("b{i}")], (pid, 3, i * 2)))
        .collect();
    {
        let log = open(dir.path(), &[]);
        log.create_topic("retry", 1, overrides(&[]), false).unwrap();
        let p = log.partition("retry", 0).unwrap();
        p.append(batch(&["plain"], now_ms()), AppendOrigin::Client)
            .unwrap();
        for (i, b) in batches.iter().enumerate() {
            let info = p.append(b.clone(), AppendOrigin::Client).unwrap();
            assert_eq!(info.base_offset, 1 + 2 * i as i64);
            if i == 2 || i == 6 {
                p.roll().unwrap();
            }
        }
        block_on(p.wait_durable(17)).unwrap();
        assert_eq!(p.sealed_segments().len(), 2);
        if crash {
            log.halt();
        } else {
            log.shutdown().unwrap();
        }
    }
    let log = open(dir.path(), &[]);
    let p = log.partition("retry", 0).unwrap();
    assert_eq!(p.offsets().log_end_offset, 17);
    for (i, b) in batches.iter().enumerate().skip(3) {
        let retry = p.append(b.clone(), AppendOrigin::Client).unwrap();
        let first = 1 + 2 * i as i64;
        assert_eq!(
            (retry.base_offset, retry.last_offset, retry.duplicate),
            (first, first + 1, true),
            "retry of batch {i} (crash: {crash})"
        );
    }
    assert!(matches!(
        p.append(batches[2].clone(), AppendOrigin::Client),
        Err(LogError::OutOfOrderSequence {
            producer_id: 77,
            sequence: 4,
            expected: 16
        })
    ));
    assert_eq!(p.offsets().log_end_offset, 17, "no retry was written again");
    let next = idempotent(&["next"], (pid, 3, 16));
    assert_eq!(
        p.append(next, AppendOrigin::Client).unwrap().base_offset,
        17
    );
    log.shutdown().unwrap();
}

#[test]
fn the_last_five_batches_are_known_after_a_crash() {
    the_last_five_batches_are_known_after_a_restart(true);
}

#[test]
fn the_last_five_batches_are_known_after_a_clean_restart() {
    the_last_five_batches_are_known_after_a_restart(false);
}

#[test]
fn idle_producers_expire() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [
        ("producer.id.expiration.ms", "1"),
        ("log.retention.check.interval.ms", "20"),
    ];
    let log = open(dir.path(), &settings);
    log.create_topic("exp", 1, overrides(&[]), false).unwrap();
    let p = log.partition("exp", 0).unwrap();
    p.append(idempotent(&["a"], (9, 0, 0)), AppendOrigin::Client)
        .unwrap();
    // Once forgotten, the producer may continue at any sequence (as a new one).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match p.append(idempotent(&["late"], (9, 0, 50)), AppendOrigin::Client) {
            Ok(info) => {
                assert_eq!(info.base_offset, 1);
                break;
            }
            Err(LogError::OutOfOrderSequence { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("producer never expired: {e}"),
        }
    }
    log.shutdown().unwrap();
}
