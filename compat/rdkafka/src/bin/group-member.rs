//! A group member in its own process, so a test can kill it with SIGKILL (no LeaveGroup, no close).
//! Usage: `group-member <bootstrap> <group> <topic>`. Prints `ASSIGNED p,p,...` on every change of its
//! assignment and exits by itself after two minutes. Depends only on the harness's client config.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cairn_compat_rdkafka::group_consumer_config;
use rdkafka::consumer::{Consumer, StreamConsumer};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, bootstrap, group, topic] = args.as_slice() else {
        anyhow::bail!("usage: group-member <bootstrap> <group> <topic>");
    };
    let consumer: StreamConsumer = group_consumer_config(bootstrap, group)
        .create()
        .context("creating consumer")?;
    consumer.subscribe(&[topic]).context("subscribing")?;
    let mut last: Option<Vec<i32>> = None;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        // Records are not needed here; polling serves the rebalance callbacks.
        let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
        let mut now: Vec<i32> = consumer
            .assignment()
            .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default();
        now.sort_unstable();
        if last.as_ref() != Some(&now) {
            let list: Vec<String> = now.iter().map(i32::to_string).collect();
            println!("ASSIGNED {}", list.join(","));
            last = Some(now);
        }
    }
    Ok(())
}
