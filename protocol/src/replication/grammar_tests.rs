//! Tests of the replication grammar: the commands real clients send (from
//! `reference/captures/*.log`), the errors a live PostgreSQL 15.18 gives, round trips
//! through `Display`, and arbitrary input.

use super::*;
use crate::{Lsn, TimeLineId};
use proptest::prelude::*;
use ReplicationCommand as C;

fn physical(slot: Option<&str>, start: u64, tli: Option<u32>) -> ReplicationCommand {
    C::StartReplication {
        kind: ReplicationKind::Physical,
        slot_name: slot.map(str::to_string),
        timeline: tli.map(TimeLineId),
        start: Lsn(start),
        options: vec![],
    }
}

fn create(name: &str, temporary: bool, kind: SlotKind, options: Vec<GenericOption>) -> C {
    C::CreateReplicationSlot { slot_name: name.into(), temporary, kind, options }
}

fn ident(name: &str, v: &str) -> GenericOption {
    GenericOption { name: name.into(), value: Some(OptionValue::Ident(v.into())) }
}

#[test]
fn commands_real_clients_send() {
    let pgoutput = || SlotKind::Logical { plugin: "pgoutput".into() };
    let table: Vec<(&str, ReplicationCommand)> = vec![
        ("IDENTIFY_SYSTEM", C::IdentifySystem),
        ("IDENTIFY_SYSTEM;", C::IdentifySystem),
        ("  IDENTIFY_SYSTEM  ;  ", C::IdentifySystem),
        ("START_REPLICATION SLOT \"rw_slot\" 0/1000000 TIMELINE 1", physical(Some("rw_slot"), 0x100_0000, Some(1))),
        ("START_REPLICATION 0/4000000 TIMELINE 2", physical(None, 0x400_0000, Some(2))),
        ("START_REPLICATION PHYSICAL 16/B374D848", physical(None, 0x16_B374_D848, None)),
        ("START_REPLICATION SLOT \"x\" PHYSICAL 0/0 TIMELINE 1 ;", physical(Some("x"), 0, Some(1))),
        (
            "CREATE_REPLICATION_SLOT \"pg_walreceiver_123\" TEMPORARY PHYSICAL (RESERVE_WAL)",
            create("pg_walreceiver_123", true, SlotKind::Physical, vec![GenericOption::flag("reserve_wal")]),
        ),
        ("CREATE_REPLICATION_SLOT \"rw_slot\" PHYSICAL", create("rw_slot", false, SlotKind::Physical, vec![])),
        (
            "CREATE_REPLICATION_SLOT a PHYSICAL RESERVE_WAL",
            create("a", false, SlotKind::Physical, vec![GenericOption::flag("reserve_wal")]),
        ),
        (
            "CREATE_REPLICATION_SLOT c PHYSICAL (RESERVE_WAL false)",
            create("c", false, SlotKind::Physical, vec![ident("reserve_wal", "false")]),
        ),
        (
            "CREATE_REPLICATION_SLOT l LOGICAL pgoutput EXPORT_SNAPSHOT TWO_PHASE",
            create("l", false, pgoutput(), vec![
                GenericOption::string("snapshot", "export"),
                GenericOption::flag("two_phase"),
            ]),
        ),
        (
            "CREATE_REPLICATION_SLOT l LOGICAL pgoutput NOEXPORT_SNAPSHOT USE_SNAPSHOT",
            create("l", false, pgoutput(), vec![
                GenericOption::string("snapshot", "nothing"),
                GenericOption::string("snapshot", "use"),
            ]),
        ),
        (
            "CREATE_REPLICATION_SLOT \"s\" LOGICAL pgoutput (SNAPSHOT 'nothing', TWO_PHASE)",
            create("s", false, pgoutput(), vec![
                GenericOption::string("snapshot", "nothing"),
                GenericOption::flag("two_phase"),
            ]),
        ),
        ("TIMELINE_HISTORY 2", C::TimelineHistory { tli: TimeLineId(2) }),
        ("READ_REPLICATION_SLOT s", C::ReadReplicationSlot { slot_name: "s".into() }),
        ("READ_REPLICATION_SLOT rw_slot", C::ReadReplicationSlot { slot_name: "rw_slot".into() }),
        ("READ_REPLICATION_SLOT a.b", C::ReadReplicationSlot { slot_name: "a.b".into() }),
        ("DROP_REPLICATION_SLOT x WAIT", C::DropReplicationSlot { slot_name: "x".into(), wait: true }),
        ("DROP_REPLICATION_SLOT MySlot", C::DropReplicationSlot { slot_name: "myslot".into(), wait: false }),
        ("DROP_REPLICATION_SLOT \"Ab c\"", C::DropReplicationSlot { slot_name: "Ab c".into(), wait: false }),
        ("DROP_REPLICATION_SLOT \"\"", C::DropReplicationSlot { slot_name: "".into(), wait: false }),
        (
            "BASE_BACKUP ( LABEL 'pg_basebackup base backup',  PROGRESS,  CHECKPOINT 'fast',  WAIT 0,  MANIFEST 'yes',  TARGET 'client')",
            C::BaseBackup {
                options: vec![
                    GenericOption::string("label", "pg_basebackup base backup"),
                    GenericOption::flag("progress"),
                    GenericOption::string("checkpoint", "fast"),
                    GenericOption::int("wait", 0),
                    GenericOption::string("manifest", "yes"),
                    GenericOption::string("target", "client"),
                ],
            },
        ),
        ("BASE_BACKUP", C::BaseBackup { options: vec![] }),
        ("BASE_BACKUP (LABEL 'it''s')", C::BaseBackup { options: vec![GenericOption::string("label", "it's")] }),
        (
            "BASE_BACKUP (WAIT false, CHECKPOINT fast, MAX_RATE 1024, TEMPORARY)",
            C::BaseBackup {
                options: vec![
                    ident("wait", "false"),
                    ident("checkpoint", "fast"),
                    GenericOption::int("max_rate", 1024),
                    GenericOption::flag("temporary"),
                ],
            },
        ),
        ("SHOW wal_segment_size", C::Show { name: "wal_segment_size".into() }),
        ("SHOW data_directory_mode;", C::Show { name: "data_directory_mode".into() }),
        ("SHOW \"A\".b", C::Show { name: "A.b".into() }),
        (
            "START_REPLICATION SLOT x LOGICAL 0/0 (proto_version '1', publication_names '\"p\"', binary)",
            C::StartReplication {
                kind: ReplicationKind::Logical,
                slot_name: Some("x".into()),
                timeline: None,
                start: Lsn(0),
                options: vec![
                    GenericOption::string("proto_version", "1"),
                    GenericOption::string("publication_names", "\"p\""),
                    GenericOption::flag("binary"),
                ],
            },
        ),
    ];
    for (text, want) in table {
        assert_eq!(parse_command(text), Ok(want.clone()), "{text}");
        assert!(is_replication_command(text), "{text}");
        assert_eq!(parse_command(&want.to_string()), Ok(want.clone()), "{want}");
    }
}

