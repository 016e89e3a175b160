//! The table of API versions this broker accepts and advertises.
//!
//! Built once from the broker's dispatch table, so ApiVersions can never advertise an API that
//! is not dispatched, nor dispatch one it does not advertise.

use kafka_protocol::messages::ApiKey;

/// Accepted version ranges per API key.
#[derive(Debug, Clone)]
pub struct VersionTable {
    entries: Vec<VersionEntry>,
}

/// One API's advertised range, and the lowest version actually served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionEntry {
    pub api_key: ApiKey,
    /// The minimum advertised in ApiVersions.
    pub advertised_min: i16,
    /// The lowest version decoded and served (Produce advertises 0 but serves 3+).
    pub served_min: i16,
    pub max: i16,
}

impl VersionTable {
    pub fn new(mut entries: Vec<VersionEntry>) -> VersionTable {
        entries.sort_by_key(|e| e.api_key as i16);
        VersionTable { entries }
    }

    pub fn entries(&self) -> &[VersionEntry] {
        &self.entries
    }

    pub fn get(&self, api_key: ApiKey) -> Option<&VersionEntry> {
        self.entries.iter().find(|e| e.api_key == api_key)
    }

    /// True when `version` of `api_key` is within the advertised range.
    pub fn accepts(&self, api_key: ApiKey, version: i16) -> bool {
        self.get(api_key)
            .is_some_and(|e| version >= e.advertised_min && version <= e.max)
    }
}
