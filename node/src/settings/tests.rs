//! Tests of the node's settings.

use std::path::PathBuf;

use super::*;

#[test]
fn defaults_are_postgresql_15s() {
    let s = NodeSettings::default();
    let cases = [
        ("port", "5432"),
        ("listen_addresses", "localhost"),
        ("synchronous_commit", "on"),
        ("fsync", "on"),
        ("wal_writer_delay", "200ms"),
        ("hot_standby", "on"),
        ("wal_receiver_status_interval", "10s"),
        ("wal_receiver_timeout", "1min"),
        ("wal_retrieve_retry_interval", "5s"),
        ("max_standby_streaming_delay", "30s"),
        ("statement_timeout", "0"),
        ("max_wal_size", "1GB"),
        ("min_wal_size", "80MB"),
        ("checkpoint_timeout", "5min"),
        ("max_wal_senders", "10"),
        ("recovery_target_timeline", "latest"),
    ];
    for (name, want) in cases {
        assert_eq!(s.show(name).as_deref(), Some(want), "{name}");
    }
    assert_eq!(s.show("no_such_thing"), None);
    assert_eq!(s.duration("wal_writer_delay"), Duration::from_millis(200));
    assert_eq!(s.duration("wal_receiver_status_interval"), Duration::from_secs(10));
    assert!(s.bool("fsync"));
    assert_eq!(s.sender().max_wal_size_mb, Some(1024));
}

#[test]
fn values_are_checked_and_shown_canonically() {
    let mut s = NodeSettings::default();
    s.set("synchronous_commit", "Remote_Apply").unwrap();
    assert_eq!(s.show("synchronous_commit").as_deref(), Some("remote_apply"));
    s.set("synchronous_commit", "false").unwrap();
    assert_eq!(s.show("synchronous_commit").as_deref(), Some("off"));
    let e = s.set("synchronous_commit", "maybe").unwrap_err();
    assert_eq!(e.fields.message, "invalid value for parameter \"synchronous_commit\": \"maybe\"");
    assert_eq!(
        e.fields.hint.as_deref(),
        Some("Available values: local, remote_write, remote_apply, on, off.")
    );
    s.set("fsync", "o").unwrap_err();
    s.set("fsync", "OFF").unwrap();
    assert!(!s.bool("fsync"));
    s.set("FSYNC", "y").unwrap();
    assert!(s.bool("fsync"));
    s.set("wal_writer_delay", "1s").unwrap();
    assert_eq!(s.show("wal_writer_delay").as_deref(), Some("1s"));
    let e = s.set("port", "70000").unwrap_err();
    assert_eq!(
        e.fields.message,
        "70000 is outside the valid range for parameter \"port\" (1 .. 65535)"
    );
    let e = s.set("nope", "1").unwrap_err();
    assert_eq!(e.fields.code, "42704");
    s.set("wal_sender_timeout", "5s").unwrap();
    assert_eq!(s.sender().wal_sender_timeout, Duration::from_secs(5));
    assert_eq!(NodeSettings::context("port"), Some(Context::Postmaster));
    assert_eq!(NodeSettings::context("max_wal_senders"), Some(Context::Postmaster));
    assert_eq!(NodeSettings::context("synchronous_commit"), Some(Context::User));
    assert_eq!(NodeSettings::context("wal_keep_size"), Some(Context::Sighup));
    assert_eq!(NodeSettings::context("nope"), None);
}

#[test]
fn load_reports_every_bad_entry_with_its_place() {
    let entry = |name: &str, value: &str, line| ConfEntry {
        name: name.into(),
        value: value.into(),
        file: PathBuf::from("/d/postgresql.conf"),
        line,
    };
    let ok = NodeSettings::load(
        &[entry("port", "5433", 1), entry("port", "5434", 2)],
        &[("fsync".into(), "off".into())],
    )
    .unwrap();
    assert_eq!(ok.int("port"), 5434);
    assert!(!ok.bool("fsync"));
    let errs = NodeSettings::load(&[entry("foo", "1", 3), entry("port", "x", 4)], &[]).unwrap_err();
    assert_eq!(
        errs[0].to_string(),
        "unrecognized configuration parameter \"foo\" in file \"/d/postgresql.conf\" line 3"
    );
    assert_eq!(errs[1].line, 4);
}

#[test]
fn parse_bool_takes_postgresqls_spellings() {
    for t in ["on", "ON", "true", "t", "tr", "yes", "y", "1"] {
        assert_eq!(parse_bool(t), Some(true), "{t}");
    }
    for f in ["off", "of", "false", "f", "no", "n", "0"] {
        assert_eq!(parse_bool(f), Some(false), "{f}");
    }
    assert_eq!(parse_bool("o"), None);
    assert_eq!(parse_bool("2"), None);
}

#[test]
fn synchronous_standby_names_is_checked_as_postgresql_checks_it() {
    let mut s = NodeSettings::default();
    s.set("synchronous_standby_names", "ANY 2 (s1, \"S 2\")").unwrap();
    assert_eq!(s.show("synchronous_standby_names").unwrap(), "ANY 2 (s1, \"S 2\")");
    // ALTER SYSTEM SET synchronous_standby_names = 'a b' on PostgreSQL 15.
    let e = s.set("synchronous_standby_names", "a b").unwrap_err();
    assert_eq!(e.fields.code, "42601");
    assert_eq!(
        e.fields.message,
        "invalid value for parameter \"synchronous_standby_names\": \"a b\""
    );
    assert_eq!(e.fields.detail.as_deref(), Some("syntax error at or near \"b\""));
    let e = s.set("synchronous_standby_names", "FIRST 0 (a)").unwrap_err();
    assert_eq!(e.fields.code, "22023");
    assert_eq!(e.fields.message, "number of synchronous standbys (0) must be greater than zero");
    // The refused values left the setting as it was.
    assert_eq!(s.show("synchronous_standby_names").unwrap(), "ANY 2 (s1, \"S 2\")");
}
