//! Unit and property tests for connection strings.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> =
        vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |k| map.get(k).cloned()
}

fn parse(s: &str) -> Result<ConnInfo, ConnInfoError> {
    ConnInfo::parse_with_env(s, &env_of(&[("USER", "osuser")]))
}

#[test]
fn defaults_like_libpq() {
    let info = parse("").unwrap();
    assert_eq!(info.host, "localhost");
    assert_eq!(info.port, 5432);
    assert_eq!(info.user, "osuser");
    assert_eq!(info.database(), "osuser");
    assert_eq!(info.password, None);
    assert_eq!(info.sslmode, SslMode::Prefer);
    assert_eq!(info.connect_timeout, None);
    assert_eq!(info.passfile, None);
    assert!(info.options.is_empty());
}

#[test]
fn environment_supplies_defaults_and_the_string_wins() {
    let env = env_of(&[
        ("USER", "osuser"),
        ("PGHOST", "envhost"),
        ("PGPORT", "6000"),
        ("PGUSER", "envuser"),
        ("PGPASSWORD", "envpw"),
        ("PGDATABASE", "envdb"),
        ("PGAPPNAME", "envapp"),
        ("PGCONNECT_TIMEOUT", "1"),
        ("PGSSLMODE", "disable"),
        ("HOME", "/home/x"),
    ]);
    let info = ConnInfo::parse_with_env("port=7000 application_name=''", &env).unwrap();
    assert_eq!(info.host, "envhost");
    assert_eq!(info.port, 7000);
    assert_eq!(info.user, "envuser");
    assert_eq!(info.password.as_deref(), Some("envpw"));
    assert_eq!(info.database(), "envdb");
    assert_eq!(info.application_name, None, "an empty value given beats the environment");
    assert_eq!(info.connect_timeout, Some(Duration::from_secs(2)), "libpq's 2 s minimum");
    assert_eq!(info.sslmode, SslMode::Disable);
    assert_eq!(info.passfile.as_deref(), Some(std::path::Path::new("/home/x/.pgpass")));
}

#[test]
fn uri_and_key_values_agree() {
    let a =
        parse("postgresql://rep:secret@127.0.0.1:5433/replication?application_name=w&keepalives=1")
            .unwrap();
    let b = parse(
        "user=rep password=secret host=127.0.0.1 port=5433 dbname=replication \
         application_name=w keepalives=1",
    )
    .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.option("keepalives"), Some("1"));
}

#[test]
fn errors_have_libpq_text() {
    let e = |s| parse(s).unwrap_err().to_string();
    assert_eq!(e("hots=x"), "invalid connection option \"hots\"");
    assert_eq!(e("port=abc"), "invalid port number: \"abc\"");
    assert_eq!(e("port=70000"), "invalid port number: \"70000\"");
    assert_eq!(e("sslmode=maybe"), "invalid sslmode value: \"maybe\"");
    assert_eq!(e("channel_binding=maybe"), "invalid channel_binding value: \"maybe\"");
    assert_eq!(
        e("ssl_min_protocol_version=SSLv3"),
        "invalid ssl_min_protocol_version value: \"SSLv3\""
    );
    assert_eq!(
        e("ssl_min_protocol_version=TLSv1.3 ssl_max_protocol_version=tlsv1.2"),
        "invalid SSL protocol version range"
    );
    assert_eq!(
        e("connect_timeout=soon"),
        "invalid integer value \"soon\" for connection option \"connect_timeout\""
    );
    assert_eq!(e("host=/var/run/postgresql"), "Unix-domain sockets are not supported");
    assert_eq!(e("host=a,b"), "multiple hosts are not supported");
    assert_eq!(ConnInfo::parse_with_env("", &|_| None).unwrap_err(), ConnInfoError::NoUser);
}

#[test]
fn later_values_override_earlier_ones() {
    let info = parse("port=1 keepalives=0 port=2 keepalives=1").unwrap();
    assert_eq!(info.port, 2);
    assert_eq!(info.options, vec![("keepalives".to_string(), "1".to_string())]);
}

