//! How this broker reaches etcd when etcd is secured: the CA certificates its https endpoints
//! are checked against, the client certificate it presents (etcd's `--client-cert-auth`), and the
//! etcd user it authenticates as (etcd's `auth enable`), read and checked from the
//! `cairn.cluster.etcd.*` keys once at start-up. Every mistake is a start-up error naming the key;
//! the password is kept out of `Debug` and every message.

use crate::config::BrokerConfig;

const CA_FILE: &str = "cairn.cluster.etcd.tls.ca.file";
const CERT_FILE: &str = "cairn.cluster.etcd.tls.cert.file";
const KEY_FILE: &str = "cairn.cluster.etcd.tls.key.file";
const USERNAME: &str = "cairn.cluster.etcd.username";
const PASSWORD: &str = "cairn.cluster.etcd.password";

/// TLS material and credentials for the etcd client; empty for a plain, open etcd.
#[derive(Default)]
pub struct EtcdAccess {
    /// Roots etcd's server certificate must chain to; empty means the system's roots.
    pub roots: Vec<reqwest::Certificate>,
    /// The client certificate chain and key presented to etcd.
    pub identity: Option<reqwest::Identity>,
    pub credentials: Option<Credentials>,
}

impl std::fmt::Debug for EtcdAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdAccess")
            .field("roots", &self.roots.len())
            .field("client_certificate", &self.identity.is_some())
            .field("credentials", &self.credentials)
            .finish()
    }
}

/// An etcd user and its password.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    password: String,
}

impl Credentials {
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            user: user.into(),
            password: password.into(),
        }
    }

    pub fn password(&self) -> &str {
        &self.password
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"[hidden]")
            .finish()
    }
}

impl EtcdAccess {
    /// Reads the `cairn.cluster.etcd.*` keys for these (normalised) endpoints.
    pub fn from_config(config: &BrokerConfig, endpoints: &[String]) -> Result<EtcdAccess, String> {
        let set = |key: &str| config.get(key).map(str::trim).filter(|v| !v.is_empty());
        let tls_keys = [CA_FILE, CERT_FILE, KEY_FILE];
        if let Some(key) = tls_keys.iter().find(|k| set(k).is_some()) {
            if let Some(plain) = endpoints.iter().find(|e| !e.starts_with("https://")) {
                return Err(format!(
                    "{key} is set but the etcd endpoint {plain} is not https://; use https:// endpoints for TLS"
                ));
            }
        }
        let mut access = EtcdAccess::default();
        if let Some(path) = set(CA_FILE) {
            let pem = read(CA_FILE, path)?;
            access.roots = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("{CA_FILE}: {path} is not PEM certificates: {e}"))?;
            if access.roots.is_empty() {
                return Err(format!("{CA_FILE}: {path} holds no certificate"));
            }
        }
        match (set(CERT_FILE), set(KEY_FILE)) {
            (None, None) => {}
            (Some(_), None) => return Err(format!("{CERT_FILE} is set without {KEY_FILE}")),
            (None, Some(_)) => return Err(format!("{KEY_FILE} is set without {CERT_FILE}")),
            (Some(cert), Some(key)) => {
                let mut pem = read(CERT_FILE, cert)?;
                pem.push(b'\n');
                pem.extend(read(KEY_FILE, key)?);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    format!("{CERT_FILE} / {KEY_FILE}: not a PEM certificate chain and private key: {e}")
                })?;
                access.identity = Some(identity);
            }
        }
        let password = config.get(PASSWORD).filter(|p| !p.is_empty());
        access.credentials = match (set(USERNAME), password) {
            (None, None) => None,
            (Some(_), None) => return Err(format!("{USERNAME} is set without {PASSWORD}")),
            (None, Some(_)) => return Err(format!("{PASSWORD} is set without {USERNAME}")),
            (Some(user), Some(password)) => Some(Credentials::new(user, password)),
        };
        Ok(access)
    }
}

fn read(key: &str, path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{key}: cannot read {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> BrokerConfig {
        let mut c = BrokerConfig::default();
        for (k, v) in pairs {
            c.set(k, v).unwrap();
        }
        c
    }

    #[test]
    fn tls_keys_need_https_endpoints_and_both_halves_of_a_client_certificate() {
        let http = vec!["http://127.0.0.1:2379".to_string()];
        let https = vec!["https://127.0.0.1:2379".to_string()];
        let e = EtcdAccess::from_config(&config(&[(CA_FILE, "/nope")]), &http).unwrap_err();
        assert!(e.contains(CA_FILE) && e.contains("not https://"), "{e}");
        let e = EtcdAccess::from_config(&config(&[(CA_FILE, "/nope/ca.pem")]), &https).unwrap_err();
        assert!(e.contains(CA_FILE) && e.contains("cannot read"), "{e}");
        let e = EtcdAccess::from_config(&config(&[(CERT_FILE, "/c.pem")]), &https).unwrap_err();
        assert!(e.contains(KEY_FILE), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let e = EtcdAccess::from_config(&config(&[(CA_FILE, junk.to_str().unwrap())]), &https)
            .unwrap_err();
        assert!(e.contains("holds no certificate"), "{e}");
    }

    #[test]
    fn credentials_need_both_a_user_and_a_password_which_never_shows() {
        let endpoints = vec!["http://127.0.0.1:2379".to_string()];
        let e = EtcdAccess::from_config(&config(&[(USERNAME, "cairn")]), &endpoints).unwrap_err();
        assert!(e.contains(PASSWORD), "{e}");
        let access = EtcdAccess::from_config(
            &config(&[(USERNAME, "cairn"), (PASSWORD, "s3cret-pw")]),
            &endpoints,
        )
        .unwrap();
        let credentials = access.credentials.unwrap();
        assert_eq!(credentials.user, "cairn");
        assert_eq!(credentials.password(), "s3cret-pw");
        assert!(!format!("{credentials:?}").contains("s3cret-pw"));
        let open = EtcdAccess::from_config(&config(&[]), &endpoints).unwrap();
        assert!(open.credentials.is_none() && open.identity.is_none() && open.roots.is_empty());
    }
}
