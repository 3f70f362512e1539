use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    let path = Path::new("/etc/pgpool.conf");
    from_entries(path, &conf::parse(text, path)?)
}

#[test]
fn a_pgpool_file_reads_with_pgpool_defaults() {
    let c = parse(
        "backend_hostname0 = 'db0'\nbackend_port0 = 5433\nbackend_weight0 = 2\n\
         backend_data_directory0 = '/data0'\nbackend_application_name0 = 'server0'\n\
         backend_hostname1 = 'db1'\nbackend_flag1 = 'DISALLOW_TO_FAILOVER'\n\
         health_check_period = 5\nhealth_check_max_retries = 3\nhealth_check_period1 = 7\n\
         health_check_user = 'pgpool'\nfailover_command = '/x.sh %d %h'\n",
    )
    .unwrap();
    assert_eq!(c.backends.len(), 2);
    let (b0, b1) = (&c.backends[0], &c.backends[1]);
    assert_eq!((b0.host.as_str(), b0.port, b0.weight), ("db0", 5433, 2.0));
    assert_eq!((b0.data_directory.as_str(), b0.application_name.as_str()), ("/data0", "server0"));
    assert_eq!((b1.port, b1.weight, b1.flag), (5432, 1.0, BackendFlag::DisallowToFailover));
    assert_eq!(b0.health.period, Duration::from_secs(5));
    assert_eq!(b1.health.period, Duration::from_secs(7), "a node's own value wins");
    assert_eq!(b1.health.max_retries, 3);
    assert_eq!(b0.health.timeout, Duration::from_secs(20));
    assert_eq!(b0.health.retry_delay, Duration::from_secs(1));
    assert_eq!(b0.health.connect_timeout, Duration::from_millis(10_000));
    assert_eq!(b0.health.database, "postgres");
    assert_eq!(c.sr_check.period, Duration::from_secs(10));
    assert_eq!(c.search_primary_node_timeout, Duration::from_secs(300));
    assert!(c.failover_on_backend_error);
    assert_eq!(c.status_path(), Path::new("/tmp").join(STATUS_FILE));
    assert!(c.warnings.is_empty());
}

#[test]
fn settings_of_pgpool_it_does_not_use_are_warnings() {
    let c = parse(
        "backend_hostname0 = 'a'\nnum_init_children = 32\nuse_watchdog = on\nhostname0 = 'w'\n",
    )
    .unwrap();
    assert_eq!(c.warnings.len(), 3);
    assert_eq!(
        c.warnings[0],
        "parameter \"num_init_children\" is not used by walstream failover and is ignored \
         (file \"/etc/pgpool.conf\" line 2)"
    );
}

#[test]
fn unknown_names_and_bad_values_name_the_line() {
    let e = parse("backend_hostname0 = 'a'\n\nhealth_chek_period = 3\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "unrecognized configuration parameter \"health_chek_period\" in file \"/etc/pgpool.conf\" line 3"
    );
    let e = parse("backend_hostname0 = 'a'\nhealth_check_period = soon\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid value for parameter \"health_check_period\": \"soon\" in file \"/etc/pgpool.conf\" line 2"
    );
    let e = parse("backend_hostname0 = 'a'\nbackend_port0 = 80\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "80 is outside the valid range for parameter \"backend_port0\" (1024 .. 65535) in file \"/etc/pgpool.conf\" line 2"
    );
    let e = parse("backend_hostname0 = 'a'\nfailover_on_backend_error = maybe\n").unwrap_err();
    assert!(e.to_string().starts_with("invalid value for parameter \"failover_on_backend_error\""));
    let e = parse("backend_hostname0 = 'a'\nbackend_port2 = 5432\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "backend_hostname2 is not set in file \"/etc/pgpool.conf\", but line 2 sets \"backend_port2\""
    );
    let e = parse("health_check_period = 1\n").unwrap_err();
    assert!(matches!(e, ConfigError::NoBackends(_)));
    let e = parse("backend_hostname0 = 'a\n").unwrap_err();
    assert!(e.to_string().starts_with("syntax error in file \"/etc/pgpool.conf\" line 1"), "{e}");
}

#[test]
fn numbered_names_split_only_at_trailing_digits() {
    assert_eq!(split_index("backend_port12"), Some(("backend_port", 12)));
    assert_eq!(split_index("backend_port"), None);
    assert_eq!(split_index("12"), None);
    assert_eq!(classify("wd_port1"), Some(Slot::Unused));
    assert_eq!(classify("connect_timeout"), Some(Slot::Shared("connect_timeout")));
    assert_eq!(classify("sr_check_period1"), None);
}

#[test]
fn the_fuzz_corpus_replays() {
    walstream_tests::fuzz::replay_corpora("failover_", &[("failover_config", fuzz_config)])
        .unwrap();
}

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9 _'%/.-]{0,20}"
}

proptest! {
    #[test]
    fn any_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        fuzz_config(&data);
    }

    /// A configuration written out as a pgpool.conf reads back the same.
    #[test]
    fn written_configurations_read_back(
        hosts in proptest::collection::vec(name(), 1..4),
        ports in proptest::collection::vec(1024u16.., 4),
        weights in proptest::collection::vec(0u32..100, 4),
        period in 0u64..100, retries in 0u32..10, connect_ms in 0u64..100_000,
        user in name(), command in name(), on_error in any::<bool>(),
    ) {
        let mut text = String::new();
        for (i, host) in hosts.iter().enumerate() {
            text.push_str(&format!(
                "backend_hostname{i} = {}\nbackend_port{i} = {}\nbackend_weight{i} = {}\n",
                conf::lexer::quote(host), ports[i], weights[i]
            ));
        }
        text.push_str(&format!(
            "health_check_period = {period}\nhealth_check_max_retries = {retries}\n\
             connect_timeout = {connect_ms}\nhealth_check_user = {}\nfailover_command = {}\n\
             failover_on_backend_error = {}\n",
            conf::lexer::quote(&user), conf::lexer::quote(&command), if on_error { "on" } else { "off" }
        ));
        let c = parse(&text).unwrap();
        prop_assert_eq!(c.backends.len(), hosts.len());
        for (i, b) in c.backends.iter().enumerate() {
            prop_assert_eq!(b.id, i);
            prop_assert_eq!(&b.host, &hosts[i]);
            prop_assert_eq!(b.port, ports[i]);
            prop_assert_eq!(b.weight, f64::from(weights[i]));
            prop_assert_eq!(b.health.period, Duration::from_secs(period));
            prop_assert_eq!(b.health.max_retries, retries);
            prop_assert_eq!(b.health.connect_timeout, Duration::from_millis(connect_ms));
            prop_assert_eq!(&b.health.user, &user);
        }
        prop_assert_eq!(&c.failover_command, &command);
        prop_assert_eq!(c.failover_on_backend_error, on_error);
    }
}
