//! Fetch sessions (KIP-227): incremental Fetch requests, so a consumer of many partitions
//! sends only the partitions whose position changed and receives only those with something new.
//!
//! Owns the session cache (`max.incremental.fetch.session.cache.slots` sessions) and the session
//! state machine; the reads themselves stay in `fetch.rs`, which is handed the session's full
//! partition list as an ordinary full request. A request with session id 0 and epoch 0 asks for
//! a new session (created after its answer is built, if a slot is free or can be freed); epoch
//! -1 asks for no session (and closes the one named); a non-zero id with epoch 0 closes that
//! session and opens a new one; a non-zero id with a positive epoch is an incremental fetch:
//! an unknown id gets FETCH_SESSION_ID_NOT_FOUND, a wrong epoch INVALID_FETCH_SESSION_EPOCH.
//! An incremental fetch adds or updates the partitions it names, drops its forgotten ones, and
//! reads every partition of the session at its cached position; its answer carries only the
//! partitions with records, an error, or a changed high watermark or log start offset, and
//! those move to the end of the session's order so every partition gets its turn at the
//! response's byte limit. When the cache is full, a new session evicts the session unused for
//! longest if it was unused for two minutes, else the smallest session if the new one has more
//! partitions; otherwise the client is served without a session. Fetch v13+ (topic ids) is not
//! served, so sessions are keyed by topic name. The clock comes in as an argument.

use std::collections::HashMap;
use std::sync::Mutex;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};

use super::errors::code;
use super::{fetch, fetch_files, Broker};

/// The epoch of a request that opens a session.
const INITIAL_EPOCH: i32 = 0;
/// The epoch of a request that wants no session.
const FINAL_EPOCH: i32 = -1;
/// The first version with sessions.
const FIRST_SESSION_VERSION: i16 = 7;
/// A session unused this long may be evicted for a new one (Kafka's two minutes).
const EVICTION_MS: i64 = 120_000;

/// One partition of a session: the request's view of it, and what the client last heard.
#[derive(Debug, Clone)]
struct Cached {
    topic: TopicName,
    request: FetchPartition,
    /// The high watermark last sent (-1 after an error, so the partition is sent again).
    high_watermark: i64,
    /// The log start offset last sent.
    log_start_offset: i64,
}

#[derive(Debug)]
struct Session {
    /// The epoch the next request must carry.
    epoch: i32,
    partitions: Vec<Cached>,
    last_used_ms: i64,
}

/// The broker's fetch sessions.
#[derive(Debug)]
pub struct FetchSessions {
    slots: usize,
    cache: Mutex<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    sessions: HashMap<i32, Session>,
    /// State of the id generator (xorshift), seeded from the clock.
    next: u64,
}

/// What a request asks of the session cache.
#[derive(Debug, PartialEq)]
enum Begun {
    /// Answer in full; `create` a session for the answer.
    Full { create: bool },
    /// Answer incrementally for session `id`; read the partitions of `request`.
    Incremental { id: i32, request: Box<FetchRequest> },
}

fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

impl FetchSessions {
    /// A cache of at most `slots` sessions (0: sessions are never created).
    pub fn new(slots: usize) -> FetchSessions {
        FetchSessions {
            slots,
            cache: Mutex::new(Cache::default()),
        }
    }

