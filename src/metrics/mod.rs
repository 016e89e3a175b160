//! The broker's counters: what flowed through it since it started (requests, errors and latency
//! per API, bytes and records in and out per topic, produce-to-durable latency, connections and
//! the request budget in use). Handlers record into them; `http/` reads them, together with the
//! state it gathers at scrape time (offsets, sizes, groups, the cleaner, the process), to answer
//! `/metrics`.
//!
//! Recording never takes a lock and never allocates: per-API counters sit in a table indexed by
//! API key, per-topic ones are found by name in a lock-free table ([`topics`]), histograms are
//! arrays of atomics ([`histogram`]). Nothing here is on the log engine's append or fsync path.

mod errors;
pub mod histogram;
mod topics;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, ResponseKind};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use histogram::{Histogram, HistogramSnapshot};
use topics::TopicTable;

/// Error codes counted per API: -1 (UNKNOWN_SERVER_ERROR) up to this (Kafka's codes end well
/// below it); others are not counted.
const MAX_ERROR_CODE: i16 = 159;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiErrorLabels {
    api: &'static str,
    code: i16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

/// One API's counters.
struct ApiStats {
    name: &'static str,
    requests: AtomicU64,
    latency: Histogram,
    /// Indexed by error code + 1.
    errors: Box<[AtomicU64]>,
}

struct Inner {
    /// Indexed by API key; the last entry counts unknown keys.
    apis: Box<[ApiStats]>,
    topics: TopicTable,
    /// Bytes in and out over all topics, for the status page's throughput charts.
    totals: [AtomicU64; 2],
    produce_durable: Histogram,
    connections: AtomicU64,
    budget_in_use: AtomicU64,
}

/// Every counter the broker keeps. Clones share the same counters.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        let names = api_names();
        let max_key = names.iter().map(|(k, _)| *k).max().unwrap_or(0) as usize;
        let apis = (0..=max_key + 1)
            .map(|k| ApiStats {
                name: names
                    .iter()
                    .find(|(key, _)| *key as usize == k)
                    .map_or("Unknown", |(_, n)| n),
                requests: AtomicU64::new(0),
                latency: Histogram::latency(),
                errors: (-1..=MAX_ERROR_CODE).map(|_| AtomicU64::new(0)).collect(),
            })
            .collect();
        Metrics {
            inner: Arc::new(Inner {
                apis,
                topics: TopicTable::default(),
                totals: Default::default(),
                produce_durable: Histogram::latency(),
                connections: AtomicU64::new(0),
                budget_in_use: AtomicU64::new(0),
            }),
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Counts one open connection until dropped.
pub struct ConnectionGauge(Metrics);

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.0.inner.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    fn api(&self, api_key: i16) -> &ApiStats {
        let apis = &self.inner.apis;
        usize::try_from(api_key)
            .ok()
            .and_then(|k| apis.get(k))
            .filter(|a| a.name != "Unknown")
            .unwrap_or(&apis[apis.len() - 1])
    }

    /// One request of `api_key` answered (or dropped, `response` None) after `elapsed`; the
    /// error codes in its response are counted.
    pub fn request(&self, api_key: i16, elapsed: Duration, response: Option<&ResponseKind>) {
        let api = self.api(api_key);
        api.requests.fetch_add(1, Ordering::Relaxed);
        api.latency.observe(elapsed.as_secs_f64());
        if let Some(response) = response {
            errors::for_each_error(response, |code| {
                if let Some(c) = usize::try_from(code + 1)
                    .ok()
                    .and_then(|i| api.errors.get(i))
                {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    }

    /// Records appended to `topic` by a client (retried duplicates excluded).
    pub fn produced(&self, topic: &str, bytes: usize, records: u64) {
        if let Some(t) = self.inner.topics.get(topic) {
            t.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
            t.messages_in.fetch_add(records, Ordering::Relaxed);
        }
        self.inner.totals[0].fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Record bytes of `topic` sent to a consumer.
    pub fn fetched(&self, topic: &str, bytes: usize) {
        if bytes > 0 {
            if let Some(t) = self.inner.topics.get(topic) {
                t.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
            }
            self.inner.totals[1].fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    /// An acks=all produce waited `elapsed` after its append for its records to be durable.
    pub fn produce_durable(&self, elapsed: Duration) {
        self.inner.produce_durable.observe(elapsed.as_secs_f64());
    }

    /// A Kafka connection opened; it counts until the guard drops.
    pub fn connection(&self) -> ConnectionGauge {
        self.inner.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGauge(self.clone())
    }

    /// Bytes of `queued.max.request.bytes` held by requests being read or handled.
    pub fn set_budget_in_use(&self, bytes: u64) {
        self.inner.budget_in_use.store(bytes, Ordering::Relaxed);
    }

    /// Record bytes in and out since the broker started, over all topics.
    pub fn total_bytes(&self) -> (u64, u64) {
        (
            self.inner.totals[0].load(Ordering::Relaxed),
            self.inner.totals[1].load(Ordering::Relaxed),
        )
    }

    /// Adds every counter to `registry` (a registry built for one scrape); per-topic counters
    /// only for the topics `live` says exist.
    pub fn register(&self, registry: &mut Registry, live: impl Fn(&str) -> bool) {
        let requests: Family<ApiLabels, Counter> = Family::default();
        let errors: Family<ApiErrorLabels, Counter> = Family::default();
        let mut latency = Vec::new();
        for api in self.inner.apis.iter() {
            let n = api.requests.load(Ordering::Relaxed);
            if n == 0 {
                continue;
            }
            let labels = ApiLabels { api: api.name };
            requests.get_or_create(&labels).inc_by(n);
            latency.push((vec![("api", api.name.to_string())], api.latency.snapshot()));
            for (i, c) in api.errors.iter().enumerate() {
                let n = c.load(Ordering::Relaxed);
                if n > 0 {
                    let labels = ApiErrorLabels {
                        api: api.name,
                        code: i as i16 - 1,
                    };
                    errors.get_or_create(&labels).inc_by(n);
                }
            }
        }
        registry.register("cairn_requests", "Requests handled, by API", requests);
        registry.register(
            "cairn_errors",
            "Error codes in responses (each partition's counts), by API and code",
            errors,
        );
        registry.register_collector(Box::new(Histograms(vec![
            HistogramFamily {
                name: "cairn_request_duration",
                help: "Time from a request's decoding to its response, by API",
                unit: Some(Unit::Seconds),
                series: latency,
            },
            HistogramFamily {
                name: "cairn_produce_durable_duration",
                help: "Time an acks=all produce waited after its append until its records were durable",
                unit: Some(Unit::Seconds),
                series: vec![(Vec::new(), self.inner.produce_durable.snapshot())],
            },
        ])));

        let topic_counters: [(&str, &str, Option<Unit>); 3] = [
            (
                "cairn_topic_in",
                "Record batch bytes appended by clients, by topic",
                Some(Unit::Bytes),
            ),
            (
                "cairn_topic_messages_in",
                "Records appended by clients, by topic",
                None,
            ),
            (
                "cairn_topic_out",
                "Record batch bytes sent to consumers, by topic",
                Some(Unit::Bytes),
            ),
        ];
        let families: [Family<TopicLabels, Counter>; 3] = Default::default();
        for t in self.inner.topics.iter().filter(|t| live(&t.name)) {
            let labels = TopicLabels {
                topic: t.name.to_string(),
            };
            let values = [&t.bytes_in, &t.messages_in, &t.bytes_out];
            for (family, value) in families.iter().zip(values) {
                let v = value.load(Ordering::Relaxed);
                if v > 0 {
                    family.get_or_create(&labels).inc_by(v);
                }
            }
        }
        for ((name, help, unit), family) in topic_counters.into_iter().zip(families) {
            match unit {
                Some(unit) => registry.register_with_unit(name, help, unit, family),
                None => registry.register(name, help, family),
            }
        }

        let connections: Gauge = Gauge::default();
        connections.set(self.inner.connections.load(Ordering::Relaxed) as i64);
        registry.register(
            "cairn_connections",
            "Open Kafka client connections",
            connections,
        );
        let budget: Gauge = Gauge::default();
        budget.set(self.inner.budget_in_use.load(Ordering::Relaxed) as i64);
        registry.register_with_unit(
            "cairn_request_budget_in_use",
            "Bytes of queued.max.request.bytes held by requests being read or handled",
            Unit::Bytes,
            budget,
        );
    }
}

/// Histogram families for one scrape (encoded by hand: the recorded ones are lock-free).
#[derive(Debug)]
pub struct HistogramFamily {
    pub name: &'static str,
    pub help: &'static str,
    pub unit: Option<Unit>,
    pub series: Vec<(histogram::Labels, HistogramSnapshot)>,
}

/// A set of histogram families, as a registry collector.
#[derive(Debug)]
pub struct Histograms(pub Vec<HistogramFamily>);

impl Collector for Histograms {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            histogram::encode_family(&mut encoder, f.name, f.help, f.unit.as_ref(), &f.series)?;
        }
        Ok(())
    }
}

fn api_names() -> &'static [(i16, &'static str)] {
    static NAMES: OnceLock<Vec<(i16, &'static str)>> = OnceLock::new();
    NAMES.get_or_init(|| {
        (0..1000)
            .filter_map(|k| ApiKey::try_from(k).ok().map(|key| (k, key)))
            .map(|(k, key)| (k, &*Box::leak(format!("{key:?}").into_boxed_str())))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn counters_are_encoded_with_their_labels() {
        let metrics = Metrics::default();
        metrics.request(0, Duration::from_millis(3), None);
        let failed = kafka_protocol::messages::ProduceResponse::default().with_responses(vec![
            kafka_protocol::messages::produce_response::TopicProduceResponse::default()
                .with_partition_responses(vec![
                    kafka_protocol::messages::produce_response::PartitionProduceResponse::default()
                        .with_error_code(3),
                ]),
        ]);
        metrics.request(
            0,
            Duration::from_millis(5),
            Some(&ResponseKind::Produce(failed)),
        );
        metrics.produced("events", 120, 3);
        metrics.fetched("events", 0);
        let mut registry = Registry::default();
        metrics.register(&mut registry, |_| true);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encodes");
        assert!(
            text.contains("cairn_requests_total{api=\"Produce\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("cairn_request_duration_seconds_count{api=\"Produce\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("cairn_topic_in_bytes_total{topic=\"events\"} 120"),
            "{text}"
        );
        assert!(
            text.contains("cairn_topic_messages_in_total{topic=\"events\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("cairn_errors_total{api=\"Produce\",code=\"3\"} 1"),
            "{text}"
        );
        assert!(
            !text.contains("cairn_topic_out_bytes_total{"),
            "nothing fetched yet: {text}"
        );
    }

    #[test]
    fn api_names_are_kafkas() {
        let m = Metrics::default();
        assert_eq!(m.api(0).name, "Produce");
        assert_eq!(m.api(1).name, "Fetch");
        assert_eq!(m.api(18).name, "ApiVersions");
        assert_eq!(m.api(-3).name, "Unknown");
        assert_eq!(m.api(9999).name, "Unknown");
    }
}