#[test]
fn errors_as_postgres_15_gives_them() {
    use ReplicationParseError as E;
    // Each checked against a live 15.18 server (`psql "replication=true" -c ...`).
    let table = [
        ("START_REPLICATION", E::Syntax),
        ("START_REPLICATION SLOT x", E::Syntax),
        ("START_REPLICATION 0/", E::Syntax),
        ("START_REPLICATION 0x0/0", E::Syntax),
        ("START_REPLICATION LOGICAL 0/0", E::Syntax),
        ("START_REPLICATION 0/0 TIMELINE 0", E::InvalidTimeline(0)),
        ("START_REPLICATION 0/0 TIMELINE 4294967296", E::InvalidTimeline(0)),
        ("START_REPLICATION 0/0 TIMELINE 0 'abc", E::InvalidTimeline(0)),
        ("TIMELINE_HISTORY 0", E::InvalidTimeline(0)),
        ("START_REPLICATION SLOT \"x\" PHYSICAL 0/0 TIMELINE 1 junk", E::Syntax),
        ("DROP_REPLICATION_SLOT \"abc", E::UnterminatedQuotedString),
        ("BASE_BACKUP (LABEL 'abc", E::UnterminatedQuotedString),
        ("IDENTIFY_SYSTEM 'abc", E::UnterminatedQuotedString),
        ("\"abc", E::UnterminatedQuotedString),
        ("IDENTIFY_SYSTEM junk", E::Syntax),
        ("IDENTIFY_SYSTEM;;", E::Syntax),
        ("identify_system", E::Syntax),
        ("", E::Syntax),
        ("SHOW", E::Syntax),
        ("DROP_REPLICATION_SLOT \"a\"\"b\"", E::Syntax),
        ("CREATE_REPLICATION_SLOT i PHYSICAL ()", E::Syntax),
        ("CREATE_REPLICATION_SLOT \"Ab c\" PHYSICAL ( RESERVE_WAL , )", E::Syntax),
        ("CREATE_REPLICATION_SLOT x LOGICAL (a)", E::Syntax),
        ("BASE_BACKUP (READ_REPLICATION_SLOT)", E::Syntax),
        ("BASE_BACKUP (WAIT TIMELINE)", E::Syntax),
        ("BASE_BACKUP LABEL 'x' FAST", E::Syntax),
        ("START_REPLICATION SLOT x LOGICAL 0/0 (a 1)", E::Syntax),
        ("START_REPLICATION SLOT x LOGICAL 0/0 (WAIT)", E::Syntax),
        ("START_REPLICATION SLOT x LOGICAL 0/0 TIMELINE 1", E::Syntax),
    ];
    for (text, want) in table {
        let got = parse_command(text);
        assert_eq!(got, Err(want.clone()), "{text}");
        assert_eq!(want.sqlstate(), "42601");
    }
    assert_eq!(E::InvalidTimeline(0).to_string(), "invalid timeline 0");
    assert_eq!(E::UnterminatedQuotedString.to_string(), "unterminated quoted string");
    assert_eq!(E::Syntax.to_string(), "syntax error");
}

