//! Listeners: the named endpoints the broker serves, each with its security protocol, the
//! address it binds and the address Metadata gives its clients.
//!
//! Resolves Kafka's `listeners`, `advertised.listeners` and `listener.security.protocol.map`
//! into [`ListenerSpec`]s, and defines the per-connection [`Session`] that the server hands to
//! every handler (which listener, which principal, which peer). Depends only on `config`.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::config::{BrokerConfig, ConfigError};

/// Kafka's security protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    fn parse(name: &str) -> Option<SecurityProtocol> {
        match name {
            "PLAINTEXT" => Some(SecurityProtocol::Plaintext),
            "SSL" => Some(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Some(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Some(SecurityProtocol::SaslSsl),
            _ => None,
        }
    }

    /// True when the connection is wrapped in TLS.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// True when a client must authenticate with SASL before any other request.
    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// A host and port given to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

/// One configured listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// Upper case, as in `listeners`.
    pub name: String,
    pub protocol: SecurityProtocol,
    /// The address to bind.
    pub bind: SocketAddr,
    /// What Metadata and FindCoordinator tell this listener's clients.
    pub advertised: Endpoint,
}

impl ListenerSpec {
    /// A PLAINTEXT listener on `bind` (tests and embedders that bind one address).
    pub fn plaintext(bind: SocketAddr) -> ListenerSpec {
        ListenerSpec {
            name: "PLAINTEXT".into(),
            protocol: SecurityProtocol::Plaintext,
            bind,
            advertised: advertised_for(&bind.ip().to_string(), bind.port()),
        }
    }
}

/// Who is on the other end of a connection, and through which listener it came.
#[derive(Debug, Clone)]
pub struct Session {
    pub listener: String,
    pub protocol: SecurityProtocol,
    /// The endpoint this connection's listener advertises.
    pub advertised: Endpoint,
    /// Kafka's principal string: `User:ANONYMOUS`, `User:alice`, or `User:CN=...` for a
    /// client certificate.
    pub principal: String,
    pub peer: SocketAddr,
    /// Set when a client quota throttles this connection; the server honours it.
    pub mute: std::sync::Arc<crate::quota::ChannelMute>,
}

impl Session {
    /// An unauthenticated session on `listener` (its principal is `User:ANONYMOUS` until TLS
    /// or SASL says otherwise).
    pub fn new(listener: &ListenerSpec, peer: SocketAddr) -> Session {
        Session {
            listener: listener.name.clone(),
            protocol: listener.protocol,
            advertised: listener.advertised.clone(),
            principal: ANONYMOUS.to_string(),
            peer,
            mute: Default::default(),
        }
    }
}

/// Kafka's principal for an unauthenticated client.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// A wildcard bind host is advertised as loopback, as before listeners were named.
fn advertised_for(host: &str, port: u16) -> Endpoint {
    let host = if host == "0.0.0.0" || host == "::" {
        "127.0.0.1"
    } else {
        host
    };
    Endpoint {
        host: host.to_string(),
        port,
    }
}

/// Resolves the configured listeners: protocol from the map, bind address resolved,
/// advertised address from `advertised.listeners` (same name) or the listener's own.
pub fn listeners(config: &BrokerConfig) -> Result<Vec<ListenerSpec>, ConfigError> {
    let map = config.protocol_map()?;
    let advertised = config.advertised_listeners();
    let invalid = |key: &str, value: String, reason: String| ConfigError::InvalidValue {
        key: key.into(),
        value,
        reason,
    };
    if let Some(a) = advertised
        .iter()
        .find(|a| !config.listeners().iter().any(|l| l.name == a.name))
    {
        return Err(invalid(
            "advertised.listeners",
            a.name.clone(),
            "names no listener in listeners".into(),
        ));
    }
    config
        .listeners()
        .into_iter()
        .map(|l| {
            let protocol = map
                .get(&l.name)
                .and_then(|p| SecurityProtocol::parse(p))
                .ok_or_else(|| {
                    invalid(
                        "listener.security.protocol.map",
                        l.name.clone(),
                        "listener name has no security protocol".into(),
                    )
                })?;
            let bind = (l.host.as_str(), l.port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| {
                    invalid(
                        "listeners",
                        format!("{}:{}", l.host, l.port),
                        "cannot resolve host".into(),
                    )
                })?;
            let advertised = match advertised.iter().find(|a| a.name == l.name) {
                Some(a) => advertised_for(&a.host, a.port),
                None => advertised_for(&l.host, l.port),
            };
            Ok(ListenerSpec {
                name: l.name,
                protocol,
                bind,
                advertised,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_one_plaintext_listener_on_loopback() {
        let specs = listeners(&BrokerConfig::default()).unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].protocol, SecurityProtocol::Plaintext);
        assert_eq!(specs[0].bind, "127.0.0.1:9092".parse().unwrap());
        assert_eq!(specs[0].advertised.port, 9092);
    }

    #[test]
    fn named_listeners_take_protocol_and_advertised_address() {
        let mut config = BrokerConfig::default();
        config
            .set(
                "listeners",
                "INTERNAL://127.0.0.1:9092,EXTERNAL://0.0.0.0:9093",
            )
            .unwrap();
        config
            .set(
                "listener.security.protocol.map",
                "INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL",
            )
            .unwrap();
        config
            .set("advertised.listeners", "EXTERNAL://broker.example:19093")
            .unwrap();
        let specs = listeners(&config).unwrap();
        assert_eq!(specs[0].advertised.host, "127.0.0.1");
        assert_eq!(specs[1].protocol, SecurityProtocol::SaslSsl);
        assert!(specs[1].protocol.tls() && specs[1].protocol.sasl());
        assert_eq!(specs[1].advertised.host, "broker.example");
        assert_eq!(specs[1].advertised.port, 19093);
    }

    #[test]
    fn unmapped_or_unknown_names_are_errors() {
        let mut config = BrokerConfig::default();
        config.set("listeners", "FOO://127.0.0.1:1").unwrap();
        assert!(listeners(&config).is_err());
        let mut config = BrokerConfig::default();
        config.set("advertised.listeners", "OTHER://h:1").unwrap();
        assert!(listeners(&config).is_err());
        assert!(config
            .set("listener.security.protocol.map", "A:KERBEROS")
            .is_ok());
        assert!(config.protocol_map().is_err());
    }
}
