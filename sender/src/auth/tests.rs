//! Exchanges driven by postgres-protocol's client code, against verifiers copied from a
//! real PostgreSQL 15 server; roles file tests; never-panic properties.

use super::*;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use proptest::prelude::*;
use walstream_protocol::wire::FrontendMessage;

// Copied from pg_authid.rolpassword of a PostgreSQL 15.18 cluster (deterministic data):
// CREATE ROLE replicator LOGIN REPLICATION PASSWORD 'secret' (password_encryption = scram-sha-256),
// CREATE ROLE alice LOGIN PASSWORD 'wonderland' (password_encryption = md5),
// CREATE ROLE "bob:x" LOGIN PASSWORD 'pässwörd' (scram-sha-256).
const REPLICATOR_SCRAM: &str = "SCRAM-SHA-256$4096:Mz5vk4psTFnbRwMGwKEhGA==$N8gQUHLa6JKhfqp1JXCkLFOBlGgwbu/33yxoFC2NMyE=:Xqm6k7l3VM9F99fE+8jhXND21R2BM26rvF9QuoBudRs=";
const ALICE_MD5: &str = "md56b765adf84f3c4341e8aab77ceda3bf1";
const BOB_SCRAM: &str = "SCRAM-SHA-256$4096:GM/H5cboHXmeLcPp/zmkrA==$dtY83+Mf4RDr1iaYYdL5Uj6V37XCPippXSMWH6D9F9A=:rn3AXg2CLvwHglF/W0DPfT1j/siFmg3MYqr6l+pnyxI=";

fn role(name: &str, verifier: &str) -> Role {
    Role { verifier: Verifier::parse(verifier), ..Role::new(name) }
}

fn body(m: FrontendMessage) -> Bytes {
    match m {
        FrontendMessage::Password(b) => b,
        other => panic!("not a p message: {other:?}"),
    }
}

fn password_body(pw: &[u8]) -> Bytes {
    body(walstream_protocol::wire::password::password(pw))
}

fn initial_body(mechanism: &str, data: Option<&[u8]>) -> Bytes {
    body(
        SaslInitialResponse { mechanism: mechanism.into(), data: data.map(Bytes::copy_from_slice) }
            .to_message(),
    )
}

/// Runs postgres-protocol's SCRAM client against an authenticator that has just sent
/// AuthenticationSASL. Returns the outcome; on success also checks the server signature.
fn run_scram(
    auth: &mut Authenticator,
    password: &[u8],
    binding: ChannelBinding,
) -> Result<(), AuthError> {
    run_scram_as(auth, SCRAM_SHA_256, password, binding)
}

/// [`run_scram`] selecting `mechanism`.
fn run_scram_as(
    auth: &mut Authenticator,
    mechanism: &str,
    password: &[u8],
    binding: ChannelBinding,
) -> Result<(), AuthError> {
    let mut client = ScramSha256::new(password, binding);
    let step = auth.step(initial_body(mechanism, Some(client.message())))?;
    let AuthStep::Send(Authentication::SaslContinue(server_first)) = step else {
        panic!("expected SASLContinue, got {step:?}")
    };
    client.update(&server_first).expect("client accepts server-first");
    let step = auth.step(Bytes::copy_from_slice(client.message()))?;
    let AuthStep::Done { last: Some(Authentication::SaslFinal(server_final)) } = step else {
        panic!("expected Done with SASLFinal, got {step:?}")
    };
    client.finish(&server_final).expect("client verifies the server signature");
    assert!(auth.is_done());
    Ok(())
}

fn assert_password_failed(
    result: Result<impl std::fmt::Debug, AuthError>,
    user: &str,
) -> AuthError {
    let err = result.expect_err("expected a failure");
    assert_eq!(err.fields.code, "28P01");
    assert_eq!(err.fields.severity, "FATAL");
    assert_eq!(err.fields.message, format!("password authentication failed for user \"{user}\""));
    err
}

fn sasl_request() -> Authentication {
    Authentication::Sasl { mechanisms: vec!["SCRAM-SHA-256".into()] }
}

