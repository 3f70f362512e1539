//! Tests of configuration file reading.

use super::*;
use proptest::prelude::*;

fn names_values(entries: &[ConfEntry]) -> Vec<(String, String)> {
    entries.iter().map(|e| (e.name.clone(), e.value.clone())).collect()
}

#[test]
fn data_dir_reads_conf_then_auto_conf_with_includes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("conf.d")).unwrap();
    std::fs::write(
        d.join("postgresql.conf"),
        "# comment\nport = 5433\ninclude 'extra.conf'\ninclude_if_exists 'missing.conf'\n\
         include_dir 'conf.d'\nmax_connections = 20\n",
    )
    .unwrap();
    std::fs::write(d.join("extra.conf"), "fsync = off\n").unwrap();
    std::fs::write(d.join("conf.d/b.conf"), "b = 2\n").unwrap();
    std::fs::write(d.join("conf.d/a.conf"), "a = 1\n").unwrap();
    std::fs::write(d.join("conf.d/.hidden.conf"), "hidden = 1\n").unwrap();
    std::fs::write(d.join("conf.d/notes.txt"), "not = read\n").unwrap();
    std::fs::write(
        d.join("postgresql.auto.conf"),
        auto_conf_text(&[("primary_conninfo".into(), "host=127.0.0.1 user='x'".into())]),
    )
    .unwrap();
    let got = names_values(&read_data_dir(d).unwrap());
    let want: Vec<(String, String)> = [
        ("port", "5433"),
        ("fsync", "off"),
        ("a", "1"),
        ("b", "2"),
        ("max_connections", "20"),
        ("primary_conninfo", "host=127.0.0.1 user='x'"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn errors_have_postgresql_texts() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("postgresql.conf");
    std::fs::write(&f, "port = 5433\nport = 5433 x\n").unwrap();
    let e = read(&f).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("syntax error in file \"{}\" line 2, near token \"x\"", f.display())
    );
    std::fs::write(&f, "port =\n").unwrap();
    assert!(read(&f).unwrap_err().to_string().ends_with("line 1, near end of line"));
    std::fs::write(&f, "include 'postgresql.conf'\n").unwrap();
    assert!(read(&f).unwrap_err().to_string().ends_with("maximum nesting depth exceeded"));
    let missing = dir.path().join("nope.conf");
    assert!(read(&missing)
        .unwrap_err()
        .to_string()
        .starts_with(&format!("could not open configuration file \"{}\": ", missing.display())));
}

#[test]
fn auto_conf_is_written_durably_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("postgresql.auto.conf");
    let settings = vec![
        ("synchronous_standby_names".to_string(), "FIRST 1 (\"a b\", c)".to_string()),
        ("primary_conninfo".to_string(), "passfile='/x\\y'".to_string()),
    ];
    write_file_durably(&f, &auto_conf_text(&settings)).unwrap();
    assert!(!dir.path().join("postgresql.auto.conf.tmp").exists());
    assert_eq!(names_values(&read(&f).unwrap()), settings);
}

proptest! {
    #[test]
    fn any_value_round_trips_through_a_file(name in "[a-z_][a-z0-9_]{0,20}", value in "[^\n\r\u{0}]{0,40}") {
        let text = auto_conf_text(&[(name.clone(), value.clone())]);
        let got = parse(&text, Path::new("x")).unwrap();
        prop_assert_eq!(names_values(&got), vec![(name, value)]);
    }

    #[test]
    fn parsing_never_panics(text in "\\PC{0,200}") {
        let _ = parse(&text, Path::new("x"));
    }
}

#[test]
fn alter_system_replaces_every_entry_of_the_name_and_appends_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let auto = dir.path().join("postgresql.auto.conf");
    // pg_basebackup -R wrote one primary_conninfo, a tool appended another.
    std::fs::write(
        &auto,
        "primary_conninfo = 'port=1'\nwork_mem = '4MB'\nprimary_conninfo = 'port=2'\n",
    )
    .unwrap();
    alter_auto_conf(dir.path(), Some("primary_conninfo"), Some("port=3")).unwrap();
    let entries = read(&auto).unwrap();
    let got: Vec<(&str, &str)> =
        entries.iter().map(|e| (e.name.as_str(), e.value.as_str())).collect();
    assert_eq!(got, vec![("work_mem", "4MB"), ("primary_conninfo", "port=3")]);
    alter_auto_conf(dir.path(), Some("PRIMARY_CONNINFO"), None).unwrap();
    assert_eq!(read(&auto).unwrap().len(), 1);
}
