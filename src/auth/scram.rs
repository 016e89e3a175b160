//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677): credentials and the server side of
//! one exchange.
//!
//! A [`ScramCredential`] holds what RFC 5802 lets a server keep (salt, iterations, StoredKey,
//! ServerKey), never the password or the salted password. [`ScramServer`] checks a client's
//! two messages; it is pure (no I/O, no clock), with the credential lookup passed in. An
//! unknown user goes through the same steps with a made-up credential, so its answer, and the
//! step it fails at, are those of a wrong password.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2, rand::SecureRandom};

/// Kafka's bounds on SCRAM iterations.
pub const MIN_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 16384;

/// A SCRAM mechanism, numbered as Kafka's ScramMechanism (the wire value in the admin APIs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        match name {
            "SCRAM-SHA-256" => Some(ScramMechanism::Sha256),
            "SCRAM-SHA-512" => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    /// Kafka's wire number: 1 for SHA-256, 2 for SHA-512 (0 is UNKNOWN).
    pub fn wire(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn from_wire(value: i8) -> Option<ScramMechanism> {
        match value {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    fn hmac_algorithm(self) -> hmac::Algorithm {
        match self {
            ScramMechanism::Sha256 => hmac::HMAC_SHA256,
            ScramMechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest_algorithm(self) -> &'static digest::Algorithm {
        match self {
            ScramMechanism::Sha256 => &digest::SHA256,
            ScramMechanism::Sha512 => &digest::SHA512,
        }
    }

    /// The length of this mechanism's hash (and of a salted password and a proof).
    pub fn hash_len(self) -> usize {
        self.digest_algorithm().output_len()
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        let key = hmac::Key::new(self.hmac_algorithm(), key);
        hmac::sign(&key, data).as_ref().to_vec()
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest_algorithm(), data)
            .as_ref()
            .to_vec()
    }
}

/// What the server keeps of one user's password for one mechanism.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredential {
    // Keys stay out of logs and panic messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// From a salted password (what AlterUserScramCredentials carries).
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salt: Vec<u8>,
        salted_password: &[u8],
        iterations: u32,
    ) -> ScramCredential {
        let client_key = mechanism.hmac(salted_password, b"Client Key");
        ScramCredential {
            salt,
            iterations,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, b"Server Key"),
        }
    }

    /// From a password, with a fresh random salt (the `cairn` subcommand for a first user).
    pub fn from_password(
        mechanism: ScramMechanism,
        password: &str,
        iterations: u32,
    ) -> ScramCredential {
        let mut salt = vec![0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut salt)
            .expect("the system random source works");
        let salted = salted_password(mechanism, password.as_bytes(), &salt, iterations);
        ScramCredential::from_salted_password(mechanism, salt, &salted, iterations)
    }
}

/// RFC 5802's Hi(): PBKDF2 with the mechanism's HMAC.
pub fn salted_password(
    mechanism: ScramMechanism,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    let algorithm = match mechanism {
        ScramMechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
        ScramMechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
    };
    let mut out = vec![0u8; mechanism.hash_len()];
    let rounds = std::num::NonZeroU32::new(iterations.max(1)).expect("at least one round");
    pbkdf2::derive(algorithm, rounds, salt, password, &mut out);
    out
}

/// Why an exchange failed. Every variant is answered alike (SASL_AUTHENTICATION_FAILED); the
/// variant is for the broker's log, and never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("unsupported SCRAM feature: {0}")]
    Unsupported(&'static str),
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("SCRAM message out of sequence")]
    OutOfSequence,
}

/// What the server remembers between the client's two messages.
struct AwaitingFinal {
    username: String,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    credential: ScramCredential,
    known: bool,
}

enum State {
    AwaitFirst,
    AwaitFinal(Box<AwaitingFinal>),
    Done,
}

/// The server side of one SCRAM exchange.
pub struct ScramServer {
    mechanism: ScramMechanism,
    state: State,
}