#[test]
fn scram_with_real_verifiers_both_gs2_flags() {
    for (name, verifier, password) in [
        ("replicator", REPLICATOR_SCRAM, "secret".as_bytes()),
        ("bob:x", BOB_SCRAM, "pässwörd".as_bytes()),
    ] {
        let r = role(name, verifier);
        for method in [AuthMethod::ScramSha256, AuthMethod::Md5] {
            for binding in [ChannelBinding::unsupported, ChannelBinding::unrequested] {
                let (mut auth, first) = Authenticator::start(method, name, Some(&r));
                assert_eq!(first, sasl_request());
                run_scram(&mut auth, password, binding()).unwrap();
            }
        }
    }
}

#[test]
fn scram_wrong_password_and_missing_roles_fail_alike() {
    let r = role("replicator", REPLICATOR_SCRAM);
    let (mut auth, _) = Authenticator::start(AuthMethod::ScramSha256, "replicator", Some(&r));
    let err = assert_password_failed(
        run_scram(&mut auth, b"wrong", ChannelBinding::unsupported()),
        "replicator",
    );
    assert_eq!(err.log_detail.as_deref(), Some("Password does not match for user \"replicator\"."));
    assert!(auth.is_done());

    let cases: [(Option<Role>, &str); 3] = [
        (None, "Role \"ghost\" does not exist."),
        (Some(Role::new("ghost")), "User \"ghost\" has no password assigned."),
        (Some(role("ghost", ALICE_MD5)), "User \"ghost\" does not have a valid SCRAM secret."),
    ];
    for (role, detail) in cases {
        let (mut auth, first) =
            Authenticator::start(AuthMethod::ScramSha256, "ghost", role.as_ref());
        assert_eq!(first, sasl_request());
        let err = assert_password_failed(
            run_scram(&mut auth, b"secret", ChannelBinding::unsupported()),
            "ghost",
        );
        assert_eq!(err.log_detail.as_deref(), Some(detail));
    }
    // md5 method, no such role: SCRAM mock exchange, as with password_encryption = scram-sha-256.
    let (mut auth, first) = Authenticator::start(AuthMethod::Md5, "ghost", None);
    assert_eq!(first, sasl_request());
    assert_password_failed(run_scram(&mut auth, b"x", ChannelBinding::unsupported()), "ghost");
}

#[test]
fn scram_without_initial_data() {
    let r = role("replicator", REPLICATOR_SCRAM);
    let (mut auth, _) = Authenticator::start(AuthMethod::ScramSha256, "replicator", Some(&r));
    let step = auth.step(initial_body(SCRAM_SHA_256, None)).unwrap();
    assert_eq!(step, AuthStep::Send(Authentication::SaslContinue(Bytes::new())));
    let mut client = ScramSha256::new(b"secret", ChannelBinding::unsupported());
    let AuthStep::Send(Authentication::SaslContinue(server_first)) =
        auth.step(Bytes::copy_from_slice(client.message())).unwrap()
    else {
        panic!("expected server-first")
    };
    client.update(&server_first).unwrap();
    let step = auth.step(Bytes::copy_from_slice(client.message())).unwrap();
    assert!(matches!(step, AuthStep::Done { last: Some(Authentication::SaslFinal(_)) }));
}

#[test]
fn sasl_protocol_errors() {
    let r = role("replicator", REPLICATOR_SCRAM);
    let (mut auth, _) = Authenticator::start(AuthMethod::ScramSha256, "replicator", Some(&r));
    let err = auth
        .step(initial_body("SCRAM-SHA-256-PLUS", Some(b"p=tls-server-end-point,,n=,r=x")))
        .unwrap_err();
    assert_eq!(err.fields.code, "08P01");
    assert_eq!(err.fields.message, "client selected an invalid SASL authentication mechanism");
    let (mut auth, _) = Authenticator::start(AuthMethod::ScramSha256, "replicator", Some(&r));
    let err = auth.step(Bytes::from_static(b"FOO\0\0")).unwrap_err();
    assert_eq!(err.fields.message, "client selected an invalid SASL authentication mechanism");
    let (mut auth, _) = Authenticator::start(AuthMethod::ScramSha256, "replicator", Some(&r));
    let err = auth.step(Bytes::from_static(b"SCRAM-SHA-256")).unwrap_err();
    assert_eq!(err.fields.message, "invalid string in message");
    let (mut auth, _) = Authenticator::start(AuthMethod::ScramSha256, "replicator", Some(&r));
    let err = auth.step(Bytes::from_static(b"SCRAM-SHA-256\0\0\0")).unwrap_err();
    assert_eq!(
        (err.fields.code.as_str(), err.fields.message.as_str()),
        ("08P01", "insufficient data left in message")
    );
    let (auth, _) = Authenticator::start(AuthMethod::ScramSha256, "replicator", Some(&r));
    assert_eq!(
        auth.unexpected_message(b'Q').fields.message,
        "expected SASL response, got message type 81"
    );
    let (auth, _) = Authenticator::start(AuthMethod::Password, "replicator", Some(&r));
    assert_eq!(
        auth.unexpected_message(b'X').fields.message,
        "expected password response, got message type 88"
    );
}

