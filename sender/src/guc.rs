//! The run-time parameters of PostgreSQL 15 and when each may be set
//! (`utils/misc/guc.c`), for refusing a startup packet's settings as PostgreSQL does
//! (`set_config_option` with `PGC_S_CLIENT`). The list is `pg_settings` (name, context)
//! of a PostgreSQL 15.18 server, plus the four settings `pg_settings` does not show
//! (`GUC_NO_SHOW_ALL`: is_superuser, role, seed, session_authorization).

use walstream_protocol::wire::{sqlstate, ErrorFields};

/// When a parameter may be set (`guc.h: GucContext`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GucContext {
    /// Never (`PGC_INTERNAL`).
    Internal,
    /// At server start (`PGC_POSTMASTER`).
    Postmaster,
    /// In the configuration files (`PGC_SIGHUP`).
    Sighup,
    /// At connection start, by a superuser (`PGC_SU_BACKEND`).
    SuperuserBackend,
    /// At connection start (`PGC_BACKEND`).
    Backend,
    /// Any time, by a superuser (`PGC_SUSET`).
    Superuser,
    /// Any time (`PGC_USERSET`).
    User,
}

/// The context of PostgreSQL 15's parameter `name` (case-insensitive); `None` when
/// there is no such built-in parameter.
pub fn context(name: &str) -> Option<GucContext> {
    let lower = name.to_ascii_lowercase();
    SETTINGS.binary_search_by(|(n, _)| n.cmp(&lower.as_str())).ok().map(|i| SETTINGS[i].1)
}

/// Checks one setting of a startup packet as PostgreSQL 15 does before it parses the
/// value: unknown names (42704), malformed custom names (42602), parameters that cannot
/// be set at connection start (55P02) or only by a superuser (42501). A custom name
/// (`a.b`) is accepted, as PostgreSQL makes a placeholder of it.
///
/// # Errors
/// The FATAL's fields, with PostgreSQL's texts (the name as the client wrote it).
pub fn check_startup_setting(name: &str, superuser: bool) -> Result<(), ErrorFields> {
    let Some(ctx) = context(name) else {
        if !name.contains('.') {
            return Err(ErrorFields::error(
                sqlstate::UNDEFINED_OBJECT,
                format!("unrecognized configuration parameter \"{name}\""),
            ));
        }
        if !valid_custom_name(name) {
            return Err(ErrorFields::error(
                sqlstate::INVALID_NAME,
                format!("invalid configuration parameter name \"{name}\""),
            )
            .with_detail(
                "Custom parameter names must be two or more simple identifiers separated by dots.",
            ));
        }
        return Ok(());
    };
    let refused = |code: &str, text: &str| {
        Err(ErrorFields::error(code, text.replace("{}", &format!("\"{name}\""))))
    };
    match ctx {
        GucContext::Internal => refused("55P02", "parameter {} cannot be changed"),
        GucContext::Postmaster => {
            refused("55P02", "parameter {} cannot be changed without restarting the server")
        }
        GucContext::Sighup => refused("55P02", "parameter {} cannot be changed now"),
        GucContext::SuperuserBackend | GucContext::Superuser if !superuser => {
            refused(sqlstate::INSUFFICIENT_PRIVILEGE, "permission denied to set parameter {}")
        }
        _ => Ok(()),
    }
}

/// `guc.c: valid_custom_variable_name`: two or more simple identifiers separated by dots.
fn valid_custom_name(name: &str) -> bool {
    let ident = |part: &str| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || !c.is_ascii())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$' || !c.is_ascii())
    };
    name.split('.').count() >= 2 && name.split('.').all(ident)
}

