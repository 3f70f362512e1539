//! Tests of pg_hba.conf parsing and matching.

use super::*;
use proptest::prelude::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn line_error(text: &str) -> (usize, String) {
    match HbaFile::parse(text) {
        Err(HbaError::Line { line_number, message, .. }) => (line_number, message),
        other => panic!("expected a line error for {text:?}, got {other:?}"),
    }
}

fn conn<'a>(user: &'a str, database: &'a str, replication: bool) -> ConnInfo<'a> {
    ConnInfo { user, database, replication, ssl: false }
}

fn method(file: &HbaFile, client: &str, user: &str, db: &str, repl: bool) -> Option<AuthMethod> {
    file.find(ip(client), &conn(user, db, repl)).map(|r| r.method)
}

#[test]
fn pg_texts_for_bad_lines() {
    let cases = [
        ("host all all 127.0.0.1/32 foo", "invalid authentication method \"foo\""),
        (
            "host all all 127.0.0.1/32 ldap",
            "invalid authentication method \"ldap\": not supported by this build",
        ),
        ("host all all 127.0.0.1/32", "end-of-line before authentication method"),
        ("host all", "end-of-line before role specification"),
        ("host", "end-of-line before database specification"),
        ("host all all", "end-of-line before IP address specification"),
        ("local all", "end-of-line before role specification"),
        ("hots all all all trust", "invalid connection type \"hots\""),
        ("host,local all all all trust", "multiple values specified for connection type"),
        ("host all all 1.2.3.4/32,::1/128 trust", "multiple values specified for host address"),
        ("host all all all md5,trust", "multiple values specified for authentication type"),
        ("host all all 127.0.0.1/33 trust", "invalid CIDR mask in address \"127.0.0.1/33\""),
        ("host all all ::1/129 trust", "invalid CIDR mask in address \"::1/129\""),
        ("host all all 127.0.0.1/x trust", "invalid CIDR mask in address \"127.0.0.1/x\""),
        (
            "host all all example.com/24 trust",
            "specifying both host name and CIDR mask is invalid: \"example.com/24\"",
        ),
        (
            "host all all example.com trust",
            "invalid IP address \"example.com\": host names are not supported",
        ),
        ("host all all 127.0.0.1 trust", "invalid IP mask \"trust\": Name or service not known"),
        ("host all all 127.0.0.1", "end-of-line before netmask specification"),
        ("host all all 127.0.0.1 ffff:: trust", "IP address and mask do not match"),
        ("host all all all trust foo", "authentication option not in name=value format: foo"),
        ("host all all all md5 clientcert=verify-ca", "clientcert can only be configured for \"hostssl\" rows"),
        ("host all all all md5 map=x", "authentication option \"map\" is only valid for authentication methods ident, peer, gssapi, sspi, and cert"),
        ("host all all all md5 ldapserver=x", "authentication option \"ldapserver\" is only valid for authentication methods ldap"),
        ("host all all all md5 foo=bar", "unrecognized authentication option name: \"foo\""),
        // postgres -c ssl=on with each line as its pg_hba.conf
        ("host all all all cert", "cert authentication is only supported on hostssl connections"),
        ("hostssl all all all trust clientcert=foo", "invalid value for clientcert: \"foo\""),
        ("hostssl all all all cert clientcert=verify-ca", "clientcert only accepts \"verify-full\" when using \"cert\" authentication"),
        ("hostssl all all all trust clientcert=verify-ca clientname=XY", "invalid value for clientname: \"XY\""),
        ("host all @admins all trust", "could not open secondary authentication file \"@admins\": inclusion with @ is not supported"),
    ];
    for (text, message) in cases {
        assert_eq!(line_error(text), (1, message.to_owned()), "{text}");
    }
    assert_eq!(line_error("# c\n\nhost all all all foo\n").0, 3);
    assert!(matches!(HbaFile::parse("# nothing\n\n"), Err(HbaError::NoEntries)));
}

#[test]
fn hints_and_display() {
    let err = HbaFile::parse("host all all 10.0.0.1").unwrap_err();
    assert!(matches!(
        err,
        HbaError::Line {
            hint: Some("Specify an address range in CIDR notation, or provide a separate netmask."),
            ..
        }
    ));
    assert_eq!(err.to_string(), "end-of-line before netmask specification (line 1 of pg_hba.conf)");
}

#[test]
fn accepted_lines() {
    let file = HbaFile::parse("local all all trust\n").unwrap();
    assert_eq!(file.rules()[0].conn_type, ConnType::Local);
    assert_eq!(file.rules()[0].address, None);
    let file = HbaFile::parse(
        "hostssl all all all md5 clientcert=verify-ca\nhost all all 10.0.0.0 255.0.0.0 password\n",
    )
    .unwrap();
    assert_eq!(file.rules()[0].options, vec![("clientcert".into(), "verify-ca".into())]);
    assert_eq!(file.rules()[0].clientcert, ClientCert::VerifyCa);
    assert_eq!(file.rules()[1].clientcert, ClientCert::Off);
    assert_eq!(
        file.rules()[1].address,
        Some(AddrMatch::Net { addr: ip("10.0.0.0"), mask: ip("255.0.0.0") })
    );
    assert_eq!(file.rules()[1].method, AuthMethod::Password);
    let file = HbaFile::parse("hostssl all all all cert clientname=DN\n").unwrap();
    assert_eq!(file.rules()[0].method, AuthMethod::Cert);
    assert_eq!(file.rules()[0].clientcert, ClientCert::VerifyFull);
    assert!(file.rules()[0].clientname_dn);
}

