//! Key lookup latency over HTTP with a low-overhead client (issue 17's "p99 under 1 ms warm"):
//! `--workers` threads, each with one kept-alive connection and one request at a time, look up
//! random keys `key-%010d` below `--keys`; prints one JSON line with lookups per second and the
//! latency distribution in microseconds. A connection the server closes (its idle limit) is
//! opened again, and that request's time includes the connect. `scripts/bench-keys` builds and
//! runs it beside its Python clients.
//!
//! Run: `cargo run --release --example keys_lookup_bench -- --port P --topic T --keys N
//! [--count C] [--workers W] [--seed S]`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use anyhow::{bail, Context, Result};

struct Args {
    port: u16,
    topic: String,
    keys: u64,
    count: usize,
    workers: usize,
    seed: u64,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        port: 0,
        topic: String::new(),
        keys: 0,
        count: 20_000,
        workers: 1,
        seed: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => a.port = v.parse()?,
            "--topic" => a.topic = v,
            "--keys" => a.keys = v.parse()?,
            "--count" => a.count = v.parse()?,
            "--workers" => a.workers = v.parse()?,
            "--seed" => a.seed = v.parse()?,
            _ => bail!("unknown flag {flag}"),
        }
    }
    if a.port == 0 || a.topic.is_empty() || a.keys == 0 || a.workers == 0 {
        bail!("--port, --topic and --keys are required");
    }
    Ok(a)
}

/// xorshift64*: enough to spread keys, no dependency.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

struct Client {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
    reconnects: u64,
}

impl Client {
    /// One GET; the status and body.
    fn get(&mut self, request: &[u8]) -> Result<(u16, Vec<u8>)> {
        for attempt in 0..2 {
            if self.conn.is_none() {
                let s = TcpStream::connect(("127.0.0.1", self.port))?;
                s.set_nodelay(true)?;
                self.conn = Some(BufReader::new(s));
                self.reconnects += 1;
            }
            match self.exchange(request) {
                Ok(r) => return Ok(r),
                // The server closed an idle connection: once more on a new one.
                Err(_) if attempt == 0 => self.conn = None,
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns")
    }

    fn exchange(&mut self, request: &[u8]) -> Result<(u16, Vec<u8>)> {
        let conn = self.conn.as_mut().expect("connected above");
        conn.get_mut().write_all(request)?;
        let mut line = String::new();
        if conn.read_line(&mut line)? == 0 {
            bail!("connection closed");
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .context("status line")?
            .parse()?;
        let (mut length, mut close) = (None, false);
        loop {
            line.clear();
            if conn.read_line(&mut line)? == 0 {
                bail!("connection closed in the headers");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (name, value) = l.split_once(':').context("header line")?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>()?);
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        let mut body = vec![0; length.context("a Content-Length")?];
        conn.read_exact(&mut body)?;
        if close {
            self.conn = None;
        }
        Ok((status, body))
    }
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let per_worker = a.count.div_ceil(a.workers);
    let started = Instant::now();
    let handles: Vec<_> = (0..a.workers)
        .map(|w| {
            let (topic, port, keys) = (a.topic.clone(), a.port, a.keys);
            let mut rng = a.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (w as u64 + 1);
            std::thread::spawn(move || -> Result<(Vec<u32>, u64)> {
                let mut client = Client {
                    port,
                    conn: None,
                    reconnects: 0,
                };
                let mut latencies = Vec::with_capacity(per_worker);
                for _ in 0..per_worker {
                    let key = next(&mut rng) % keys;
                    let request = format!(
                        "GET /v1/topics/{topic}/keys/key-{key:010} HTTP/1.1\r\nHost: b\r\n\r\n"
                    );
                    let t = Instant::now();
                    let (status, body) = client.get(request.as_bytes())?;
                    latencies.push(t.elapsed().as_micros() as u32);
                    if status != 200 {
                        bail!("key-{key:010}: {status} {}", String::from_utf8_lossy(&body));
                    }
                }
                Ok((latencies, client.reconnects))
            })
        })
        .collect();
    let mut all = Vec::with_capacity(per_worker * a.workers);
    let mut connects = 0;
    for h in handles {
        let (l, c) = h.join().expect("worker thread")?;
        all.extend(l);
        connects += c;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    let mean = all.iter().map(|&x| x as f64).sum::<f64>() / all.len() as f64;
    println!(
        "{}",
        serde_json::json!({
            "lookups": all.len(),
            "per_second": all.len() as f64 / elapsed,
            "p50_us": at(0.50),
            "p90_us": at(0.90),
            "p99_us": at(0.99),
            "p999_us": at(0.999),
            "max_us": all[all.len() - 1],
            "mean_us": mean,
            "connections": connects,
        })
    );
    Ok(())
}