#[test]
fn md5_exchange_with_real_verifier() {
    let r = role("alice", ALICE_MD5);
    let (mut auth, first) = Authenticator::start(AuthMethod::Md5, "alice", Some(&r));
    let Authentication::Md5Password { salt } = first else {
        panic!("expected MD5Password, got {first:?}")
    };
    let response = md5_hash(b"alice", b"wonderland", salt);
    assert_eq!(
        auth.step(password_body(response.as_bytes())).unwrap(),
        AuthStep::Done { last: None }
    );

    let (mut auth, first) = Authenticator::start(AuthMethod::Md5, "alice", Some(&r));
    let Authentication::Md5Password { salt } = first else { panic!("expected MD5Password") };
    let wrong = md5_hash(b"alice", b"wonderlanD", salt);
    assert_password_failed(auth.step(password_body(wrong.as_bytes())), "alice");
    // The salt is random per exchange.
    let salts: std::collections::HashSet<[u8; 4]> = (0..8)
        .filter_map(|_| match Authenticator::start(AuthMethod::Md5, "alice", Some(&r)).1 {
            Authentication::Md5Password { salt } => Some(salt),
            _ => None,
        })
        .collect();
    assert!(salts.len() > 1);
}

#[test]
fn cleartext_password_against_both_verifiers() {
    for (name, verifier, good) in
        [("replicator", REPLICATOR_SCRAM, "secret"), ("alice", ALICE_MD5, "wonderland")]
    {
        let r = role(name, verifier);
        let (mut auth, first) = Authenticator::start(AuthMethod::Password, name, Some(&r));
        assert_eq!(first, Authentication::CleartextPassword);
        assert_eq!(
            auth.step(password_body(good.as_bytes())).unwrap(),
            AuthStep::Done { last: None }
        );
        let (mut auth, _) = Authenticator::start(AuthMethod::Password, name, Some(&r));
        assert_password_failed(auth.step(password_body(b"nope")), name);
    }
    let (mut auth, _) = Authenticator::start(AuthMethod::Password, "ghost", None);
    let err = assert_password_failed(auth.step(password_body(b"secret")), "ghost");
    assert_eq!(err.log_detail.as_deref(), Some("Role \"ghost\" does not exist."));
}

#[test]
fn password_packet_errors() {
    let r = role("alice", ALICE_MD5);
    let (mut auth, _) = Authenticator::start(AuthMethod::Password, "alice", Some(&r));
    let err = auth.step(Bytes::from_static(b"\0")).unwrap_err();
    assert_eq!(
        (err.fields.code.as_str(), err.fields.message.as_str()),
        ("28P01", "empty password returned by client")
    );
    let (mut auth, _) = Authenticator::start(AuthMethod::Md5, "alice", Some(&r));
    let err = auth.step(Bytes::from_static(b"md5\0x")).unwrap_err();
    assert_eq!(
        (err.fields.code.as_str(), err.fields.message.as_str()),
        ("08P01", "invalid password packet size")
    );
    assert_eq!(err.fields.severity, "FATAL");
    let err = auth.step(password_body(b"x")).unwrap_err();
    assert_eq!(err.fields.message, "invalid frontend message type 112");
}