#[test]
fn first_match_and_connection_types() {
    let file = HbaFile::parse(
        "local all all trust\n\
         hostssl all all all trust\n\
         hostgssenc all all all trust\n\
         host all bad 127.0.0.1/32 reject\n\
         hostnossl db1 all 127.0.0.0/8 md5\n\
         hostnogssenc all all 127.0.0.0/8 scram-sha-256\n\
         host replication replicator 10.1.0.0/16 password\n",
    )
    .unwrap();
    assert_eq!(method(&file, "127.0.0.1", "bad", "db1", false), Some(AuthMethod::Reject));
    assert_eq!(method(&file, "127.0.0.1", "u", "db1", false), Some(AuthMethod::Md5));
    assert_eq!(method(&file, "127.0.0.2", "u", "db2", false), Some(AuthMethod::ScramSha256));
    assert_eq!(method(&file, "::1", "u", "db2", false), None);
    assert_eq!(method(&file, "::ffff:127.0.0.1", "u", "db2", false), Some(AuthMethod::ScramSha256));
    assert_eq!(method(&file, "10.1.2.3", "replicator", "x", true), Some(AuthMethod::Password));
    assert_eq!(method(&file, "10.1.2.3", "other", "x", true), None);
    assert_eq!(method(&file, "10.2.0.1", "replicator", "x", true), None);
    assert_eq!(file.find(ip("127.0.0.1"), &conn("u", "db1", false)).unwrap().line_number, 5);
    // Over TLS, hostssl matches and hostnossl does not.
    let tls = ConnInfo { ssl: true, ..conn("u", "db1", false) };
    assert_eq!(file.find(ip("127.0.0.1"), &tls).unwrap().line_number, 2);
    let file = HbaFile::parse("hostnossl all all all trust\nhost all all all md5\n").unwrap();
    assert_eq!(file.find(ip("127.0.0.1"), &tls).unwrap().method, AuthMethod::Md5);
}

#[test]
fn database_keywords() {
    let file = HbaFile::parse(
        "host sameuser all all trust\n\
         host samerole all all password\n\
         host \"all\",replication all all md5\n\
         host all all 10.0.0.0/8 reject\n\
         host \"replication\" all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    assert_eq!(method(&file, "127.0.0.1", "u", "u", false), Some(AuthMethod::Trust));
    assert_eq!(method(&file, "127.0.0.1", "u", "all", false), Some(AuthMethod::Md5));
    // `all` never matches a physical replication connection; `replication` only does.
    assert_eq!(method(&file, "10.0.0.1", "u", "x", true), Some(AuthMethod::Md5));
    assert_eq!(method(&file, "10.0.0.1", "u", "x", false), Some(AuthMethod::Reject));
    // The keyword `replication` never matches an ordinary connection; quoted, it is a name.
    assert_eq!(
        method(&file, "127.0.0.1", "u", "replication", false),
        Some(AuthMethod::ScramSha256)
    );
    let only_all = HbaFile::parse("host all all all trust").unwrap();
    assert_eq!(method(&only_all, "127.0.0.1", "u", "replication", true), None);
}

#[test]
fn user_keywords() {
    let file = HbaFile::parse(
        "host all +admins all reject\n\
         host all \"+alice\" all md5\n\
         host all \"all\" all password\n\
         host all bob,carol all scram-sha-256\n\
         host all all 127.0.0.1/32 trust\n",
    )
    .unwrap();
    assert_eq!(method(&file, "127.0.0.1", "admins", "d", false), Some(AuthMethod::Reject));
    assert_eq!(method(&file, "127.0.0.1", "+alice", "d", false), Some(AuthMethod::Md5));
    assert_eq!(method(&file, "127.0.0.1", "alice", "d", false), Some(AuthMethod::Trust));
    assert_eq!(method(&file, "127.0.0.1", "all", "d", false), Some(AuthMethod::Password));
    assert_eq!(method(&file, "127.0.0.1", "carol", "d", false), Some(AuthMethod::ScramSha256));
}

#[test]
fn addresses() {
    let file = HbaFile::parse(
        "host all a samehost trust\n\
         host all b samenet trust\n\
         host all c fe80::/10 trust\n\
         host all d 192.168.1.7 255.255.255.0 trust\n\
         host all e 0.0.0.0/0 trust\n",
    )
    .unwrap();
    assert_eq!(method(&file, "127.0.0.1", "a", "d", false), Some(AuthMethod::Trust));
    assert_eq!(method(&file, "::1", "b", "d", false), Some(AuthMethod::Trust));
    assert_eq!(method(&file, "10.0.0.1", "a", "d", false), None);
    assert_eq!(method(&file, "fe80::1", "c", "d", false), Some(AuthMethod::Trust));
    assert_eq!(method(&file, "fec0::1", "c", "d", false), None);
    assert_eq!(method(&file, "192.168.1.200", "d", "d", false), Some(AuthMethod::Trust));
    assert_eq!(method(&file, "192.168.2.7", "d", "d", false), None);
    assert_eq!(method(&file, "8.8.8.8", "e", "d", false), Some(AuthMethod::Trust));
    assert_eq!(method(&file, "::2", "e", "d", false), None);
}

#[test]
fn loopback_trust_default() {
    let file = HbaFile::loopback_trust();
    assert_eq!(file.rules().len(), 4);
    for client in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
        for repl in [false, true] {
            assert_eq!(method(&file, client, "u", "d", repl), Some(AuthMethod::Trust), "{client}");
        }
    }
    assert_eq!(method(&file, "10.0.0.1", "u", "d", false), None);
    assert_eq!(method(&file, "::2", "u", "d", true), None);
}

