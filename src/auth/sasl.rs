//! SASL on SASL_PLAINTEXT and SASL_SSL listeners (KIP-152): the mechanisms a listener offers,
//! PLAIN's users from Kafka's JAAS form, and one connection's exchange (SaslHandshake, then
//! SaslAuthenticate until the mechanism is done).
//!
//! [`SaslExchange`] is a state machine without I/O; the server drives it and does not let any
//! other request than ApiVersions, SaslHandshake and SaslAuthenticate through until it says
//! the client is authenticated. Failures are reported with a reason for the broker's log that
//! never holds a password, salted password or token.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};

use super::credentials::CredentialStore;
use super::scram::{constant_time_eq, ScramMechanism, ScramServer};
use crate::config::BrokerConfig;

/// A mechanism Cairn can offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(m) => m.name(),
        }
    }

    fn from_name(name: &str) -> Option<Mechanism> {
        match name {
            "PLAIN" => Some(Mechanism::Plain),
            other => ScramMechanism::from_name(other).map(Mechanism::Scram),
        }
    }
}

/// Why a listener's SASL configuration is unusable.
#[derive(Debug, thiserror::Error)]
#[error("listener {listener}: {reason}")]
pub struct SaslConfigError {
    listener: String,
    reason: String,
}

/// What one SASL listener offers.
pub struct SaslListener {
    mechanisms: Vec<Mechanism>,
    /// PLAIN users and passwords, from `listener.name.<name>.plain.sasl.jaas.config`.
    plain_users: BTreeMap<String, String>,
    /// A per-process secret from which unknown SCRAM users get a stable made-up salt.
    decoy_key: [u8; 32],
}

impl SaslListener {
    pub fn from_config(
        config: &BrokerConfig,
        listener: &str,
    ) -> Result<SaslListener, SaslConfigError> {
        let fail = |reason: String| SaslConfigError {
            listener: listener.to_string(),
            reason,
        };
        let mut mechanisms = Vec::new();
        let enabled = config
            .listener_value(listener, "sasl.enabled.mechanisms")
            .unwrap_or("");
        for name in enabled.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let m = Mechanism::from_name(name).ok_or_else(|| {
                fail(format!(
                    "sasl.enabled.mechanisms: {name} is not supported (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"
                ))
            })?;
            mechanisms.push(m);
        }
        if mechanisms.is_empty() {
            return Err(fail("sasl.enabled.mechanisms is empty".into()));
        }
        let plain_users = match config.listener_value(listener, "plain.sasl.jaas.config") {
            Some(jaas) => {
                plain_users(jaas).map_err(|r| fail(format!("plain.sasl.jaas.config: {r}")))?
            }
            None => BTreeMap::new(),
        };
        if mechanisms.contains(&Mechanism::Plain) && plain_users.is_empty() {
            return Err(fail(format!(
                "PLAIN is enabled but listener.name.{}.plain.sasl.jaas.config defines no user_<name>=\"<password>\"",
                listener.to_ascii_lowercase()
            )));
        }
        let mut decoy_key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut decoy_key)
            .map_err(|_| fail("no system randomness".into()))?;
        Ok(SaslListener {
            mechanisms,
            plain_users,
            decoy_key,
        })
    }

    /// Whether `user` and `password` are one of this listener's PLAIN users, when PLAIN is
    /// enabled (compared in constant time).
    pub fn plain_user_matches(&self, user: &str, password: &str) -> bool {
        self.mechanisms.contains(&Mechanism::Plain)
            && self
                .plain_users
                .get(user)
                .is_some_and(|p| super::scram::constant_time_eq(p.as_bytes(), password.as_bytes()))
    }

    /// The enabled mechanisms' names, as SaslHandshake lists them.
    pub fn mechanism_names(&self) -> Vec<&'static str> {
        self.mechanisms.iter().map(|m| m.name()).collect()
    }
}