#[test]
fn trust_and_reject() {
    let (mut auth, first) = Authenticator::start(AuthMethod::Trust, "u", None);
    assert_eq!(first, Authentication::Ok);
    assert!(auth.is_done());
    assert!(auth.step(password_body(b"x")).is_err());
    let r = role("alice", ALICE_MD5);
    let (mut auth, first) = Authenticator::start(AuthMethod::Reject, "alice", Some(&r));
    assert_eq!(first, Authentication::CleartextPassword);
    assert_password_failed(auth.step(password_body(b"wonderland")), "alice");
}

#[test]
fn roles_file() {
    let text = format!(
        "# comment\n\n  replicator:{REPLICATOR_SCRAM} REPLICATION\nalice:{ALICE_MD5} superuser # admin\n\
         bob: REPLICATION NOLOGIN\n\"bob:x\":{BOB_SCRAM}\ncarol:\n\"q\"\"uote\":\n"
    );
    let roles = Roles::parse(&text).unwrap();
    let rep = roles.get("replicator").unwrap();
    assert!(rep.replication && !rep.superuser && rep.login);
    assert_eq!(rep.verifier.as_ref().unwrap().to_string(), REPLICATOR_SCRAM);
    assert!(roles.get("alice").unwrap().superuser);
    let bob = roles.get("bob").unwrap();
    assert!(bob.verifier.is_none() && !bob.login && bob.replication);
    assert!(roles.get("bob:x").unwrap().verifier.is_some());
    assert!(roles.get("carol").unwrap().verifier.is_none());
    assert!(roles.get("q\"uote").is_some());
    assert!(roles.get("Alice").is_none());
    assert_eq!(Roles::parse(&roles.to_string()).unwrap(), roles);

    for (bad, message) in [
        ("alice", "line 1 of the roles file: expected \"name:verifier\""),
        (":md5", "line 1 of the roles file: empty role name"),
        ("x:secret", "line 1 of the roles file: role \"x\": the password must be a SCRAM-SHA-256 or md5 verifier as pg_authid.rolpassword stores it"),
        ("x: ADMIN", "line 1 of the roles file: role \"x\": unknown attribute \"ADMIN\""),
        ("x:\nx:", "line 2 of the roles file: role \"x\" appears twice"),
        ("\"x:", "line 1 of the roles file: unterminated quoted role name"),
        ("\"x\" :", "line 1 of the roles file: expected \":\" after the quoted role name \"x\""),
    ] {
        assert_eq!(Roles::parse(bad).unwrap_err().to_string(), message, "{bad}");
    }
}

#[test]
fn permissive_roles_and_authorize() {
    let roles = Roles::permissive();
    let anyone = roles.get("anyone").unwrap();
    assert!(anyone.superuser && anyone.replication && anyone.login && anyone.verifier.is_none());
    assert_eq!(roles.to_string(), "");
    assert_eq!(authorize(Some(&anyone), "anyone", true), Ok(()));
    let e = authorize(None, "ghost", false).unwrap_err().fields;
    assert_eq!((e.code.as_str(), e.message.as_str()), ("28000", "role \"ghost\" does not exist"));
    let nologin = Role { login: false, ..Role::new("n") };
    assert_eq!(
        authorize(Some(&nologin), "n", false).unwrap_err().fields.message,
        "role \"n\" is not permitted to log in"
    );
    let plain = Role::new("p");
    assert_eq!(authorize(Some(&plain), "p", false), Ok(()));
    let e = authorize(Some(&plain), "p", true).unwrap_err().fields;
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("42501", "must be superuser or replication role to start walsender")
    );
}

fn arb_role() -> impl Strategy<Value = Role> {
    let verifier = prop_oneof![
        Just(None),
        Just(Verifier::parse(ALICE_MD5)),
        (
            proptest::collection::vec(any::<u8>(), 0..20),
            1u32..10000,
            any::<[u8; 32]>(),
            any::<[u8; 32]>()
        )
            .prop_map(|(salt, iterations, stored_key, server_key)| Some(Verifier::Scram(
                ScramVerifier { iterations, salt, stored_key, server_key }
            ))),
    ];
    ("[^\n\r]{1,12}", verifier, any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(name, verifier, superuser, replication, login)| Role {
            name,
            verifier,
            superuser,
            replication,
            login,
        },
    )
}