/// PostgreSQL 15's parameters (in lower case) and their contexts, sorted by name.
const SETTINGS: &[(&str, GucContext)] = &[
    ("allow_in_place_tablespaces", GucContext::Superuser),
    ("allow_system_table_mods", GucContext::Superuser),
    ("application_name", GucContext::User),
    ("archive_cleanup_command", GucContext::Sighup),
    ("archive_command", GucContext::Sighup),
    ("archive_library", GucContext::Sighup),
    ("archive_mode", GucContext::Postmaster),
    ("archive_timeout", GucContext::Sighup),
    ("array_nulls", GucContext::User),
    ("authentication_timeout", GucContext::Sighup),
    ("autovacuum", GucContext::Sighup),
    ("autovacuum_analyze_scale_factor", GucContext::Sighup),
    ("autovacuum_analyze_threshold", GucContext::Sighup),
    ("autovacuum_freeze_max_age", GucContext::Postmaster),
    ("autovacuum_max_workers", GucContext::Postmaster),
    ("autovacuum_multixact_freeze_max_age", GucContext::Postmaster),
    ("autovacuum_naptime", GucContext::Sighup),
    ("autovacuum_vacuum_cost_delay", GucContext::Sighup),
    ("autovacuum_vacuum_cost_limit", GucContext::Sighup),
    ("autovacuum_vacuum_insert_scale_factor", GucContext::Sighup),
    ("autovacuum_vacuum_insert_threshold", GucContext::Sighup),
    ("autovacuum_vacuum_scale_factor", GucContext::Sighup),
    ("autovacuum_vacuum_threshold", GucContext::Sighup),
    ("autovacuum_work_mem", GucContext::Sighup),
    ("backend_flush_after", GucContext::User),
    ("backslash_quote", GucContext::User),
    ("backtrace_functions", GucContext::Superuser),
    ("bgwriter_delay", GucContext::Sighup),
    ("bgwriter_flush_after", GucContext::Sighup),
    ("bgwriter_lru_maxpages", GucContext::Sighup),
    ("bgwriter_lru_multiplier", GucContext::Sighup),
    ("block_size", GucContext::Internal),
    ("bonjour", GucContext::Postmaster),
    ("bonjour_name", GucContext::Postmaster),
    ("bytea_output", GucContext::User),
    ("check_function_bodies", GucContext::User),
    ("checkpoint_completion_target", GucContext::Sighup),
    ("checkpoint_flush_after", GucContext::Sighup),
    ("checkpoint_timeout", GucContext::Sighup),
    ("checkpoint_warning", GucContext::Sighup),
    ("client_connection_check_interval", GucContext::User),
    ("client_encoding", GucContext::User),
    ("client_min_messages", GucContext::User),
    ("cluster_name", GucContext::Postmaster),
    ("commit_delay", GucContext::Superuser),
    ("commit_siblings", GucContext::User),
    ("compute_query_id", GucContext::Superuser),
    ("config_file", GucContext::Postmaster),
    ("constraint_exclusion", GucContext::User),
    ("cpu_index_tuple_cost", GucContext::User),
    ("cpu_operator_cost", GucContext::User),
    ("cpu_tuple_cost", GucContext::User),
    ("cursor_tuple_fraction", GucContext::User),
    ("data_checksums", GucContext::Internal),
    ("data_directory", GucContext::Postmaster),
    ("data_directory_mode", GucContext::Internal),
    ("data_sync_retry", GucContext::Postmaster),
    ("datestyle", GucContext::User),
    ("db_user_namespace", GucContext::Sighup),
    ("deadlock_timeout", GucContext::Superuser),
    ("debug_assertions", GucContext::Internal),
    ("debug_discard_caches", GucContext::Superuser),
    ("debug_pretty_print", GucContext::User),
    ("debug_print_parse", GucContext::User),
    ("debug_print_plan", GucContext::User),
    ("debug_print_rewritten", GucContext::User),
    ("default_statistics_target", GucContext::User),
    ("default_table_access_method", GucContext::User),
    ("default_tablespace", GucContext::User),
    ("default_text_search_config", GucContext::User),
    ("default_toast_compression", GucContext::User),
    ("default_transaction_deferrable", GucContext::User),
    ("default_transaction_isolation", GucContext::User),
    ("default_transaction_read_only", GucContext::User),
    ("dynamic_library_path", GucContext::Superuser),
    ("dynamic_shared_memory_type", GucContext::Postmaster),
    ("effective_cache_size", GucContext::User),
    ("effective_io_concurrency", GucContext::User),
    ("enable_async_append", GucContext::User),
    ("enable_bitmapscan", GucContext::User),
    ("enable_gathermerge", GucContext::User),
    ("enable_hashagg", GucContext::User),
    ("enable_hashjoin", GucContext::User),
    ("enable_incremental_sort", GucContext::User),
    ("enable_indexonlyscan", GucContext::User),
    ("enable_indexscan", GucContext::User),
    ("enable_material", GucContext::User),
    ("enable_memoize", GucContext::User),
    ("enable_mergejoin", GucContext::User),
    ("enable_nestloop", GucContext::User),
    ("enable_parallel_append", GucContext::User),
    ("enable_parallel_hash", GucContext::User),
    ("enable_partition_pruning", GucContext::User),
    ("enable_partitionwise_aggregate", GucContext::User),
    ("enable_partitionwise_join", GucContext::User),
    ("enable_seqscan", GucContext::User),
    ("enable_sort", GucContext::User),
    ("enable_tidscan", GucContext::User),
    ("escape_string_warning", GucContext::User),
    ("event_source", GucContext::Postmaster),
    ("exit_on_error", GucContext::User),
    ("extension_destdir", GucContext::Superuser),
    ("external_pid_file", GucContext::Postmaster),
    ("extra_float_digits", GucContext::User),
    ("force_parallel_mode", GucContext::User),
    ("from_collapse_limit", GucContext::User),
    ("fsync", GucContext::Sighup),
    ("full_page_writes", GucContext::Sighup),
    ("geqo", GucContext::User),
    ("geqo_effort", GucContext::User),
    ("geqo_generations", GucContext::User),
    ("geqo_pool_size", GucContext::User),
    ("geqo_seed", GucContext::User),
    ("geqo_selection_bias", GucContext::User),
    ("geqo_threshold", GucContext::User),
    ("gin_fuzzy_search_limit", GucContext::User),
    ("gin_pending_list_limit", GucContext::User),
    ("hash_mem_multiplier", GucContext::User),
    ("hba_file", GucContext::Postmaster),
    ("hot_standby", GucContext::Postmaster),
    ("hot_standby_feedback", GucContext::Sighup),
    ("huge_page_size", GucContext::Postmaster),
    ("huge_pages", GucContext::Postmaster),
    ("ident_file", GucContext::Postmaster),
    ("idle_in_transaction_session_timeout", GucContext::User),
    ("idle_session_timeout", GucContext::User),
    ("ignore_checksum_failure", GucContext::Superuser),
    ("ignore_invalid_pages", GucContext::Postmaster),
    ("ignore_system_indexes", GucContext::Backend),
    ("in_hot_standby", GucContext::Internal),
    ("integer_datetimes", GucContext::Internal),
    ("intervalstyle", GucContext::User),
    ("is_superuser", GucContext::Internal),
    ("jit", GucContext::User),
    ("jit_above_cost", GucContext::User),
    ("jit_debugging_support", GucContext::SuperuserBackend),
    ("jit_dump_bitcode", GucContext::Superuser),
    ("jit_expressions", GucContext::User),
    ("jit_inline_above_cost", GucContext::User),
    ("jit_optimize_above_cost", GucContext::User),
    ("jit_profiling_support", GucContext::SuperuserBackend),
    ("jit_provider", GucContext::Postmaster),
    ("jit_tuple_deforming", GucContext::User),
    ("join_collapse_limit", GucContext::User),
    ("krb_caseins_users", GucContext::Sighup),
    ("krb_server_keyfile", GucContext::Sighup),
    ("lc_collate", GucContext::Internal),
    ("lc_ctype", GucContext::Internal),
    ("lc_messages", GucContext::Superuser),
    ("lc_monetary", GucContext::User),
    ("lc_numeric", GucContext::User),
    ("lc_time", GucContext::User),
    ("listen_addresses", GucContext::Postmaster),
    ("lo_compat_privileges", GucContext::Superuser),
    ("local_preload_libraries", GucContext::User),
    ("lock_timeout", GucContext::User),
    ("log_autovacuum_min_duration", GucContext::Sighup),
    ("log_checkpoints", GucContext::Sighup),
    ("log_connections", GucContext::SuperuserBackend),
    ("log_destination", GucContext::Sighup),
    ("log_directory", GucContext::Sighup),
    ("log_disconnections", GucContext::SuperuserBackend),
    ("log_duration", GucContext::Superuser),
    ("log_error_verbosity", GucContext::Superuser),
    ("log_executor_stats", GucContext::Superuser),
    ("log_file_mode", GucContext::Sighup),
    ("log_filename", GucContext::Sighup),
    ("log_hostname", GucContext::Sighup),
    ("log_line_prefix", GucContext::Sighup),
    ("log_lock_waits", GucContext::Superuser),
    ("log_min_duration_sample", GucContext::Superuser),
    ("log_min_duration_statement", GucContext::Superuser),
    ("log_min_error_statement", GucContext::Superuser),
    ("log_min_messages", GucContext::Superuser),
    ("log_parameter_max_length", GucContext::Superuser),
    ("log_parameter_max_length_on_error", GucContext::User),
    ("log_parser_stats", GucContext::Superuser),
    ("log_planner_stats", GucContext::Superuser),
    ("log_recovery_conflict_waits", GucContext::Sighup),
    ("log_replication_commands", GucContext::Superuser),
    ("log_rotation_age", GucContext::Sighup),
    ("log_rotation_size", GucContext::Sighup),
    ("log_startup_progress_interval", GucContext::Sighup),
    ("log_statement", GucContext::Superuser),
    ("log_statement_sample_rate", GucContext::Superuser),
    ("log_statement_stats", GucContext::Superuser),
    ("log_temp_files", GucContext::Superuser),
    ("log_timezone", GucContext::Sighup),
    ("log_transaction_sample_rate", GucContext::Superuser),
    ("log_truncate_on_rotation", GucContext::Sighup),
    ("logging_collector", GucContext::Postmaster),
    ("logical_decoding_work_mem", GucContext::User),
    ("maintenance_io_concurrency", GucContext::User),
    ("maintenance_work_mem", GucContext::User),
    ("max_connections", GucContext::Postmaster),
    ("max_files_per_process", GucContext::Postmaster),
    ("max_function_args", GucContext::Internal),
    ("max_identifier_length", GucContext::Internal),
    ("max_index_keys", GucContext::Internal),
    ("max_locks_per_transaction", GucContext::Postmaster),
    ("max_logical_replication_workers", GucContext::Postmaster),
    ("max_parallel_maintenance_workers", GucContext::User),
    ("max_parallel_workers", GucContext::User),
    ("max_parallel_workers_per_gather", GucContext::User),
    ("max_pred_locks_per_page", GucContext::Sighup),
    ("max_pred_locks_per_relation", GucContext::Sighup),
    ("max_pred_locks_per_transaction", GucContext::Postmaster),
    ("max_prepared_transactions", GucContext::Postmaster),
    ("max_replication_slots", GucContext::Postmaster),
    ("max_slot_wal_keep_size", GucContext::Sighup),
    ("max_stack_depth", GucContext::Superuser),
    ("max_standby_archive_delay", GucContext::Sighup),
    ("max_standby_streaming_delay", GucContext::Sighup),
    ("max_sync_workers_per_subscription", GucContext::Sighup),
    ("max_wal_senders", GucContext::Postmaster),
    ("max_wal_size", GucContext::Sighup),
    ("max_worker_processes", GucContext::Postmaster),
    ("min_dynamic_shared_memory", GucContext::Postmaster),
    ("min_parallel_index_scan_size", GucContext::User),
    ("min_parallel_table_scan_size", GucContext::User),
    ("min_wal_size", GucContext::Sighup),
    ("old_snapshot_threshold", GucContext::Postmaster),
    ("parallel_leader_participation", GucContext::User),
    ("parallel_setup_cost", GucContext::User),
    ("parallel_tuple_cost", GucContext::User),
    ("password_encryption", GucContext::User),
    ("plan_cache_mode", GucContext::User),
    ("port", GucContext::Postmaster),
    ("post_auth_delay", GucContext::Backend),
    ("pre_auth_delay", GucContext::Sighup),
    ("primary_conninfo", GucContext::Sighup),
    ("primary_slot_name", GucContext::Sighup),
    ("promote_trigger_file", GucContext::Sighup),
    ("quote_all_identifiers", GucContext::User),
    ("random_page_cost", GucContext::User),
    ("recovery_end_command", GucContext::Sighup),
    ("recovery_init_sync_method", GucContext::Sighup),
    ("recovery_min_apply_delay", GucContext::Sighup),
    ("recovery_prefetch", GucContext::Sighup),
    ("recovery_target", GucContext::Postmaster),
    ("recovery_target_action", GucContext::Postmaster),
    ("recovery_target_inclusive", GucContext::Postmaster),
    ("recovery_target_lsn", GucContext::Postmaster),
    ("recovery_target_name", GucContext::Postmaster),
    ("recovery_target_time", GucContext::Postmaster),
    ("recovery_target_timeline", GucContext::Postmaster),
    ("recovery_target_xid", GucContext::Postmaster),
    ("recursive_worktable_factor", GucContext::User),
    ("remove_temp_files_after_crash", GucContext::Sighup),
    ("restart_after_crash", GucContext::Sighup),
    ("restore_command", GucContext::Sighup),
    ("restrict_nonsystem_relation_kind", GucContext::User),
    ("role", GucContext::User),
    ("row_security", GucContext::User),
    ("search_path", GucContext::User),
    ("seed", GucContext::User),
    ("segment_size", GucContext::Internal),
    ("seq_page_cost", GucContext::User),
    ("server_encoding", GucContext::Internal),
    ("server_version", GucContext::Internal),
    ("server_version_num", GucContext::Internal),
    ("session_authorization", GucContext::User),
    ("session_preload_libraries", GucContext::Superuser),
    ("session_replication_role", GucContext::Superuser),
    ("shared_buffers", GucContext::Postmaster),
    ("shared_memory_size", GucContext::Internal),
    ("shared_memory_size_in_huge_pages", GucContext::Internal),
    ("shared_memory_type", GucContext::Postmaster),
    ("shared_preload_libraries", GucContext::Postmaster),
    ("ssl", GucContext::Sighup),
    ("ssl_ca_file", GucContext::Sighup),
    ("ssl_cert_file", GucContext::Sighup),
    ("ssl_ciphers", GucContext::Sighup),
    ("ssl_crl_dir", GucContext::Sighup),
    ("ssl_crl_file", GucContext::Sighup),
    ("ssl_dh_params_file", GucContext::Sighup),
    ("ssl_ecdh_curve", GucContext::Sighup),
    ("ssl_key_file", GucContext::Sighup),
    ("ssl_library", GucContext::Internal),
    ("ssl_max_protocol_version", GucContext::Sighup),
    ("ssl_min_protocol_version", GucContext::Sighup),
    ("ssl_passphrase_command", GucContext::Sighup),
    ("ssl_passphrase_command_supports_reload", GucContext::Sighup),
    ("ssl_prefer_server_ciphers", GucContext::Sighup),
    ("standard_conforming_strings", GucContext::User),
    ("statement_timeout", GucContext::User),
    ("stats_fetch_consistency", GucContext::User),
    ("superuser_reserved_connections", GucContext::Postmaster),
    ("synchronize_seqscans", GucContext::User),
    ("synchronous_commit", GucContext::User),
    ("synchronous_standby_names", GucContext::Sighup),
    ("syslog_facility", GucContext::Sighup),
    ("syslog_ident", GucContext::Sighup),
    ("syslog_sequence_numbers", GucContext::Sighup),
    ("syslog_split_messages", GucContext::Sighup),
    ("tcp_keepalives_count", GucContext::User),
    ("tcp_keepalives_idle", GucContext::User),
    ("tcp_keepalives_interval", GucContext::User),
    ("tcp_user_timeout", GucContext::User),
    ("temp_buffers", GucContext::User),
    ("temp_file_limit", GucContext::Superuser),
    ("temp_tablespaces", GucContext::User),
    ("timezone", GucContext::User),
    ("timezone_abbreviations", GucContext::User),
    ("trace_notify", GucContext::User),
    ("trace_recovery_messages", GucContext::Sighup),
    ("trace_sort", GucContext::User),
    ("track_activities", GucContext::Superuser),
    ("track_activity_query_size", GucContext::Postmaster),
    ("track_commit_timestamp", GucContext::Postmaster),
    ("track_counts", GucContext::Superuser),
    ("track_functions", GucContext::Superuser),
    ("track_io_timing", GucContext::Superuser),
    ("track_wal_io_timing", GucContext::Superuser),
    ("transaction_deferrable", GucContext::User),
    ("transaction_isolation", GucContext::User),
    ("transaction_read_only", GucContext::User),
    ("transform_null_equals", GucContext::User),
    ("unix_socket_directories", GucContext::Postmaster),
    ("unix_socket_group", GucContext::Postmaster),
    ("unix_socket_permissions", GucContext::Postmaster),
    ("update_process_title", GucContext::Superuser),
    ("vacuum_cost_delay", GucContext::User),
    ("vacuum_cost_limit", GucContext::User),
    ("vacuum_cost_page_dirty", GucContext::User),
    ("vacuum_cost_page_hit", GucContext::User),
    ("vacuum_cost_page_miss", GucContext::User),
    ("vacuum_defer_cleanup_age", GucContext::Sighup),
    ("vacuum_failsafe_age", GucContext::User),
    ("vacuum_freeze_min_age", GucContext::User),
    ("vacuum_freeze_table_age", GucContext::User),
    ("vacuum_multixact_failsafe_age", GucContext::User),
    ("vacuum_multixact_freeze_min_age", GucContext::User),
    ("vacuum_multixact_freeze_table_age", GucContext::User),
    ("wal_block_size", GucContext::Internal),
    ("wal_buffers", GucContext::Postmaster),
    ("wal_compression", GucContext::Superuser),
    ("wal_consistency_checking", GucContext::Superuser),
    ("wal_decode_buffer_size", GucContext::Postmaster),
    ("wal_init_zero", GucContext::Superuser),
    ("wal_keep_size", GucContext::Sighup),
    ("wal_level", GucContext::Postmaster),
    ("wal_log_hints", GucContext::Postmaster),
    ("wal_receiver_create_temp_slot", GucContext::Sighup),
    ("wal_receiver_status_interval", GucContext::Sighup),
    ("wal_receiver_timeout", GucContext::Sighup),
    ("wal_recycle", GucContext::Superuser),
    ("wal_retrieve_retry_interval", GucContext::Sighup),
    ("wal_segment_size", GucContext::Internal),
    ("wal_sender_timeout", GucContext::User),
    ("wal_skip_threshold", GucContext::User),
    ("wal_sync_method", GucContext::Sighup),
    ("wal_writer_delay", GucContext::Sighup),
    ("wal_writer_flush_after", GucContext::Sighup),
    ("work_mem", GucContext::User),
    ("xmlbinary", GucContext::User),
    ("xmloption", GucContext::User),
    ("zero_damaged_pages", GucContext::Superuser),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_and_found_in_any_case() {
        assert!(SETTINGS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(SETTINGS.len(), 358);
        assert_eq!(context("DateStyle"), Some(GucContext::User));
        assert_eq!(context("wal_level"), Some(GucContext::Postmaster));
        assert_eq!(context("nosuch"), None);
    }

    #[test]
    fn startup_settings_are_refused_with_postgresql_texts() {
        let text = |name: &str, superuser: bool| {
            check_startup_setting(name, superuser).map_err(|e| (e.code, e.message))
        };
        assert_eq!(text("work_mem", false), Ok(()));
        assert_eq!(text("Foo.Bar", false), Ok(()));
        let e = |code: &str, m: &str| Err((code.to_string(), m.to_string()));
        assert_eq!(text("FOO", true), e("42704", "unrecognized configuration parameter \"FOO\""));
        assert_eq!(
            text("foo.", true),
            e(sqlstate::INVALID_NAME, "invalid configuration parameter name \"foo.\"")
        );
        assert_eq!(
            text("WAL_LEVEL", true),
            e("55P02", "parameter \"WAL_LEVEL\" cannot be changed without restarting the server")
        );
        assert_eq!(
            text("wal_receiver_status_interval", true),
            e("55P02", "parameter \"wal_receiver_status_interval\" cannot be changed now")
        );
        assert_eq!(
            text("is_superuser", true),
            e("55P02", "parameter \"is_superuser\" cannot be changed")
        );
        assert_eq!(
            text("log_min_duration_statement", false),
            e("42501", "permission denied to set parameter \"log_min_duration_statement\"")
        );
        assert_eq!(text("log_min_duration_statement", true), Ok(()));
    }
}
