//! TLS for SSL and SASL_SSL listeners, with rustls (no OpenSSL in the broker).
//!
//! Builds a listener's rustls `ServerConfig` from Kafka's `ssl.*` keys (each possibly
//! overridden with `listener.name.<name>.`): a PEM keystore (`ssl.keystore.location`, or the
//! inline `ssl.keystore.certificate.chain` + `ssl.keystore.key`), a PEM truststore for client
//! certificates, `ssl.client.auth`, `ssl.enabled.protocols` and `ssl.cipher.suites`. A
//! [`TlsListener`] keeps the current config behind a lock so certificates can be replaced
//! without a restart ([`TlsListener::reload`], on SIGHUP). Also turns a client certificate's
//! subject into Kafka's principal (`ssl.principal.mapping.rules=DEFAULT`: the RFC 2253 DN).
//! Knows nothing of Kafka requests or storage.

use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::BrokerConfig;

/// Why a listener's TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[error("listener {listener}: {reason}")]
pub struct TlsError {
    listener: String,
    reason: String,
}

/// One TLS listener's current acceptor; replaced whole on reload.
pub struct TlsListener {
    listener: String,
    config: BrokerConfig,
    acceptor: RwLock<TlsAcceptor>,
}

impl TlsListener {
    /// Reads the keystore and truststore of `listener` and builds its acceptor.
    pub fn load(config: &BrokerConfig, listener: &str) -> Result<TlsListener, TlsError> {
        let server = server_config(config, listener)?;
        Ok(TlsListener {
            listener: listener.to_string(),
            config: config.clone(),
            acceptor: RwLock::new(TlsAcceptor::from(Arc::new(server))),
        })
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Re-reads the key, certificates and truststore from their files. On error the previous
    /// acceptor stays in use. Connections already open keep their session.
    pub fn reload(&self) -> Result<(), TlsError> {
        let server = server_config(&self.config, &self.listener)?;
        *self
            .acceptor
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = TlsAcceptor::from(Arc::new(server));
        Ok(())
    }

    pub fn listener(&self) -> &str {
        &self.listener
    }
}

/// Builds the rustls server config of `listener` from its `ssl.*` keys.
pub fn server_config(config: &BrokerConfig, listener: &str) -> Result<ServerConfig, TlsError> {
    let fail = |reason: String| TlsError {
        listener: listener.to_string(),
        reason,
    };
    let key = |k: &str| config.listener_value(listener, k).filter(|v| !v.is_empty());
    if key("ssl.key.password").is_some() {
        return Err(fail(
            "ssl.key.password is set, but Cairn reads only unencrypted PEM keys \
             (decrypt it with `openssl pkcs8 -nocrypt` or leave the key unencrypted)"
                .into(),
        ));
    }
    let (chain, private_key) = match (
        key("ssl.keystore.location"),
        key("ssl.keystore.certificate.chain"),
        key("ssl.keystore.key"),
    ) {
        (Some(path), None, None) => {
            let pem = std::fs::read(path)
                .map_err(|e| fail(format!("cannot read ssl.keystore.location {path}: {e}")))?;
            (read_chain(&pem, &fail)?, read_key(&pem, &fail)?)
        }
        (None, Some(chain), Some(key)) => (
            read_chain(chain.as_bytes(), &fail)?,
            read_key(key.as_bytes(), &fail)?,
        ),
        _ => {
            return Err(fail(
                "set ssl.keystore.location, or both ssl.keystore.certificate.chain and \
                 ssl.keystore.key"
                    .into(),
            ))
        }
    };
    let provider = Arc::new(provider(key("ssl.cipher.suites"), &fail)?);
    let versions = protocol_versions(key("ssl.enabled.protocols").unwrap_or(""), &fail)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| fail(format!("ssl.enabled.protocols / ssl.cipher.suites: {e}")))?;
    let client_auth = key("ssl.client.auth").unwrap_or("none");
    let builder = if client_auth == "none" {
        builder.with_no_client_auth()
    } else {
        let roots = Arc::new(trust_roots(config, listener, &fail)?);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
        let verifier = if client_auth == "requested" {
            verifier.allow_unauthenticated()
        } else {
            verifier
        };
        builder.with_client_cert_verifier(
            verifier
                .build()
                .map_err(|e| fail(format!("truststore: {e}")))?,
        )
    };
    builder
        .with_single_cert(chain, private_key)
        .map_err(|e| fail(format!("keystore: {e}")))
}

fn read_chain(
    pem: &[u8],
    fail: &impl Fn(String) -> TlsError,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("keystore certificates: {e}")))?;
    if chain.is_empty() {
        return Err(fail("keystore holds no certificate".into()));
    }
    Ok(chain)
}

fn read_key(
    pem: &[u8],
    fail: &impl Fn(String) -> TlsError,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        fail(format!(
            "keystore private key: {e} (an encrypted key is not supported)"
        ))
    })
}

