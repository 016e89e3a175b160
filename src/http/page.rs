//! The status page: plain server-rendered HTML (no script), readable at a glance. Topics with
//! offsets and sizes, groups with lag and, for a group behind its partitions' ends, a progress bar
//! with its rate and time to catch up, throughput over the last minutes as inline SVG, the
//! cleaner's state per compacted partition, and the last start-up's recovery and verification.

use std::collections::HashMap;
use std::fmt::Write;

use super::history::Trends;
use super::status::Status;

pub(crate) fn render(status: &Status, trends: &Trends) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta http-equiv=refresh content=10><title>Cairn {node}</title><style>{STYLE}</style>\
         </head><body><h1>Cairn</h1><p class=meta>cluster <code>{cluster}</code> · node {node} · \
         up {uptime} · {rss} resident · {fds} open files</p>",
        node = status.node_id,
        cluster = escape(&status.cluster_id),
        uptime = duration(status.uptime_seconds as f64),
        rss = bytes(status.process.resident_memory_bytes),
        fds = status.process.open_fds,
    );
    throughput(&mut h, trends);
    groups(&mut h, status, trends);
    topics(&mut h, status);
    cleaner(&mut h, status);
    startup(&mut h, status);
    h.push_str("</body></html>\n");
    h
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:2em;color:#222}\
    table{border-collapse:collapse;margin-bottom:2em}td,th{padding:2px 10px;text-align:right}\
    th{border-bottom:1px solid #999}td:first-child,th:first-child{text-align:left}\
    .meta{color:#666}.bar{width:160px;height:10px;background:#eee;display:inline-block}\
    .bar span{display:block;height:10px;background:#3a7}svg{border:1px solid #ddd}";

fn throughput(h: &mut String, trends: &Trends) {
    h.push_str("<h2>Throughput</h2>");
    if trends.throughput.len() < 2 {
        h.push_str("<p class=meta>collecting samples (every 5 s)…</p>");
        return;
    }
    let (w, ht) = (600.0, 120.0);
    let span = trends.throughput.first().map_or(1.0, |t| t.0).max(1.0);
    let peak = trends
        .throughput
        .iter()
        .map(|t| t.1.max(t.2))
        .fold(1.0, f64::max);
    let line = |pick: fn(&(f64, f64, f64)) -> f64| -> String {
        trends
            .throughput
            .iter()
            .map(|t| {
                let x = w * (1.0 - t.0 / span);
                let y = ht - ht * pick(t) / peak;
                format!("{x:.1},{y:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let _ = write!(
        h,
        "<svg id=throughput width={w} height={ht} viewBox='0 0 {w} {ht}'>\
         <polyline fill=none stroke='#37a' stroke-width=2 points='{inn}'/>\
         <polyline fill=none stroke='#a73' stroke-width=2 points='{out}'/></svg>\
         <p class=meta><span style=color:#37a>in</span> / <span style=color:#a73>out</span> over \
         the last {span}; peak {peak}/s</p>",
        inn = line(|t| t.1),
        out = line(|t| t.2),
        span = duration(span),
        peak = bytes(peak as u64),
    );
}

fn groups(h: &mut String, status: &Status, trends: &Trends) {
    h.push_str("<h2>Consumer groups</h2>");
    if status.groups.is_empty() {
        h.push_str("<p class=meta>none</p>");
        return;
    }
    let starts: HashMap<(&str, i32), i64> = status
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| ((t.name.as_str(), p.partition), p.log_start_offset))
        })
        .collect();
    h.push_str(
        "<table id=groups><tr><th>group</th><th>state</th><th>members</th><th>lag</th>\
         <th>progress</th><th>rate</th><th>caught up in</th></tr>",
    );
    for g in &status.groups {
        // Progress through the retained log: committed positions between log start and end.
        let (mut done, mut total) = (0i64, 0i64);
        for o in g.offsets.iter().filter(|o| o.high_watermark >= 0) {
            let start = starts
                .get(&(o.topic.as_str(), o.partition))
                .copied()
                .unwrap_or(0);
            done += (o.committed_offset - start).max(0);
            total += (o.high_watermark - start).max(0);
        }
        let fraction = if total > 0 {
            done as f64 / total as f64
        } else {
            1.0
        };
        let rate = trends.group_rates.get(&g.group_id).copied().unwrap_or(0.0);
        let eta = match (g.lag, rate > 0.0) {
            (0, _) => "caught up".to_string(),
            (lag, true) => duration(lag as f64 / rate),
            (_, false) => "–".to_string(),
        };
        let _ = write!(
            h,
            "<tr id='group-{id}'><td>{id}</td><td>{state}</td><td>{members}</td>\
             <td class=lag>{lag}</td><td><span class=bar title='{pct:.1}%'>\
             <span style='width:{pct:.1}%'></span></span> {pct:.1}%</td><td>{rate:.0}/s</td>\
             <td>{eta}</td></tr>",
            id = escape(&g.group_id),
            state = g.state,
            members = g.members,
            lag = g.lag,
            pct = (fraction * 100.0).clamp(0.0, 100.0),
        );
    }
    h.push_str("</table>");
}

fn topics(h: &mut String, status: &Status) {
    h.push_str(
        "<h2>Topics</h2><table id=topics><tr><th>topic-partition</th><th>log start</th>\
         <th>high watermark</th><th>log end</th><th>size</th></tr>",
    );
    for t in &status.topics {
        for p in &t.partitions {
            let _ = write!(
                h,
                "<tr><td>{name}-{p}</td><td>{start}</td><td>{hw}</td><td>{end}</td>\
                 <td>{size}</td></tr>",
                name = escape(&t.name),
                p = p.partition,
                start = p.log_start_offset,
                hw = p.high_watermark,
                end = p.log_end_offset,
                size = match p.remote_size_bytes {
                    Some(remote) =>
                        format!("{} (+{} in the tier)", bytes(p.size_bytes), bytes(remote)),
                    None => bytes(p.size_bytes),
                },
            );
        }
    }
    h.push_str("</table>");
}

fn cleaner(h: &mut String, status: &Status) {
    let c = &status.cleaner;
    let _ = write!(
        h,
        "<h2>Log cleaner</h2><p class=meta>{runs} passes since start-up · {cleaned} cleaned, \
         {removed} removed · last pass {last} · {bad} uncleanable</p>",
        runs = c.runs,
        cleaned = bytes(c.bytes_cleaned),
        removed = bytes(c.bytes_removed),
        last = c
            .seconds_since_last_run
            .map_or("never".to_string(), |s| format!("{} ago", duration(s))),
        bad = c.uncleanable_partitions,
    );
    h.push_str(
        "<table id=cleaner><tr><th>compacted partition</th><th>dirty ratio</th>\
         <th>last cleaned</th><th>state</th></tr>",
    );
    for t in &status.topics {
        for p in &t.partitions {
            let Some(c) = &p.cleaner else { continue };
            let state = if c.state.cleaning {
                "cleaning"
            } else if c.state.uncleanable {
                "uncleanable (last cleaning failed)"
            } else {
                "idle"
            };
            let _ = write!(
                h,
                "<tr><td>{name}-{p}</td><td>{ratio:.1}%</td><td>{last}</td><td>{state}</td></tr>",
                name = escape(&t.name),
                p = p.partition,
                ratio = c.state.dirty_ratio * 100.0,
                last = c.seconds_since_last_clean.map_or(
                    "not since start-up".to_string(),
                    |s| format!("{} ago", duration(s))
                ),
            );
        }
    }
    h.push_str("</table>");
}

fn startup(h: &mut String, status: &Status) {
    let s = &status.startup;
    let v = &s.verification;
    let _ = write!(
        h,
        "<h2>Last start-up</h2><table id=startup>\
         <tr><td>previous shutdown</td><td>{shutdown}</td></tr>\
         <tr><td>partitions opened</td><td>{partitions} in {elapsed} ms</td></tr>\
         <tr><td>recovered</td><td>{rp} partitions, {rs} segments, {tb} of torn writes cut, \
         {ix} indexes rebuilt</td></tr>\
         <tr><td>damage found at start-up</td><td>{dr} ranges ({db}) moved aside, \
         {rb} base offsets restored</td></tr>\
         <tr><td>verification ({mode})</td><td>{verified}: {vs} segments ({vb}), \
         {vr} repaired</td></tr></table>",
        shutdown = s.shutdown,
        partitions = s.partitions,
        elapsed = s.elapsed_ms,
        rp = s.recovered_partitions,
        rs = s.recovered_segments,
        tb = bytes(s.truncated_bytes),
        ix = s.indexes_rebuilt,
        dr = s.damaged_ranges,
        db = bytes(s.damaged_bytes),
        rb = s.restored_base_offsets,
        mode = escape(&s.verify),
        verified = if v.finished {
            "finished"
        } else {
            "in progress or not run in the background"
        },
        vs = v.segments,
        vb = bytes(v.bytes),
        vr = v.repaired_segments,
    );
}

/// Text made safe for HTML element content and quoted attributes.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{:.1} h", s as f64 / 3600.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped() {
        assert_eq!(
            escape("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }

    #[test]
    fn sizes_and_durations_read_as_people_write_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(duration(42.0), "42 s");
        assert_eq!(duration(600.0), "10 min");
        assert_eq!(duration(9000.0), "2.5 h");
    }
}