/// The `user_<name>="<password>"` options of a PlainLoginModule JAAS entry.
fn plain_users(jaas: &str) -> Result<BTreeMap<String, String>, String> {
    let body = jaas.trim().trim_end_matches(';');
    let mut users = BTreeMap::new();
    let mut rest = body;
    // The login module class and its control flag come first.
    for _ in 0..2 {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        rest = &rest[end..];
    }
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let eq = rest.find('=').ok_or("expected key=value")?;
        let key = rest[..eq].trim();
        rest = &rest[eq + 1..];
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let close = quoted.find('"').ok_or("unterminated quoted value")?;
            value = &quoted[..close];
            rest = &quoted[close + 1..];
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            value = &rest[..end];
            rest = &rest[end..];
        }
        if let Some(user) = key.strip_prefix("user_") {
            users.insert(user.to_string(), value.to_string());
        }
    }
    Ok(users)
}

/// What SaslHandshake decided.
#[derive(Debug, PartialEq, Eq)]
pub enum HandshakeOutcome {
    Accepted,
    /// The mechanism is not enabled here: answered UNSUPPORTED_SASL_MECHANISM, then closed.
    Unsupported,
    /// A handshake at the wrong moment: ILLEGAL_SASL_STATE, then closed.
    IllegalState,
}

/// What one SaslAuthenticate step decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes and wait for the next token.
    Continue(Vec<u8>),
    /// Done: send these bytes; the connection is now this principal.
    Authenticated {
        response: Vec<u8>,
        principal: String,
    },
    /// SASL_AUTHENTICATION_FAILED after the failed-authentication delay, then closed. The
    /// reason is for the log only.
    Failed(String),
    /// SaslAuthenticate before a handshake, or after the end: ILLEGAL_SASL_STATE, then closed.
    IllegalState,
}

enum State {
    AwaitHandshake,
    Plain,
    Scram(ScramServer, bool),
    Finished,
}

/// One connection's SASL exchange.
pub struct SaslExchange {
    state: State,
}

impl Default for SaslExchange {
    fn default() -> Self {
        SaslExchange {
            state: State::AwaitHandshake,
        }
    }
}

impl SaslExchange {
    pub fn handshake(&mut self, listener: &SaslListener, mechanism: &str) -> HandshakeOutcome {
        if !matches!(self.state, State::AwaitHandshake) {
            return HandshakeOutcome::IllegalState;
        }
        self.state =
            match Mechanism::from_name(mechanism).filter(|m| listener.mechanisms.contains(m)) {
                Some(Mechanism::Plain) => State::Plain,
                Some(Mechanism::Scram(m)) => State::Scram(ScramServer::new(m), false),
                None => {
                    self.state = State::Finished;
                    return HandshakeOutcome::Unsupported;
                }
            };
        HandshakeOutcome::Accepted
    }

    /// One SaslAuthenticate token.
    pub fn authenticate(
        &mut self,
        listener: &SaslListener,
        store: &CredentialStore,
        token: &[u8],
    ) -> Step {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::AwaitHandshake | State::Finished => Step::IllegalState,
            State::Plain => plain(listener, token),
            State::Scram(mut server, false) => {
                let mut nonce = [0u8; 24];
                if SystemRandom::new().fill(&mut nonce).is_err() {
                    return Step::Failed("no system randomness".into());
                }
                let nonce = B64.encode(nonce);
                let mechanism = server.mechanism();
                match server.client_first(
                    token,
                    |user| store.lookup(user, mechanism),
                    &nonce,
                    &listener.decoy_key,
                ) {
                    Ok(reply) => {
                        self.state = State::Scram(server, true);
                        Step::Continue(reply)
                    }
                    Err(e) => Step::Failed(format!("{}: {e}", mechanism.name())),
                }
            }
            State::Scram(mut server, true) => match server.client_final(token) {
                Ok((reply, user)) => Step::Authenticated {
                    response: reply,
                    principal: format!("User:{user}"),
                },
                Err(e) => Step::Failed(format!("{}: {e}", server.mechanism().name())),
            },
        }
    }
}