    /// Sessions in the cache now.
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks a request's session id and epoch; an incremental request updates its session and
    /// comes back as the full list of partitions to read. `Err` is the request's error code.
    fn begin(&self, request: &FetchRequest, now_ms: i64) -> Result<Begun, i16> {
        let (id, epoch) = (request.session_id, request.session_epoch);
        let mut cache = self.lock();
        if epoch == FINAL_EPOCH || epoch == INITIAL_EPOCH {
            if id != 0 {
                cache.sessions.remove(&id);
            }
            return Ok(Begun::Full {
                create: epoch == INITIAL_EPOCH,
            });
        }
        if id == 0 || epoch < 0 {
            return Err(code(ResponseError::InvalidFetchSessionEpoch));
        }
        let Some(session) = cache.sessions.get_mut(&id) else {
            return Err(code(ResponseError::FetchSessionIdNotFound));
        };
        if session.epoch != epoch {
            return Err(code(ResponseError::InvalidFetchSessionEpoch));
        }
        session.epoch = next_epoch(epoch);
        session.last_used_ms = now_ms;
        for topic in &request.topics {
            for p in &topic.partitions {
                let known = session
                    .partitions
                    .iter_mut()
                    .find(|c| c.topic == topic.topic && c.request.partition == p.partition);
                match known {
                    Some(cached) => cached.request = p.clone(),
                    None => session.partitions.push(Cached {
                        topic: topic.topic.clone(),
                        request: p.clone(),
                        high_watermark: -1,
                        log_start_offset: -1,
                    }),
                }
            }
        }
        for forgotten in &request.forgotten_topics_data {
            session.partitions.retain(|c| {
                c.topic != forgotten.topic || !forgotten.partitions.contains(&c.request.partition)
            });
        }
        let mut full = request.clone();
        full.forgotten_topics_data.clear();
        full.topics = group(&session.partitions);
        Ok(Begun::Incremental {
            id,
            request: Box::new(full),
        })
    }

    /// Opens a session for a full request answered with `response`; its id, or 0 when no slot
    /// is free and none may be freed.
    fn create(&self, topics: &[FetchTopic], response: &FetchResponse, now_ms: i64) -> i32 {
        let mut partitions = Vec::new();
        for topic in topics {
            for p in &topic.partitions {
                partitions.push(Cached {
                    topic: topic.topic.clone(),
                    request: p.clone(),
                    high_watermark: -1,
                    log_start_offset: -1,
                });
            }
        }
        let mut cache = self.lock();
        if self.slots == 0
            || (cache.sessions.len() >= self.slots && !cache.evict(partitions.len(), now_ms))
        {
            return 0;
        }
        for cached in partitions.iter_mut() {
            remember(cached, response);
        }
        let id = cache.new_id(now_ms);
        tracing::debug!(
            session = id,
            partitions = partitions.len(),
            "fetch session opened"
        );
        cache.sessions.insert(
            id,
            Session {
                epoch: 1,
                partitions,
                last_used_ms: now_ms,
            },
        );
        id
    }

    /// Trims the answer to an incremental request of session `id` to the partitions the client
    /// must hear about, remembering what it heard and moving them to the end of the session.
    fn trim(&self, id: i32, response: &mut FetchResponse) {
        let mut cache = self.lock();
        let Some(session) = cache.sessions.get_mut(&id) else {
            return;
        };
        let mut sent = Vec::new();
        for topic in response.responses.iter_mut() {
            let name = topic.topic.clone();
            topic.partitions.retain(|data| {
                let Some(i) = session
                    .partitions
                    .iter()
                    .position(|c| c.topic == name && c.request.partition == data.partition_index)
                else {
                    return true;
                };
                let cached = &mut session.partitions[i];
                let must = data.error_code != 0
                    || fetch_files::records_len(&name.0, data) > 0
                    || data.high_watermark != cached.high_watermark
                    || data.log_start_offset != cached.log_start_offset;
                if must {
                    cached.high_watermark = if data.error_code != 0 {
                        -1
                    } else {
                        data.high_watermark
                    };
                    cached.log_start_offset = data.log_start_offset;
                    sent.push(i);
                }
                must
            });
        }
        response.responses.retain(|t| !t.partitions.is_empty());
        // Those sent go last, in the order they were sent.
        if !sent.is_empty() {
            let mut is_sent = vec![false; session.partitions.len()];
            for &i in &sent {
                is_sent[i] = true;
            }
            let mut order: Vec<Cached> = Vec::with_capacity(session.partitions.len());
            let moved: Vec<Cached> = sent
                .iter()
                .map(|&i| session.partitions[i].clone())
                .collect();
            for (i, c) in session.partitions.drain(..).enumerate() {
                if !is_sent[i] {
                    order.push(c);
                }
            }
            order.extend(moved);
            session.partitions = order;
        }
    }
}