proptest! {
    #[test]
    fn roles_round_trip(roles in proptest::collection::vec(arb_role(), 0..6)) {
        let roles = Roles::from_roles(roles);
        prop_assert_eq!(Roles::parse(&roles.to_string()).unwrap(), roles);
    }

    #[test]
    fn roles_parse_never_panics(text in "\\PC*") {
        let _ = Roles::parse(&text);
    }

    #[test]
    fn fuzz_roles_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        fuzz_roles(&data);
    }

    #[test]
    fn fuzz_scram_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        fuzz_scram(&data);
    }

    /// SCRAM-shaped messages with random edits never panic the server.
    #[test]
    fn scram_shaped_input_never_panics(
        first in "[nyp]?,?(a=x)?,?(m=1,)?n=[a-z]{0,3},r=[!-~]{0,6}(,[a-z]=[a-z]*)?",
        last in "(c=(biws|eSws|x),)?r=[!-~]{0,40}(,x=1)?(,p=[A-Za-z0-9+/=]{0,48})?,?",
        with_role in any::<bool>(),
    ) {
        let r = role("replicator", REPLICATOR_SCRAM);
        let (mut auth, _) = Authenticator::start(AuthMethod::ScramSha256, "replicator", with_role.then_some(&r));
        if let Ok(AuthStep::Send(Authentication::SaslContinue(server_first))) =
            auth.step(initial_body(SCRAM_SHA_256, Some(first.as_bytes())))
        {
            let nonce = String::from_utf8_lossy(&server_first).split(',').next().unwrap_or("").to_owned();
            let _ = auth.step(Bytes::from(last.replace("r=", &format!("{nonce}x"))));
        }
    }
}

#[test]
fn scram_plus_binds_to_the_server_certificate_hash() {
    let r = role("replicator", REPLICATOR_SCRAM);
    let hash = vec![7u8; 32];
    let start = || {
        Authenticator::start_tls(
            AuthMethod::ScramSha256,
            "replicator",
            Some(&r),
            Some(hash.clone()),
        )
    };
    let (mut auth, first) = start();
    assert_eq!(
        first,
        Authentication::Sasl {
            mechanisms: vec!["SCRAM-SHA-256-PLUS".into(), "SCRAM-SHA-256".into()]
        }
    );
    let bound = ChannelBinding::tls_server_end_point(hash.clone());
    run_scram_as(&mut auth, SCRAM_SHA_256_PLUS, b"secret", bound).unwrap();
    // The plain mechanism still works over TLS.
    let (mut auth, _) = start();
    run_scram(&mut auth, b"secret", ChannelBinding::unsupported()).unwrap();
    // Another certificate's hash (a man in the middle): 28000.
    let (mut auth, _) = start();
    let wrong = ChannelBinding::tls_server_end_point(vec![8u8; 32]);
    let e = run_scram_as(&mut auth, SCRAM_SHA_256_PLUS, b"secret", wrong).unwrap_err();
    assert_eq!(
        (e.fields.code.as_str(), e.fields.message.as_str()),
        ("28000", "SCRAM channel binding check failed")
    );
    // A client that could bind but thinks the server cannot (auth-scram.c).
    let (mut auth, _) = start();
    let e = run_scram(&mut auth, b"secret", ChannelBinding::unrequested()).unwrap_err();
    assert_eq!(e.fields.message, "SCRAM channel binding negotiation error");
    // PLUS selected without binding data.
    let (mut auth, _) = start();
    let e = run_scram_as(&mut auth, SCRAM_SHA_256_PLUS, b"secret", ChannelBinding::unsupported())
        .unwrap_err();
    assert_eq!(
        e.fields.detail.as_deref(),
        Some("The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data.")
    );
    // Without TLS, PLUS is not offered and selecting it is refused.
    let (mut auth, first) = Authenticator::start(AuthMethod::ScramSha256, "replicator", Some(&r));
    assert_eq!(first, sasl_request());
    let e = run_scram_as(&mut auth, SCRAM_SHA_256_PLUS, b"secret", ChannelBinding::unsupported())
        .unwrap_err();
    assert_eq!(e.fields.message, "client selected an invalid SASL authentication mechanism");
}