/// PLAIN (RFC 4616): `[authzid] NUL authcid NUL password`.
fn plain(listener: &SaslListener, token: &[u8]) -> Step {
    let mut parts = token.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Step::Failed("PLAIN: malformed token".into());
    };
    let (Ok(authzid), Ok(user)) = (std::str::from_utf8(authzid), std::str::from_utf8(user)) else {
        return Step::Failed("PLAIN: user name is not UTF-8".into());
    };
    if !authzid.is_empty() && authzid != user {
        return Step::Failed("PLAIN: authorization id differs from the user".into());
    }
    // Compared whether or not the user exists, so timing does not tell which it was.
    let expected = listener.plain_users.get(user);
    let matches = constant_time_eq(expected.map_or(&[][..], |p| p.as_bytes()), password);
    if matches && expected.is_some() && !user.is_empty() {
        Step::Authenticated {
            response: Vec::new(),
            principal: format!("User:{user}"),
        }
    } else {
        Step::Failed("PLAIN: invalid credentials".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(mechanisms: &str) -> SaslListener {
        let mut config = BrokerConfig::default();
        config.set("sasl.enabled.mechanisms", mechanisms).unwrap();
        config
            .set(
                "listener.name.sasl_ssl.plain.sasl.jaas.config",
                r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-secret" user_admin="admin-secret" user_alice=alice-pw;"#,
            )
            .unwrap();
        SaslListener::from_config(&config, "SASL_SSL").unwrap()
    }

    #[test]
    fn jaas_users_are_read() {
        let l = listener("PLAIN");
        assert_eq!(l.plain_users.len(), 2);
        assert_eq!(l.plain_users["alice"], "alice-pw");
        assert!(plain_users("x required user_a=\"open").is_err());
    }

    #[test]
    fn plain_accepts_right_and_refuses_wrong_alike() {
        let l = listener("PLAIN,SCRAM-SHA-256");
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::open(dir.path()).unwrap();
        let run = |token: &[u8]| {
            let mut x = SaslExchange::default();
            assert_eq!(x.handshake(&l, "PLAIN"), HandshakeOutcome::Accepted);
            x.authenticate(&l, &store, token)
        };
        assert_eq!(
            run(b"\0alice\0alice-pw"),
            Step::Authenticated {
                response: vec![],
                principal: "User:alice".into()
            }
        );
        assert!(matches!(run(b"\0alice\0wrong"), Step::Failed(_)));
        assert!(matches!(run(b"\0nobody\0alice-pw"), Step::Failed(_)));
        assert!(matches!(run(b"bob\0alice\0alice-pw"), Step::Failed(_)));
        assert!(matches!(run(b"garbage"), Step::Failed(_)));
        let failed = format!("{:?}", run(b"\0alice\0wrong"));
        assert!(!failed.contains("wrong"), "{failed}");
    }

    #[test]
    fn handshake_states() {
        let l = listener("SCRAM-SHA-512");
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::open(dir.path()).unwrap();
        let mut x = SaslExchange::default();
        assert_eq!(
            x.authenticate(&l, &store, b"n,,n=a,r=b"),
            Step::IllegalState
        );
        let mut x = SaslExchange::default();
        assert_eq!(x.handshake(&l, "PLAIN"), HandshakeOutcome::Unsupported);
        let mut x = SaslExchange::default();
        assert_eq!(x.handshake(&l, "SCRAM-SHA-512"), HandshakeOutcome::Accepted);
        assert_eq!(
            x.handshake(&l, "SCRAM-SHA-512"),
            HandshakeOutcome::IllegalState
        );
        let mut config = BrokerConfig::default();
        config.set("sasl.enabled.mechanisms", "PLAIN").unwrap();
        assert!(SaslListener::from_config(&config, "X").is_err());
        config.set("sasl.enabled.mechanisms", "GSSAPI").unwrap();
        assert!(SaslListener::from_config(&config, "X").is_err());
    }
}