#[test]
fn wrapped_numbers_like_postgres() {
    // A live 15.18 streams from 0/0 for `100000000/0` and reports timeline 4294967295
    // for an overlong TIMELINE.
    assert_eq!(parse_command("START_REPLICATION 100000000/0"), Ok(physical(None, 0, None)));
    let huge = "START_REPLICATION 0/0 TIMELINE 99999999999999999999999";
    assert_eq!(parse_command(huge), Ok(physical(None, 0, Some(u32::MAX))));
}

/// Identifiers a client can send: no `"` (no escape exists), no NUL, at most 63 bytes.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_][a-z0-9_]{0,10}",
        "[A-Za-z0-9_ .$'\u{e9}\u{4e2d}]{0,20}",
        "[^\"\u{0}]{0,20}",
    ]
    .prop_filter("63 bytes at most", |s| s.len() <= 63)
}

fn literal() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,20}"
}

fn option_value() -> impl Strategy<Value = Option<OptionValue>> {
    prop_oneof![
        Just(None),
        name().prop_map(|s| Some(OptionValue::Ident(s))),
        literal().prop_map(|s| Some(OptionValue::Str(s))),
        any::<u32>().prop_map(|n| Some(OptionValue::Int(n))),
    ]
}

fn generic_options(min: usize) -> impl Strategy<Value = Vec<GenericOption>> {
    let opt = (name(), option_value()).prop_map(|(name, value)| GenericOption { name, value });
    proptest::collection::vec(opt, min..4)
}

fn plugin_options() -> impl Strategy<Value = Vec<GenericOption>> {
    let value = prop_oneof![Just(None), literal().prop_map(|s| Some(OptionValue::Str(s)))];
    let opt = (name(), value).prop_map(|(name, value)| GenericOption { name, value });
    proptest::collection::vec(opt, 0..4)
}

fn dotted() -> impl Strategy<Value = String> {
    proptest::collection::vec(name(), 1..3).prop_map(|parts| parts.join("."))
}

fn lsn() -> impl Strategy<Value = Lsn> {
    any::<u64>().prop_map(Lsn)
}

fn command() -> impl Strategy<Value = ReplicationCommand> {
    let kind = prop_oneof![
        Just(SlotKind::Physical),
        name().prop_map(|plugin| SlotKind::Logical { plugin })
    ];
    let tli = proptest::option::of((1u32..).prop_map(TimeLineId));
    prop_oneof![
        Just(C::IdentifySystem),
        generic_options(0).prop_map(|options| C::BaseBackup { options }),
        (name(), any::<bool>(), kind, generic_options(0))
            .prop_map(|(n, t, k, o)| create(&n, t, k, o)),
        (name(), any::<bool>())
            .prop_map(|(slot_name, wait)| C::DropReplicationSlot { slot_name, wait }),
        (proptest::option::of(name()), tli, lsn()).prop_map(|(slot_name, timeline, start)| {
            C::StartReplication {
                kind: ReplicationKind::Physical,
                slot_name,
                timeline,
                start,
                options: vec![],
            }
        }),
        (name(), lsn(), plugin_options()).prop_map(|(slot, start, options)| C::StartReplication {
            kind: ReplicationKind::Logical,
            slot_name: Some(slot),
            timeline: None,
            start,
            options,
        }),
        dotted().prop_map(|slot_name| C::ReadReplicationSlot { slot_name }),
        (1u32..).prop_map(|n| C::TimelineHistory { tli: TimeLineId(n) }),
        dotted().prop_map(|name| C::Show { name }),
    ]
}

proptest! {
    #[test]
    fn display_parses_back(cmd in command()) {
        let text = cmd.to_string();
        prop_assert_eq!(parse_command(&text), Ok(cmd), "{}", text);
        prop_assert!(is_replication_command(&text));
    }

    #[test]
    fn never_panics_on_arbitrary_text(s in "\\PC{0,60}") {
        let _ = parse_command(&s);
        let _ = is_replication_command(&s);
    }

    #[test]
    fn never_panics_on_token_soup(
        words in proptest::collection::vec(
            prop_oneof![
                Just("START_REPLICATION"), Just("SLOT"), Just("\"s\""), Just("LOGICAL"),
                Just("PHYSICAL"), Just("0/0"), Just("TIMELINE"), Just("0"), Just("1"),
                Just("("), Just(")"), Just(","), Just(";"), Just("'x"), Just("'a''b'"),
                Just("BASE_BACKUP"), Just("CREATE_REPLICATION_SLOT"), Just("WAIT"),
                Just("SHOW"), Just("."), Just("a"), Just("\""), Just("RESERVE_WAL"),
            ],
            0..10,
        )
    ) {
        let s = words.join(" ");
        let _ = parse_command(&s);
    }

    #[test]
    fn fuzz_entry_points_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        fuzz_parse_command(&bytes);
        fuzz_copy_data(&bytes);
    }
}