impl ScramServer {
    pub fn new(mechanism: ScramMechanism) -> ScramServer {
        ScramServer {
            mechanism,
            state: State::AwaitFirst,
        }
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// Takes client-first-message, answers server-first-message. `lookup` finds the user's
    /// credential; `server_nonce` is fresh randomness (printable); `decoy_key` is a per-process
    /// secret from which an unknown user's made-up salt is derived (stable per name, so a
    /// client cannot tell unknown users by a changing salt).
    pub fn client_first(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
        server_nonce: &str,
        decoy_key: &[u8],
    ) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, State::AwaitFirst) {
            return Err(ScramError::OutOfSequence);
        }
        self.state = State::Done;
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        // gs2-header: cbind-flag "," [authzid] ","
        let mut parts = text.splitn(3, ',');
        let flag = parts.next().unwrap_or("");
        let authzid = parts.next().ok_or(ScramError::Malformed("no gs2 header"))?;
        let bare = parts.next().ok_or(ScramError::Malformed("no gs2 header"))?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::Unsupported("channel binding")),
            _ => return Err(ScramError::Malformed("bad gs2 flag")),
        }
        let gs2_header = format!("{flag},{authzid},");
        let mut fields = bare.split(',');
        let username = fields
            .next()
            .and_then(|f| f.strip_prefix("n="))
            .ok_or(ScramError::Malformed("no username"))
            .and_then(decode_saslname)?;
        let client_nonce = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .filter(|n| !n.is_empty())
            .ok_or(ScramError::Malformed("no nonce"))?;
        for extension in fields {
            if extension == "tokenauth=true" {
                return Err(ScramError::Unsupported("delegation tokens"));
            }
        }
        if let Some(authzid) = authzid.strip_prefix("a=") {
            if decode_saslname(authzid)? != username {
                return Err(ScramError::InvalidCredentials);
            }
        } else if !authzid.is_empty() {
            return Err(ScramError::Malformed("bad authzid"));
        }
        let (credential, known) = match lookup(&username) {
            Some(c) => (c, true),
            None => (self.decoy(&username, decoy_key), false),
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        self.state = State::AwaitFinal(Box::new(AwaitingFinal {
            username,
            gs2_header,
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
            credential,
            known,
        }));
        Ok(server_first.into_bytes())
    }

    /// Takes client-final-message; on a valid proof answers server-final-message and the
    /// authenticated user name.
    pub fn client_final(&mut self, message: &[u8]) -> Result<(Vec<u8>, String), ScramError> {
        let State::AwaitFinal(pending) = std::mem::replace(&mut self.state, State::Done) else {
            return Err(ScramError::OutOfSequence);
        };
        let AwaitingFinal {
            username,
            gs2_header,
            client_first_bare,
            server_first,
            nonce,
            credential,
            known,
        } = *pending;
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut fields = without_proof.split(',');
        let binding = fields
            .next()
            .and_then(|f| f.strip_prefix("c="))
            .ok_or(ScramError::Malformed("no channel binding"))?;
        if B64.decode(binding).ok().as_deref() != Some(gs2_header.as_bytes()) {
            return Err(ScramError::Malformed(
                "channel binding differs from gs2 header",
            ));
        }
        let echoed = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no nonce"))?;
        // RFC 5802 wants the server-first nonce echoed exactly; librdkafka before 2.1 sends
        // its own nonce again in front of it. Like Kafka, accept any echo that ends with the
        // nonce this server sent: the fresh server part is still required, and the proof
        // covers exactly what the client sent.
        if !echoed.ends_with(nonce.as_str()) {
            return Err(ScramError::InvalidCredentials);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let m = self.mechanism;
        if proof.len() != m.hash_len() {
            return Err(ScramError::Malformed("proof has the wrong length"));
        }
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = m.hmac(&credential.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let matches = constant_time_eq(&m.hash(&client_key), &credential.stored_key);
        if !(matches && known) {
            return Err(ScramError::InvalidCredentials);
        }
        let server_signature = m.hmac(&credential.server_key, auth_message.as_bytes());
        let server_final = format!("v={}", B64.encode(server_signature));
        Ok((server_final.into_bytes(), username))
    }

    /// A credential no password matches, with a salt stable per user name.
    fn decoy(&self, username: &str, decoy_key: &[u8]) -> ScramCredential {
        let m = self.mechanism;
        let salt = m.hmac(decoy_key, username.as_bytes())[..32.min(m.hash_len())].to_vec();
        let stored_key = m.hmac(decoy_key, b"stored key of no one");
        ScramCredential {
            salt,
            iterations: MIN_ITERATIONS,
            server_key: stored_key.clone(),
            stored_key,
        }
    }
}

/// RFC 5802's saslname: `=2C` is ',' and `=3D` is '='; any other '=' is malformed.
fn decode_saslname(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 3) {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(ScramError::Malformed("empty user name"));
    }
    Ok(out)
}

/// Compares without an early exit, so timing tells nothing about where two keys differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