#[test]
fn fatal_texts() {
    let e = no_entry_error(ip("127.0.0.1"), &conn("postgres", "replication", true));
    assert_eq!(e.code, "28000");
    assert_eq!(e.severity, "FATAL");
    assert_eq!(
        e.message,
        "no pg_hba.conf entry for replication connection from host \"127.0.0.1\", user \"postgres\", no encryption"
    );
    assert_eq!(
        no_entry_error(ip("::1"), &conn("u", "d", false)).message,
        "no pg_hba.conf entry for host \"::1\", user \"u\", database \"d\", no encryption"
    );
    assert_eq!(
        reject_error(ip("::ffff:10.0.0.1"), &conn("u", "d", false)).message,
        "pg_hba.conf rejects connection for host \"10.0.0.1\", user \"u\", database \"d\", no encryption"
    );
    let r = reject_error(ip("127.0.0.1"), &conn("u", "d", true));
    assert_eq!(
        r.message,
        "pg_hba.conf rejects replication connection for host \"127.0.0.1\", user \"u\", no encryption"
    );
    assert_eq!(r.code, "28000");
    let tls = ConnInfo { ssl: true, ..conn("u", "d", false) };
    assert_eq!(
        no_entry_error(ip("127.0.0.1"), &tls).message,
        "no pg_hba.conf entry for host \"127.0.0.1\", user \"u\", database \"d\", SSL encryption"
    );
}

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("all".to_owned()),
        Just("replication".to_owned()),
        Just("\"all\"".to_owned()),
        Just("+g".to_owned()),
        "[a-z]{1,6}",
    ]
}

proptest! {
    #[test]
    fn parse_never_panics(text in "\\PC*") {
        let _ = HbaFile::parse(&text);
    }

    #[test]
    fn fuzz_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        fuzz_hba(&data);
    }

    #[test]
    fn lines_of_hba_shaped_text_never_panic(
        fields in proptest::collection::vec(prop_oneof![
            word(),
            Just("host".to_owned()),
            Just("127.0.0.1/32".to_owned()),
            Just("::1".to_owned()),
            Just("255.0.0.0".to_owned()),
            Just("md5".to_owned()),
            Just("trust".to_owned()),
            Just("a=b".to_owned()),
            Just("clientcert=1".to_owned()),
            Just("\"".to_owned()),
            Just(",".to_owned()),
            Just("\\\n".to_owned()),
        ], 0..8),
    ) {
        fuzz_hba(fields.join(" ").as_bytes());
    }

    /// A rule written from parts parses back to those parts.
    #[test]
    fn written_rule_parses_back(
        dbs in proptest::collection::vec(word(), 1..3),
        users in proptest::collection::vec(word(), 1..3),
        a in any::<u32>(),
        bits in 0u32..=32,
        m in prop_oneof![Just(AuthMethod::Trust), Just(AuthMethod::Reject), Just(AuthMethod::Password), Just(AuthMethod::Md5), Just(AuthMethod::ScramSha256)],
    ) {
        let addr = Ipv4Addr::from(a);
        let text = format!("host {} {} {addr}/{bits} {m}", dbs.join(","), users.join(","));
        let file = HbaFile::parse(&text).unwrap();
        let rule = &file.rules()[0];
        prop_assert_eq!(rule.method, m);
        let texts = |t: &[HbaToken]| t.iter().map(|t| if t.quoted { format!("\"{}\"", t.text) } else { t.text.clone() }).collect::<Vec<_>>();
        prop_assert_eq!(texts(&rule.databases), dbs);
        prop_assert_eq!(texts(&rule.users), users);
        prop_assert!(rule.address.unwrap().matches(IpAddr::V4(addr)));
    }
}
