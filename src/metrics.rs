//! The broker's counters: what flowed through it since it started (requests and their latency per
//! API, bytes and records in and out per topic). Handlers record into them; `http/` reads them,
//! together with the state it gathers at scrape time (offsets, sizes, groups, the process), to
//! answer `/metrics`.
//!
//! Recording is a lookup in a read-locked map of atomic counters: no lock is held across I/O and
//! nothing here is on the log engine's append or fsync path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every counter the broker keeps. Clones share the same counters.
#[derive(Clone)]
pub struct Metrics {
    requests: Family<ApiLabels, Counter>,
    request_seconds: HistogramFamily<ApiLabels>,
    bytes_in: Family<TopicLabels, Counter>,
    messages_in: Family<TopicLabels, Counter>,
    bytes_out: Family<TopicLabels, Counter>,
    /// Bytes in and out over all topics, for the status page's throughput charts.
    totals: Arc<[AtomicU64; 2]>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            bytes_in: Family::default(),
            messages_in: Family::default(),
            bytes_out: Family::default(),
            totals: Arc::default(),
        }
    }
}

/// 0.1 ms to about 52 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

impl Metrics {
    /// One request of `api_key` answered (or dropped) after `elapsed`.
    pub fn request(&self, api_key: i16, elapsed: Duration) {
        let labels = ApiLabels {
            api: api_name(api_key),
        };
        self.requests.get_or_create(&labels).inc();
        self.request_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Records appended to `topic` by a client (retried duplicates excluded).
    pub fn produced(&self, topic: &str, bytes: usize, records: u64) {
        let labels = TopicLabels {
            topic: topic.to_string(),
        };
        self.bytes_in.get_or_create(&labels).inc_by(bytes as u64);
        self.messages_in.get_or_create(&labels).inc_by(records);
        self.totals[0].fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Record bytes of `topic` sent to a consumer.
    pub fn fetched(&self, topic: &str, bytes: usize) {
        if bytes > 0 {
            let labels = TopicLabels {
                topic: topic.to_string(),
            };
            self.bytes_out.get_or_create(&labels).inc_by(bytes as u64);
            self.totals[1].fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    /// Record bytes in and out since the broker started, over all topics.
    pub fn total_bytes(&self) -> (u64, u64) {
        (
            self.totals[0].load(Ordering::Relaxed),
            self.totals[1].load(Ordering::Relaxed),
        )
    }

    /// Adds every counter to `registry` (a registry built for one scrape).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "cairn_requests",
            "Requests handled, by API",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "cairn_request_duration",
            "Time from a request's decoding to its response, by API",
            Unit::Seconds,
            self.request_seconds.clone(),
        );
        registry.register_with_unit(
            "cairn_topic_in",
            "Record batch bytes appended by clients, by topic",
            Unit::Bytes,
            self.bytes_in.clone(),
        );
        registry.register(
            "cairn_topic_messages_in",
            "Records appended by clients, by topic",
            self.messages_in.clone(),
        );
        registry.register_with_unit(
            "cairn_topic_out",
            "Record batch bytes sent to consumers, by topic",
            Unit::Bytes,
            self.bytes_out.clone(),
        );
    }
}

/// The API's name as Kafka spells its request metrics (`Produce`, `Fetch`, …), or `Unknown`.
fn api_name(api_key: i16) -> &'static str {
    static NAMES: OnceLock<Vec<(i16, &'static str)>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        (0..1000)
            .filter_map(|k| ApiKey::try_from(k).ok().map(|key| (k, key)))
            .map(|(k, key)| (k, &*Box::leak(format!("{key:?}").into_boxed_str())))
            .collect()
    });
    names
        .iter()
        .find(|(k, _)| *k == api_key)
        .map_or("Unknown", |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn counters_are_encoded_with_their_labels() {
        let metrics = Metrics::default();
        metrics.request(0, Duration::from_millis(3));
        metrics.request(0, Duration::from_millis(5));
        metrics.produced("events", 120, 3);
        metrics.fetched("events", 0);
        let mut registry = Registry::default();
        metrics.register(&mut registry);
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
            !text.contains("cairn_topic_out_bytes_total{"),
            "nothing fetched yet: {text}"
        );
    }

    #[test]
    fn api_names_are_kafkas() {
        assert_eq!(api_name(0), "Produce");
        assert_eq!(api_name(1), "Fetch");
        assert_eq!(api_name(18), "ApiVersions");
        assert_eq!(api_name(-3), "Unknown");
        assert_eq!(api_name(9999), "Unknown");
    }
}
