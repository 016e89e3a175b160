use super::*;

const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                            p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";

/// RFC 7677's example: user "user", password "pencil".
fn rfc7677_credential() -> ScramCredential {
    let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let salted = salted_password(ScramMechanism::Sha256, b"pencil", &salt, 4096);
    ScramCredential::from_salted_password(ScramMechanism::Sha256, salt, &salted, 4096)
}

fn first(server: &mut ScramServer, message: &str) -> Result<Vec<u8>, ScramError> {
    server.client_first(
        message.as_bytes(),
        |name| (name == "user").then(rfc7677_credential),
        SERVER_NONCE,
        b"decoy",
    )
}

#[test]
fn rfc_7677_exchange() {
    let mut server = ScramServer::new(ScramMechanism::Sha256);
    let server_first = first(&mut server, CLIENT_FIRST).unwrap();
    assert_eq!(
        String::from_utf8(server_first).unwrap(),
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    );
    let (server_final, user) = server.client_final(CLIENT_FINAL.as_bytes()).unwrap();
    assert_eq!(
        String::from_utf8(server_final).unwrap(),
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    );
    assert_eq!(user, "user");
}

#[test]
fn the_nonce_echo_of_older_librdkafka_is_accepted() {
    // The client nonce repeated before the server's full nonce, with a proof over that.
    let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let m = ScramMechanism::Sha256;
    let salted = salted_password(m, b"pencil", &salt, 4096);
    let mut server = ScramServer::new(m);
    let server_first = String::from_utf8(first(&mut server, CLIENT_FIRST).unwrap()).unwrap();
    let without_proof = format!(
        "c=biws,r=rOprNGfwEbeRWgbNEkqO{}",
        &server_first[2..server_first.find(",s=").unwrap()]
    );
    let auth = format!("n=user,r=rOprNGfwEbeRWgbNEkqO,{server_first},{without_proof}");
    let client_key = m.hmac(&salted, b"Client Key");
    let signature = m.hmac(&m.hash(&client_key), auth.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(a, b)| a ^ b)
        .collect();
    let message = format!("{without_proof},p={}", B64.encode(proof));
    assert_eq!(server.client_final(message.as_bytes()).unwrap().1, "user");
}

#[test]
fn tampered_replayed_or_unknown_fail_alike() {
    // A flipped proof bit.
    let mut server = ScramServer::new(ScramMechanism::Sha256);
    first(&mut server, CLIENT_FIRST).unwrap();
    let tampered = CLIENT_FINAL.replace("p=dHzb", "p=dHzc");
    assert_eq!(
        server.client_final(tampered.as_bytes()),
        Err(ScramError::InvalidCredentials)
    );
    // The same final message again on a finished exchange.
    assert_eq!(
        server.client_final(CLIENT_FINAL.as_bytes()),
        Err(ScramError::OutOfSequence)
    );
    // Replayed into a new exchange with another server nonce: the nonce differs.
    let mut other = ScramServer::new(ScramMechanism::Sha256);
    other
        .client_first(
            CLIENT_FIRST.as_bytes(),
            |_| Some(rfc7677_credential()),
            "another-nonce",
            b"decoy",
        )
        .unwrap();
    assert_eq!(
        other.client_final(CLIENT_FINAL.as_bytes()),
        Err(ScramError::InvalidCredentials)
    );
    // An unknown user gets a server-first message (stable salt) and fails at the end.
    let mut unknown = ScramServer::new(ScramMechanism::Sha256);
    let a = first(&mut unknown, "n,,n=nobody,r=abc").unwrap();
    let mut again = ScramServer::new(ScramMechanism::Sha256);
    let b = first(&mut again, "n,,n=nobody,r=abc").unwrap();
    assert_eq!(a, b);
    let proof = B64.encode([0u8; 32]);
    let nonce = format!("abc{SERVER_NONCE}");
    assert_eq!(
        unknown.client_final(format!("c=biws,r={nonce},p={proof}").as_bytes()),
        Err(ScramError::InvalidCredentials)
    );
}

#[test]
fn malformed_messages_are_refused() {
    for bad in [
        "",
        "x,,n=user,r=a",
        "p=tls-unique,,n=user,r=a",
        "n,,n=,r=a",
        "n,,n=us=ZZer,r=a",
        "n,,n=user",
        "n,,n=user,r=a,tokenauth=true",
        "n,a=other,n=user,r=a",
    ] {
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        assert!(first(&mut server, bad).is_err(), "{bad:?} accepted");
    }
    let mut server = ScramServer::new(ScramMechanism::Sha256);
    assert_eq!(
        server.client_final(CLIENT_FINAL.as_bytes()),
        Err(ScramError::OutOfSequence)
    );
    assert_eq!(decode_saslname("a=2Cb=3Dc").unwrap(), "a,b=c");
}

#[test]
fn credential_debug_hides_keys() {
    let text = format!("{:?}", rfc7677_credential());
    assert!(!text.contains("stored_key") && text.contains("4096"));
}
