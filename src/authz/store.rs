//! The durable ACL store: `<data dir>/cairn-security/acls`, one JSON object per line. Every
//! change rewrites the file whole (temp file, fsync, rename, fsync of the directory), so a
//! crash leaves the old or the new set, never a mix.

use std::path::{Path, PathBuf};

use super::AclBinding;
use crate::auth::credentials::{write_durably, SECURITY_DIR};

const FILE: &str = "acls";

pub(super) struct AclStore {
    path: PathBuf,
}

impl AclStore {
    pub(super) fn new(data_dir: &Path) -> AclStore {
        AclStore {
            path: data_dir.join(SECURITY_DIR).join(FILE),
        }
    }

    /// Every stored ACL (none when the file does not exist yet); a damaged line is an error,
    /// so the broker never starts with fewer ACLs than were written.
    pub(super) fn load(&self) -> anyhow::Result<Vec<AclBinding>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(n, line)| {
                serde_json::from_str(line).map_err(|e| {
                    anyhow::anyhow!("{} line {} is damaged: {e}", self.path.display(), n + 1)
                })
            })
            .collect()
    }

    pub(super) fn save(&self, acls: &[AclBinding]) -> std::io::Result<()> {
        let mut text = String::new();
        for acl in acls {
            text.push_str(&serde_json::to_string(acl).map_err(std::io::Error::other)?);
            text.push('\n');
        }
        write_durably(&self.path, &text)
    }
}
