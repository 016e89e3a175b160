//! The durable store of client quotas: one small file in the data directory, rewritten
//! atomically on each change (as `resource_configs` keeps its configs).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use super::{EntityName, QuotaEntity, QuotaError, QuotaKey, Quotas};
use crate::log::checkpoint::write_atomic;
use crate::resource_configs::{escape, unescape};

/// The store's file in the data directory.
pub const CLIENT_QUOTAS_FILE: &str = "cairn-client-quotas";

const HEADER: &str = "cairn client quotas v1";

/// Reads the file; no file means no quotas.
pub(super) fn load(path: &Path) -> Result<BTreeMap<QuotaEntity, Quotas>, QuotaError> {
    match std::fs::read_to_string(path) {
        Ok(text) => decode(&text).map_err(|reason| QuotaError::Corrupt {
            path: path.display().to_string(),
            reason,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(source) => Err(QuotaError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

pub(super) fn save(path: &Path, entries: &BTreeMap<QuotaEntity, Quotas>) -> Result<(), QuotaError> {
    write_atomic(path, encode(entries).as_bytes()).map_err(|source| QuotaError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// A header line, then one `user<TAB>client-id<TAB>key<TAB>value` line per quota; an entity
/// part is `-` when absent, `*` for the default, `=name` (percent-escaped) for a name.
fn encode(entries: &BTreeMap<QuotaEntity, Quotas>) -> String {
    let part = |p: &Option<EntityName>| match p {
        None => "-".to_string(),
        Some(EntityName::Default) => "*".to_string(),
        Some(EntityName::Named(name)) => format!("={}", escape(name)),
    };
    let mut out = format!("{HEADER}\n");
    for (entity, quotas) in entries {
        for (key, value) in quotas {
            out.push_str(&format!(
                "{}\t{}\t{}\t{value}\n",
                part(&entity.user),
                part(&entity.client_id),
                key.name()
            ));
        }
    }
    out
}

fn decode(text: &str) -> Result<BTreeMap<QuotaEntity, Quotas>, String> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(format!("the first line is not '{HEADER}'"));
    }
    let part = |field: &str| -> Result<Option<EntityName>, String> {
        match field {
            "-" => Ok(None),
            "*" => Ok(Some(EntityName::Default)),
            f => match f.strip_prefix('=') {
                Some(name) => Ok(Some(EntityName::Named(unescape(name)?))),
                None => Err(format!("bad entity {field:?}")),
            },
        }
    };
    let mut entries: BTreeMap<QuotaEntity, Quotas> = BTreeMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [user, client_id, key, value] = fields[..] else {
            return Err(format!("bad line {line:?}"));
        };
        let entity = QuotaEntity {
            user: part(user)?,
            client_id: part(client_id)?,
        };
        let key = QuotaKey::parse(key).ok_or_else(|| format!("unknown quota in {line:?}"))?;
        let value: f64 = value
            .parse()
            .ok()
            .filter(|v: &f64| *v > 0.0 && v.is_finite())
            .ok_or_else(|| format!("bad value in {line:?}"))?;
        if entity.user.is_none() && entity.client_id.is_none() {
            return Err(format!("empty entity in {line:?}"));
        }
        entries.entry(entity).or_default().insert(key, value);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_round_trips_names_and_defaults() {
        let mut entries = BTreeMap::new();
        let mut quotas = Quotas::new();
        quotas.insert(QuotaKey::ProducerByteRate, 1024.0);
        quotas.insert(QuotaKey::RequestPercentage, 12.5);
        entries.insert(
            QuotaEntity {
                user: Some(EntityName::Named("odd\tuser=*".into())),
                client_id: Some(EntityName::Default),
            },
            quotas.clone(),
        );
        entries.insert(
            QuotaEntity {
                user: None,
                client_id: Some(EntityName::Named("-".into())),
            },
            quotas,
        );
        let text = encode(&entries);
        assert_eq!(text.lines().count(), 5);
        assert_eq!(decode(&text).unwrap(), entries);
        assert!(decode("other\n").is_err());
        assert!(decode(&format!("{HEADER}\n-\t-\tproducer_byte_rate\t1\n")).is_err());
        assert!(decode(&format!("{HEADER}\n*\t-\tproducer_byte_rate\t-1\n")).is_err());
        assert!(decode(&format!("{HEADER}\n*\t-\tnope\t1\n")).is_err());
    }
}
