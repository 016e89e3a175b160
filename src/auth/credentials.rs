//! The durable SCRAM credential store: `<data dir>/cairn-security/scram-credentials`.
//!
//! One line per (user, mechanism): mechanism, base64 user name, iterations, base64 salt,
//! StoredKey and ServerKey. Never a password or salted password. Every change rewrites the
//! file whole: temp file, fsync, rename, fsync of the directory, so a crash leaves the old or
//! the new set. Knows nothing of Kafka requests.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::scram::{ScramCredential, ScramMechanism};

/// The directory, under the data directory, of Cairn's security state.
pub const SECURITY_DIR: &str = "cairn-security";
const FILE: &str = "scram-credentials";

type Key = (String, ScramMechanism);

/// Every SCRAM credential, loaded at start and written through on change.
pub struct CredentialStore {
    path: PathBuf,
    credentials: RwLock<BTreeMap<Key, ScramCredential>>,
}

impl CredentialStore {
    /// Loads the store of `data_dir` (empty if it has none yet).
    pub fn open(data_dir: &Path) -> std::io::Result<CredentialStore> {
        let path = data_dir.join(SECURITY_DIR).join(FILE);
        let credentials = match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text).map_err(|line| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} line {line} is damaged", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(CredentialStore {
            path,
            credentials: RwLock::new(credentials),
        })
    }

    pub fn lookup(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        self.read().get(&(user.to_string(), mechanism)).cloned()
    }

    /// Every user with its mechanisms and iterations.
    pub fn describe(&self) -> BTreeMap<String, Vec<(ScramMechanism, u32)>> {
        let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for ((user, mechanism), c) in self.read().iter() {
            out.entry(user.clone())
                .or_default()
                .push((*mechanism, c.iterations));
        }
        out
    }

    /// Applies deletions and upserts together, durably. A deletion of a credential that does
    /// not exist is not an error here (the caller checks first).
    pub fn apply(
        &self,
        deletions: &[Key],
        upserts: Vec<(Key, ScramCredential)>,
    ) -> std::io::Result<()> {
        let mut credentials = self
            .credentials
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut next = credentials.clone();
        for key in deletions {
            next.remove(key);
        }
        next.extend(upserts);
        write_durably(&self.path, &render(&next))?;
        *credentials = next;
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Key, ScramCredential>> {
        self.credentials
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One credential to add before start, in `kafka-storage format --add-scram`'s form:
/// `SCRAM-SHA-512=[name=alice,password=alice-secret]` (optionally `iterations=N`).
#[derive(Debug)]
pub struct AddScram {
    pub user: String,
    pub mechanism: ScramMechanism,
    pub password: String,
    pub iterations: u32,
}

impl AddScram {
    /// Parses the form above; the error says what is wrong and never repeats the password.
    pub fn parse(spec: &str) -> Result<AddScram, String> {
        let (mechanism, rest) = spec
            .split_once('=')
            .ok_or("expected MECHANISM=[name=...,password=...]")?;
        let mechanism = ScramMechanism::from_name(mechanism.trim())
            .ok_or("the mechanism must be SCRAM-SHA-256 or SCRAM-SHA-512")?;
        let inner = rest
            .trim()
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .ok_or("the credential must be in brackets: [name=...,password=...]")?;
        let (mut user, mut password, mut iterations) = (None, None, super::scram::MIN_ITERATIONS);
        for field in inner.split(',') {
            match field.split_once('=') {
                Some(("name", v)) => user = Some(v.trim_matches('"').to_string()),
                Some(("password", v)) => password = Some(v.trim_matches('"').to_string()),
                Some(("iterations", v)) => {
                    iterations = v
                        .parse()
                        .ok()
                        .filter(|i| {
                            (super::scram::MIN_ITERATIONS..=super::scram::MAX_ITERATIONS)
                                .contains(i)
                        })
                        .ok_or("iterations must be a number from 4096 to 16384")?;
                }
                _ => return Err("only name, password and iterations are understood".into()),
            }
        }
        let user = user.filter(|u| !u.is_empty()).ok_or("name is missing")?;
        let password = password
            .filter(|p| !p.is_empty())
            .ok_or("password is missing")?;
        Ok(AddScram {
            user,
            mechanism,
            password,
            iterations,
        })
    }

    /// Salts and stores the credential in `store`.
    pub fn store(&self, store: &CredentialStore) -> std::io::Result<()> {
        let credential =
            ScramCredential::from_password(self.mechanism, &self.password, self.iterations);
        store.apply(&[], vec![((self.user.clone(), self.mechanism), credential)])
    }
}

fn render(credentials: &BTreeMap<Key, ScramCredential>) -> String {
    let mut text = String::from(
        "# Cairn SCRAM credentials: mechanism user(base64) iterations salt stored_key server_key\n",
    );
    for ((user, mechanism), c) in credentials {
        text.push_str(&format!(
            "{} {} {} {} {} {}\n",
            mechanism.name(),
            B64.encode(user),
            c.iterations,
            B64.encode(&c.salt),
            B64.encode(&c.stored_key),
            B64.encode(&c.server_key)
        ));
    }
    text
}

/// Parses the file; the error is the 1-based number of the first damaged line.
fn parse(text: &str) -> Result<BTreeMap<Key, ScramCredential>, usize> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let parsed = (|| {
            let f: Vec<&str> = line.split(' ').collect();
            let [mechanism, user, iterations, salt, stored_key, server_key] = f[..] else {
                return None;
            };
            let mechanism = ScramMechanism::from_name(mechanism)?;
            let user = String::from_utf8(B64.decode(user).ok()?).ok()?;
            let credential = ScramCredential {
                iterations: iterations.parse().ok()?,
                salt: B64.decode(salt).ok()?,
                stored_key: B64.decode(stored_key).ok()?,
                server_key: B64.decode(server_key).ok()?,
            };
            Some(((user, mechanism), credential))
        })();
        let (key, credential) = parsed.ok_or(i + 1)?;
        out.insert(key, credential);
    }
    Ok(out)
}