impl Cache {
    /// Frees a slot for a session of `size` partitions: the session unused for longest if it
    /// is stale, else the smallest if smaller than `size`. False when none may go.
    fn evict(&mut self, size: usize, now_ms: i64) -> bool {
        let stale = self
            .sessions
            .iter()
            .filter(|(_, s)| now_ms - s.last_used_ms >= EVICTION_MS)
            .min_by_key(|(_, s)| s.last_used_ms)
            .map(|(&id, _)| id);
        let victim = stale.or_else(|| {
            self.sessions
                .iter()
                .filter(|(_, s)| s.partitions.len() < size)
                .min_by_key(|(_, s)| (s.partitions.len(), s.last_used_ms))
                .map(|(&id, _)| id)
        });
        match victim {
            Some(id) => {
                tracing::debug!(session = id, "fetch session evicted for a new one");
                self.sessions.remove(&id);
                true
            }
            None => false,
        }
    }

    /// A positive id not in use.
    fn new_id(&mut self, now_ms: i64) -> i32 {
        if self.next == 0 {
            self.next = (now_ms as u64) ^ 0x9E37_79B9_7F4A_7C15;
        }
        loop {
            self.next ^= self.next << 13;
            self.next ^= self.next >> 7;
            self.next ^= self.next << 17;
            let id = (self.next >> 33) as i32;
            if id > 0 && !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }
}

/// Records what the client hears about `cached` in `response`.
fn remember(cached: &mut Cached, response: &FetchResponse) {
    let data = response
        .responses
        .iter()
        .filter(|t| t.topic == cached.topic)
        .flat_map(|t| &t.partitions)
        .find(|p| p.partition_index == cached.request.partition);
    if let Some(data) = data {
        cached.high_watermark = if data.error_code != 0 {
            -1
        } else {
            data.high_watermark
        };
        cached.log_start_offset = data.log_start_offset;
    }
}

/// The session's partitions as request topics, in session order (a topic's partitions that
/// are not adjacent make separate entries, as Kafka's clients accept).
fn group(partitions: &[Cached]) -> Vec<FetchTopic> {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for c in partitions {
        match topics.last_mut() {
            Some(t) if t.topic == c.topic => t.partitions.push(c.request.clone()),
            _ => topics.push(
                FetchTopic::default()
                    .with_topic(c.topic.clone())
                    .with_partitions(vec![c.request.clone()]),
            ),
        }
    }
    topics
}

/// Handles a Fetch request through the session cache.
pub(super) async fn handle(
    broker: &Broker,
    connection: &crate::listener::Session,
    version: i16,
    request: FetchRequest,
) -> FetchResponse {
    if version < FIRST_SESSION_VERSION {
        return fetch::handle(broker, connection, version, request).await;
    }
    let now = crate::log::now_ms();
    match broker.fetch_sessions.begin(&request, now) {
        Err(error_code) => FetchResponse::default()
            .with_error_code(error_code)
            .with_session_id(0),
        Ok(Begun::Full { create }) => {
            let topics = create.then(|| request.topics.clone());
            let mut response = fetch::handle(broker, connection, version, request).await;
            if let Some(topics) = topics.filter(|_| response.error_code == 0) {
                let done = crate::log::now_ms();
                response.session_id = broker.fetch_sessions.create(&topics, &response, done);
            }
            response
        }
        Ok(Begun::Incremental { id, request }) => {
            let mut response = fetch::handle(broker, connection, version, *request).await;
            broker.fetch_sessions.trim(id, &mut response);
            response.session_id = id;
            response
        }
    }
}

#[cfg(test)]
mod tests;