fn trust_roots(
    config: &BrokerConfig,
    listener: &str,
    fail: &impl Fn(String) -> TlsError,
) -> Result<RootCertStore, TlsError> {
    let key = |k: &str| config.listener_value(listener, k).filter(|v| !v.is_empty());
    let pem = match (
        key("ssl.truststore.location"),
        key("ssl.truststore.certificates"),
    ) {
        (Some(path), _) => std::fs::read(path)
            .map_err(|e| fail(format!("cannot read ssl.truststore.location {path}: {e}")))?,
        (None, Some(inline)) => inline.as_bytes().to_vec(),
        (None, None) => {
            return Err(fail(
                "ssl.client.auth needs a truststore (ssl.truststore.location or \
                 ssl.truststore.certificates)"
                    .into(),
            ))
        }
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| fail(format!("truststore: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| fail(format!("truststore certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(fail("truststore holds no certificate".into()));
    }
    Ok(roots)
}

/// ring's provider, its cipher suites narrowed to `ssl.cipher.suites` when that is set. Java's
/// names are accepted (TLS 1.3 suites are `TLS_AES_...`, rustls calls them `TLS13_AES_...`).
fn provider(
    suites: Option<&str>,
    fail: &impl Fn(String) -> TlsError,
) -> Result<CryptoProvider, TlsError> {
    // ring rather than aws-lc-rs: no C/CMake build of aws-lc, at the cost of no post-quantum
    // key exchange (why rustls marks ring's provider deprecated).
    #[allow(deprecated)]
    let mut provider = rustls::crypto::ring::default_provider();
    let Some(suites) = suites else {
        return Ok(provider);
    };
    let wanted: Vec<String> = suites
        .split(',')
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty())
        .collect();
    let name = |s: &rustls::SupportedCipherSuite| {
        s.suite()
            .as_str()
            .unwrap_or_default()
            .replace("TLS13_", "TLS_")
    };
    if let Some(unknown) = wanted
        .iter()
        .find(|w| !provider.cipher_suites.iter().any(|s| &name(s) == *w))
    {
        return Err(fail(format!("ssl.cipher.suites: unknown suite {unknown}")));
    }
    provider
        .cipher_suites
        .retain(|s| wanted.iter().any(|w| *w == name(s)));
    Ok(provider)
}

fn protocol_versions(
    value: &str,
    fail: &impl Fn(String) -> TlsError,
) -> Result<Vec<&'static SupportedProtocolVersion>, TlsError> {
    let mut versions = Vec::new();
    for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match name {
            "TLSv1.2" => versions.push(&rustls::version::TLS12),
            "TLSv1.3" => versions.push(&rustls::version::TLS13),
            // Older versions are unsafe and rustls does not speak them: skipped, as Kafka
            // skips versions the JVM has disabled.
            "TLSv1" | "TLSv1.1" => {}
            other => return Err(fail(format!("ssl.enabled.protocols: unknown {other}"))),
        }
    }
    if versions.is_empty() {
        return Err(fail(
            "ssl.enabled.protocols enables neither TLSv1.2 nor TLSv1.3".into(),
        ));
    }
    Ok(versions)
}

/// Kafka's principal for a client certificate under `ssl.principal.mapping.rules=DEFAULT`:
/// `User:` followed by the subject DN in RFC 2253 form (as Java's `X500Principal.getName()`
/// prints it: most specific attribute first). `None` if the certificate cannot be parsed.
pub fn certificate_principal(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(format!("User:{}", rfc2253(cert.subject())))
}

fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type().to_id_string();
                    match (keyword(&oid), atv.as_str()) {
                        (Some(k), Ok(value)) => format!("{k}={}", escape(value)),
                        _ => {
                            let any = atv.attr_value();
                            let data = any.data;
                            let mut hex = format!("{oid}=#{:02x}", any.tag().0 as u8);
                            // DER length, short or long form.
                            if data.len() < 128 {
                                hex.push_str(&format!("{:02x}", data.len()));
                            } else {
                                let len = (data.len() as u32).to_be_bytes();
                                let skip = len.iter().take_while(|b| **b == 0).count();
                                hex.push_str(&format!("{:02x}", 0x80 | (4 - skip)));
                                for b in &len[skip..] {
                                    hex.push_str(&format!("{b:02x}"));
                                }
                            }
                            for b in data {
                                hex.push_str(&format!("{b:02x}"));
                            }
                            hex
                        }
                    }
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// RFC 2253's attribute keywords.
fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// RFC 2253 escaping of an attribute value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_rfc_2253() {
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape("#x "), "\\#x\\ ");
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn protocols_and_suites_are_checked() {
        let fail = |reason: String| TlsError {
            listener: "SSL".into(),
            reason,
        };
        assert_eq!(
            protocol_versions("TLSv1.2,TLSv1.3", &fail).unwrap().len(),
            2
        );
        assert!(protocol_versions("TLSv1.1", &fail).is_err());
        assert!(protocol_versions("SSLv3", &fail).is_err());
        let p = provider(Some("TLS_AES_128_GCM_SHA256"), &fail).unwrap();
        assert_eq!(p.cipher_suites.len(), 1);
        assert!(provider(Some("TLS_NOPE"), &fail).is_err());
    }

    #[test]
    fn a_keystore_is_required() {
        let err = server_config(&BrokerConfig::default(), "SSL").unwrap_err();
        assert!(err.to_string().contains("ssl.keystore.location"));
    }
}
