//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554), so `kafka-configs
//! --entity-type users --alter --add-config 'SCRAM-SHA-512=[password=...]'` manages SCRAM
//! users. The client sends the salted password; the store keeps only StoredKey and ServerKey.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use tracing::{info, warn};

use super::Broker;
use crate::auth::scram::{ScramCredential, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};

type Failure = (ResponseError, String);

pub(super) fn describe(
    broker: &Broker,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let all = broker.credentials.describe();
    let info = |user: &str, mechanisms: &[(ScramMechanism, u32)]| {
        DescribeUserScramCredentialsResult::default()
            .with_user(StrBytes::from_string(user.to_string()))
            .with_credential_infos(
                mechanisms
                    .iter()
                    .map(|&(m, iterations)| {
                        CredentialInfo::default()
                            .with_mechanism(m.wire())
                            .with_iterations(iterations as i32)
                    })
                    .collect(),
            )
    };
    let results = match request.users.filter(|u| !u.is_empty()) {
        None => all.iter().map(|(user, m)| info(user, m)).collect(),
        Some(users) => {
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for u in &users {
                *counts.entry(u.name.to_string()).or_default() += 1;
            }
            counts
                .into_iter()
                .map(|(user, count)| {
                    let failed = |error: ResponseError, message: &str| {
                        DescribeUserScramCredentialsResult::default()
                            .with_user(StrBytes::from_string(user.clone()))
                            .with_error_code(error.code())
                            .with_error_message(Some(StrBytes::from_string(message.to_string())))
                    };
                    if count > 1 {
                        return failed(
                            ResponseError::DuplicateResource,
                            "Cannot describe SCRAM credentials for the same user twice in a single request",
                        );
                    }
                    match all.get(&user) {
                        Some(m) => info(&user, m),
                        None => failed(
                            ResponseError::ResourceNotFound,
                            "Attempt to describe a user credential that does not exist",
                        ),
                    }
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

pub(super) fn alter(
    broker: &Broker,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let mut failures: BTreeMap<String, Failure> = BTreeMap::new();
    let mut users: BTreeSet<String> = BTreeSet::new();
    let mut seen: BTreeSet<(String, i8)> = BTreeSet::new();
    let mut fail = |user: &str, error: ResponseError, message: &str| {
        failures
            .entry(user.to_string())
            .or_insert((error, message.to_string()));
    };
    let existing = broker.credentials.describe();
    let mut deletions = Vec::new();
    for d in &request.deletions {
        let user = d.name.to_string();
        users.insert(user.clone());
        if !seen.insert((user.clone(), d.mechanism)) {
            fail(
                &user,
                ResponseError::DuplicateResource,
                "A user credential cannot be altered twice in the same request",
            );
            continue;
        }
        let Some(mechanism) = check_common(&user, d.mechanism, &mut fail) else {
            continue;
        };
        let exists = existing
            .get(&user)
            .is_some_and(|ms| ms.iter().any(|(m, _)| *m == mechanism));
        if !exists {
            fail(
                &user,
                ResponseError::ResourceNotFound,
                "Attempt to delete a user credential that does not exist",
            );
            continue;
        }
        deletions.push((user, mechanism));
    }
    let mut upserts = Vec::new();
    for u in &request.upsertions {
        let user = u.name.to_string();
        users.insert(user.clone());
        if !seen.insert((user.clone(), u.mechanism)) {
            fail(
                &user,
                ResponseError::DuplicateResource,
                "A user credential cannot be altered twice in the same request",
            );
            continue;
        }
        let Some(mechanism) = check_common(&user, u.mechanism, &mut fail) else {
            continue;
        };
        let iterations = u.iterations;
        if iterations < MIN_ITERATIONS as i32 {
            fail(
                &user,
                ResponseError::UnacceptableCredential,
                &format!("Too few iterations (minimum {MIN_ITERATIONS})"),
            );
            continue;
        }
        if iterations > MAX_ITERATIONS as i32 {
            fail(
                &user,
                ResponseError::UnacceptableCredential,
                &format!("Too many iterations (maximum {MAX_ITERATIONS})"),
            );
            continue;
        }
        if u.salt.is_empty() || u.salted_password.len() != mechanism.hash_len() {
            fail(
                &user,
                ResponseError::UnacceptableCredential,
                "Salt or salted password is malformed",
            );
            continue;
        }
        let credential = ScramCredential::from_salted_password(
            mechanism,
            u.salt.to_vec(),
            &u.salted_password,
            iterations as u32,
        );
        upserts.push(((user, mechanism), credential));
    }
    // A user with any failure has none of its changes applied.
    deletions.retain(|(user, _)| !failures.contains_key(user));
    upserts.retain(|((user, _), _)| !failures.contains_key(user));
    if !(deletions.is_empty() && upserts.is_empty()) {
        let changed: BTreeSet<&String> = deletions
            .iter()
            .map(|(u, _)| u)
            .chain(upserts.iter().map(|((u, _), _)| u))
            .collect();
        let changed: Vec<String> = changed.into_iter().cloned().collect();
        match broker.credentials.apply(&deletions, upserts) {
            Ok(()) => info!(users = ?changed, "SCRAM credentials altered"),
            Err(e) => {
                warn!(error = %e, "cannot store SCRAM credentials");
                for user in changed {
                    failures.insert(
                        user,
                        (
                            ResponseError::UnknownServerError,
                            "Cannot store the credentials".into(),
                        ),
                    );
                }
            }
        }
    }
    let results = users
        .into_iter()
        .map(|user| {
            let (code, message) = match failures.get(&user) {
                Some((error, message)) => {
                    (error.code(), Some(StrBytes::from_string(message.clone())))
                }
                None => (0, None),
            };
            AlterUserScramCredentialsResult::default()
                .with_user(StrBytes::from_string(user))
                .with_error_code(code)
                .with_error_message(message)
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}

/// The checks deletions and upserts share: a user name, and a known mechanism.
fn check_common(
    user: &str,
    mechanism: i8,
    fail: &mut impl FnMut(&str, ResponseError, &str),
) -> Option<ScramMechanism> {
    if user.is_empty() {
        fail(
            user,
            ResponseError::UnacceptableCredential,
            "Username must not be empty",
        );
        return None;
    }
    let m = ScramMechanism::from_wire(mechanism);
    if m.is_none() {
        fail(
            user,
            ResponseError::UnsupportedSaslMechanism,
            "Unknown SCRAM mechanism",
        );
    }
    m
}