/// Writes `text` to `path` so that a crash leaves either the old or the new file.
pub(crate) fn write_durably(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().expect("the store file is in a directory");
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_survive_reopen_and_hold_no_password() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::open(dir.path()).unwrap();
        let alice = ScramCredential::from_password(ScramMechanism::Sha512, "alice-secret", 4096);
        let key = ("alice".to_string(), ScramMechanism::Sha512);
        store
            .apply(&[], vec![(key.clone(), alice.clone())])
            .unwrap();
        let reopened = CredentialStore::open(dir.path()).unwrap();
        assert_eq!(
            reopened.lookup("alice", ScramMechanism::Sha512),
            Some(alice)
        );
        assert_eq!(reopened.lookup("alice", ScramMechanism::Sha256), None);
        let text = std::fs::read_to_string(dir.path().join(SECURITY_DIR).join(FILE)).unwrap();
        assert!(!text.contains("alice-secret"));
        reopened.apply(&[key], vec![]).unwrap();
        assert!(CredentialStore::open(dir.path())
            .unwrap()
            .describe()
            .is_empty());
    }

    #[test]
    fn add_scram_parses_kafka_storage_form() {
        let a = AddScram::parse("SCRAM-SHA-512=[name=alice,password=alice-secret]").unwrap();
        assert_eq!(
            (
                a.user.as_str(),
                a.mechanism,
                a.password.as_str(),
                a.iterations
            ),
            ("alice", ScramMechanism::Sha512, "alice-secret", 4096)
        );
        let a = AddScram::parse("SCRAM-SHA-256=[name=\"bob\",password=\"pw\",iterations=8192]")
            .unwrap();
        assert_eq!((a.user.as_str(), a.iterations), ("bob", 8192));
        for bad in [
            "PLAIN=[name=a,password=b]",
            "SCRAM-SHA-256=name=a,password=b",
            "SCRAM-SHA-256=[name=a]",
            "SCRAM-SHA-256=[name=a,password=b,iterations=10]",
            "SCRAM-SHA-256=[name=a,password=b,salt=c]",
        ] {
            let e = AddScram::parse(bad).unwrap_err();
            assert!(!e.contains("=b"), "{e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::open(dir.path()).unwrap();
        let a = AddScram::parse("SCRAM-SHA-512=[name=alice,password=alice-secret]").unwrap();
        a.store(&store).unwrap();
        assert!(store.lookup("alice", ScramMechanism::Sha512).is_some());
    }

    #[test]
    fn a_damaged_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(SECURITY_DIR)).unwrap();
        std::fs::write(
            dir.path().join(SECURITY_DIR).join(FILE),
            "SCRAM-SHA-256 x\n",
        )
        .unwrap();
        assert!(CredentialStore::open(dir.path()).is_err());
    }
}