#[test]
fn display_quotes_and_debug_hides_the_password() {
    let info = parse(r"user=a password='it\'s' application_name='x\\y'").unwrap();
    let shown = info.to_string();
    assert_eq!(
        shown,
        r"host='localhost' port='5432' user='a' password='it\'s' application_name='x\\y' sslmode='prefer'"
    );
    assert!(!format!("{info:?}").contains("it\\'s"));
    assert_eq!(parse(&shown).unwrap(), info);
}

#[test]
fn os_user_is_known() {
    // The harness runs as some user; getpwuid_r must find it.
    assert!(os_env("USER").is_some_and(|u| !u.is_empty()));
}

fn value() -> impl Strategy<Value = String> {
    "[ -~\\n\\té]{0,12}"
}

fn nonempty() -> impl Strategy<Value = String> {
    "[ -~é]{1,12}"
}

prop_compose! {
    fn arb_conninfo()(
        host in "[a-z0-9.:-]{1,20}",
        port in 1u16..,
        user in nonempty(),
        password in proptest::option::of(nonempty()),
        dbname in proptest::option::of(nonempty()),
        application_name in proptest::option::of(nonempty()),
        timeout in proptest::option::of(2u64..100_000),
        sslmode in prop::sample::select(vec![
            SslMode::Disable, SslMode::Allow, SslMode::Prefer,
            SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull,
        ]),
        passfile in proptest::option::of("/[a-z/]{1,10}"),
        keepalives in proptest::option::of(value()),
        options in proptest::option::of(value()),
    ) -> ConnInfo {
        let mut extra = Vec::new();
        extra.extend(keepalives.map(|v| ("keepalives".to_string(), v)));
        extra.extend(options.map(|v| ("options".to_string(), v)));
        ConnInfo {
            host, port, user, password, dbname, application_name,
            connect_timeout: timeout.map(Duration::from_secs),
            sslmode, passfile: passfile.map(Into::into), options: extra,
        }
    }
}

proptest! {
    #[test]
    fn display_parse_round_trip(info in arb_conninfo()) {
        prop_assume!(!info.host.starts_with('/'));
        let again = ConnInfo::parse_with_env(&info.to_string(), &|_| None);
        prop_assert_eq!(again, Ok(info));
    }

    #[test]
    fn never_panics_on_arbitrary_strings(s in "\\PC{0,64}") {
        let _ = parse(&s);
    }

    #[test]
    fn never_panics_on_connection_string_like_input(
        s in "(postgres(ql)?://)?[a-z@:/?=&%\\[\\]', \\\\0-9]{0,40}"
    ) {
        fuzz_conninfo(s.as_bytes());
    }

    #[test]
    fn fuzz_entry_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
        fuzz_conninfo(&data);
    }
}

#[test]
fn retarget_keeps_everything_but_the_server() {
    let got = retarget(
        "user=replicator passfile='/var/lib/pg/.pgpass' host=10.0.0.1 port=5432 application_name=s1 hostaddr=10.0.0.1",
        "127.0.0.1",
        6000,
    )
    .unwrap();
    assert_eq!(
        got,
        "user='replicator' passfile='/var/lib/pg/.pgpass' application_name='s1' host='127.0.0.1' port='6000'"
    );
    let uri = retarget("postgresql://u@old:1/db?application_name=it's", "new", 2).unwrap();
    let back = parse(&uri).unwrap();
    assert_eq!((back.host.as_str(), back.port, back.user.as_str()), ("new", 2, "u"));
    assert_eq!(back.application_name.as_deref(), Some("it's"));
    assert!(retarget("host='unterminated", "h", 1).is_err());
}

proptest! {
    #[test]
    fn retargeted_strings_parse_back(app in "[ -~]{0,20}", user in "[a-z]{1,8}", port in 1u16..) {
        let original = format!("user={user} application_name='{}'", app.replace('\\', "\\\\").replace('\'', "\\'"));
        let got = retarget(&original, "127.0.0.1", port).unwrap();
        let back = parse(&got).unwrap();
        prop_assert_eq!(back.port, port);
        prop_assert_eq!(back.host.as_str(), "127.0.0.1");
        prop_assert_eq!(back.user, user);
        prop_assert_eq!(back.application_name.unwrap_or_default(), app);
    }
}
