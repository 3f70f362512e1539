//! The system views a server answers, with PostgreSQL 15's columns and types
//! (`catalog/system_views.sql`), as rows of [`Datum`]s: `pg_stat_activity` and
//! `pg_stat_replication` from the backend registry, `pg_replication_slots` from the slots.
//! `walstream serve` and the node both answer them from here.

use std::time::SystemTime;

use crate::backend::query::{Column, Datum, DatumType};
use crate::registry::{BackendEntry, Registry};
use crate::slots::SlotInfo;

const fn text_only(oid: u32, typlen: i16, name: &'static str) -> DatumType {
    DatumType::TextOnly { oid, typlen, name }
}

const OID: DatumType = text_only(26, 4, "oid");
const NAME: DatumType = text_only(19, 64, "name");
const INET: DatumType = text_only(869, -1, "inet");
const TIMESTAMPTZ: DatumType = text_only(1184, 8, "timestamp with time zone");
const XID: DatumType = text_only(28, 4, "xid");
const LSN: DatumType = text_only(3220, 8, "pg_lsn");
const INTERVAL: DatumType = text_only(1186, 16, "interval");
const NUMERIC: DatumType = text_only(1700, -1, "numeric");

/// A system view walstream answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// `pg_stat_activity`.
    Activity,
    /// `pg_stat_replication`.
    Replication,
    /// `pg_replication_slots` (rows from [`slot_rows`], not from the registry).
    ReplicationSlots,
    /// `pg_stat_ssl`.
    Ssl,
}

impl View {
    /// The view called `name`, if walstream has it.
    pub fn named(name: &str) -> Option<View> {
        match name.to_ascii_lowercase().trim_start_matches("pg_catalog.") {
            "pg_stat_activity" => Some(View::Activity),
            "pg_stat_replication" => Some(View::Replication),
            "pg_replication_slots" => Some(View::ReplicationSlots),
            "pg_stat_ssl" => Some(View::Ssl),
            _ => None,
        }
    }

    /// Its columns, in PostgreSQL 15's order.
    pub fn columns(self) -> Vec<Column> {
        let cols: &[(&str, DatumType)] = match self {
            View::Activity => &[
                ("datid", OID),
                ("datname", NAME),
                ("pid", DatumType::Int4),
                ("leader_pid", DatumType::Int4),
                ("usesysid", OID),
                ("usename", NAME),
                ("application_name", DatumType::Text),
                ("client_addr", INET),
                ("client_hostname", DatumType::Text),
                ("client_port", DatumType::Int4),
                ("backend_start", TIMESTAMPTZ),
                ("xact_start", TIMESTAMPTZ),
                ("query_start", TIMESTAMPTZ),
                ("state_change", TIMESTAMPTZ),
                ("wait_event_type", DatumType::Text),
                ("wait_event", DatumType::Text),
                ("state", DatumType::Text),
                ("backend_xid", XID),
                ("backend_xmin", XID),
                ("query_id", DatumType::Int8),
                ("query", DatumType::Text),
                ("backend_type", DatumType::Text),
            ],
            View::Replication => &[
                ("pid", DatumType::Int4),
                ("usesysid", OID),
                ("usename", NAME),
                ("application_name", DatumType::Text),
                ("client_addr", INET),
                ("client_hostname", DatumType::Text),
                ("client_port", DatumType::Int4),
                ("backend_start", TIMESTAMPTZ),
                ("backend_xmin", XID),
                ("state", DatumType::Text),
                ("sent_lsn", LSN),
                ("write_lsn", LSN),
                ("flush_lsn", LSN),
                ("replay_lsn", LSN),
                ("write_lag", INTERVAL),
                ("flush_lag", INTERVAL),
                ("replay_lag", INTERVAL),
                ("sync_priority", DatumType::Int4),
                ("sync_state", DatumType::Text),
                ("reply_time", TIMESTAMPTZ),
            ],
            View::ReplicationSlots => &[
                ("slot_name", NAME),
                ("plugin", NAME),
                ("slot_type", DatumType::Text),
                ("datoid", OID),
                ("database", NAME),
                ("temporary", DatumType::Bool),
                ("active", DatumType::Bool),
                ("active_pid", DatumType::Int4),
                ("xmin", XID),
                ("catalog_xmin", XID),
                ("restart_lsn", LSN),
                ("confirmed_flush_lsn", LSN),
                ("wal_status", DatumType::Text),
                ("safe_wal_size", DatumType::Int8),
                ("two_phase", DatumType::Bool),
            ],
            View::Ssl => &[
                ("pid", DatumType::Int4),
                ("ssl", DatumType::Bool),
                ("version", DatumType::Text),
                ("cipher", DatumType::Text),
                ("bits", DatumType::Int4),
                ("client_dn", DatumType::Text),
                ("client_serial", NUMERIC),
                ("issuer_dn", DatumType::Text),
            ],
        };
        cols.iter().map(|(n, t)| Column::new(*n, *t)).collect()
    }

    /// Its rows, one per backend (walsenders only for `pg_stat_replication`); none for
    /// `pg_replication_slots`, whose rows come from [`slot_rows`].
    pub fn rows(self, registry: &Registry) -> Vec<Vec<Datum>> {
        registry
            .list()
            .iter()
            .filter_map(|e| match self {
                View::Activity => Some(activity_row(e)),
                View::Replication => replication_row(e, registry),
                View::ReplicationSlots => None,
                // system_views.sql: pg_stat_ssl has the backends with a client port.
                View::Ssl => (!e.backend_type.is_auxiliary()).then(|| ssl_row(e)),
            })
            .collect()
    }
}

/// The rows of `pg_replication_slots` for physical slots (`slotfuncs.c:
/// pg_get_replication_slots`): `wal_status` is `reserved` while the slot holds WAL, as
/// walstream never invalidates a slot (`max_slot_wal_keep_size = -1`).
pub fn slot_rows(slots: &[SlotInfo]) -> Vec<Vec<Datum>> {
    slots
        .iter()
        .map(|s| {
            vec![
                text(&s.name),
                Datum::Null,
                text("physical"),
                Datum::Null,
                Datum::Null,
                Datum::Bool(s.temporary),
                Datum::Bool(s.active_pid.is_some()),
                s.active_pid.map_or(Datum::Null, Datum::Int4),
                Datum::Null,
                Datum::Null,
                s.restart_lsn.map_or(Datum::Null, lsn),
                Datum::Null,
                if s.restart_lsn.is_some() { text("reserved") } else { Datum::Null },
                Datum::Null,
                Datum::Bool(false),
            ]
        })
        .collect()
}

/// `timestamptz` output in the UTC zone walstream reports (`2026-11-21 13:40:52.12345+00`).
pub fn timestamptz(t: SystemTime) -> Datum {
    let Ok(ts) = jiff::Timestamp::try_from(t) else { return Datum::Null };
    let micros = ts.subsec_microsecond();
    let mut out = ts.strftime("%Y-%m-%d %H:%M:%S").to_string();
    if micros != 0 {
        let frac = format!(".{micros:06}");
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push_str("+00");
    Datum::Text(out)
}

fn opt_time(t: Option<SystemTime>) -> Datum {
    t.map_or(Datum::Null, timestamptz)
}

fn text(s: &str) -> Datum {
    Datum::Text(s.to_string())
}

fn activity_row(e: &BackendEntry) -> Vec<Datum> {
    let st = e.status();
    let walsender = e.backend_type == crate::registry::BackendType::WalSender;
    let aux = e.backend_type.is_auxiliary();
    let query = if (walsender || aux) && st.query.is_empty() {
        Datum::Text(String::new())
    } else {
        text(&st.query)
    };
    let (wait_type, wait_event) = match st.wait_event.or_else(|| e.backend_type.idle_wait_event()) {
        Some((t, w)) => (text(t), text(w)),
        None => (Datum::Null, Datum::Null),
    };
    let client = |d: Datum| if aux { Datum::Null } else { d };
    vec![
        Datum::Null,
        if walsender || aux { Datum::Null } else { text(&st.database) },
        Datum::Int4(e.pid),
        Datum::Null,
        Datum::Null,
        client(text(&st.user)),
        if aux { Datum::Text(String::new()) } else { text(&st.application_name) },
        client(text(&e.client_addr.ip().to_string())),
        Datum::Null,
        client(Datum::Int4(i32::from(e.client_addr.port()))),
        timestamptz(e.backend_start),
        Datum::Null,
        opt_time(st.query_start),
        opt_time(st.state_change),
        wait_type,
        wait_event,
        st.state.and_then(|s| s.as_str()).map_or(Datum::Null, text),
        Datum::Null,
        Datum::Null,
        Datum::Null,
        query,
        text(e.backend_type.as_str()),
    ]
}

/// `pg_stat_get_activity`'s ssl columns: NULLs for a plain connection.
fn ssl_row(e: &BackendEntry) -> Vec<Datum> {
    let st = e.status();
    let Some(ssl) = &st.ssl else {
        let mut row = vec![Datum::Int4(e.pid), Datum::Bool(false)];
        row.resize(8, Datum::Null);
        return row;
    };
    let opt = |v: &Option<String>| v.as_deref().map_or(Datum::Null, text);
    vec![
        Datum::Int4(e.pid),
        Datum::Bool(true),
        text(&ssl.version),
        text(&ssl.cipher),
        Datum::Int4(ssl.bits),
        opt(&ssl.client_dn),
        opt(&ssl.client_serial),
        opt(&ssl.issuer_dn),
    ]
}

fn lsn(l: walstream_protocol::Lsn) -> Datum {
    if l.is_valid() {
        Datum::Text(l.to_string())
    } else {
        Datum::Null
    }
}

/// `interval` output of a duration below a day as PostgreSQL writes it
/// (`00:00:00.000123`, `00:00:01.5`, `25:01:01.25`: hours, trailing zeros trimmed).
pub fn interval(d: std::time::Duration) -> Datum {
    let micros = d.as_micros();
    let secs = micros / 1_000_000;
    let mut out = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    let frac = micros % 1_000_000;
    if frac != 0 {
        let digits = format!("{frac:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    Datum::Text(out)
}

fn replication_row(e: &BackendEntry, registry: &Registry) -> Option<Vec<Datum>> {
    let (priority, sync_state) = registry.sync_rep().describe(e.pid);
    let st = e.status();
    let ws = st.walsender.as_ref()?;
    Some(vec![
        Datum::Int4(e.pid),
        Datum::Null,
        text(&st.user),
        text(&st.application_name),
        text(&e.client_addr.ip().to_string()),
        Datum::Null,
        Datum::Int4(i32::from(e.client_addr.port())),
        timestamptz(e.backend_start),
        ws.xmin.map_or(Datum::Null, |x| Datum::Text(x.to_string())),
        text(ws.state.as_str()),
        lsn(ws.sent),
        lsn(ws.write),
        lsn(ws.flush),
        lsn(ws.apply),
        ws.write_lag.map_or(Datum::Null, interval),
        ws.flush_lag.map_or(Datum::Null, interval),
        ws.replay_lag.map_or(Datum::Null, interval),
        Datum::Int4(priority),
        text(sync_state),
        opt_time(ws.reply_time),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_postgresql_prints_them() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_795_259_545_315_400);
        assert_eq!(timestamptz(t), Datum::Text("2026-11-21 11:12:25.3154+00".into()));
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_259_545);
        assert_eq!(timestamptz(t), Datum::Text("2026-11-21 11:12:25+00".into()));
    }

    #[test]
    fn intervals_print_as_postgresql_prints_them() {
        // SELECT make_interval(secs => ...) on PostgreSQL 15.
        let i = |us| interval(std::time::Duration::from_micros(us));
        assert_eq!(i(123), Datum::Text("00:00:00.000123".into()));
        assert_eq!(i(1_500_000), Datum::Text("00:00:01.5".into()));
        assert_eq!(i(1_000_000), Datum::Text("00:00:01".into()));
        assert_eq!(i(90_061_250_000), Datum::Text("25:01:01.25".into()));
        assert_eq!(i(0), Datum::Text("00:00:00".into()));
    }

    #[test]
    fn views_have_postgresql_15_columns() {
        assert_eq!(View::Replication.columns().len(), 20);
        assert_eq!(View::Activity.columns().len(), 22);
        assert_eq!(View::named("PG_STAT_REPLICATION"), Some(View::Replication));
        assert_eq!(View::named("pg_catalog.pg_stat_activity"), Some(View::Activity));
        assert_eq!(View::ReplicationSlots.columns().len(), 15);
        assert_eq!(View::Ssl.columns().len(), 8);
        assert_eq!(View::named("pg_stat_ssl"), Some(View::Ssl));
    }

    #[test]
    fn slot_rows_read_as_postgresql_15_shows_them() {
        // A live 15: `room_t||physical|||f|f||||0/A000028||reserved||f`.
        let slot = SlotInfo {
            name: "room_t".into(),
            temporary: false,
            active_pid: None,
            restart_lsn: Some(walstream_protocol::Lsn(0xA00_0028)),
            restart_tli: None,
        };
        let rows = slot_rows(&[slot]);
        let shown: Vec<String> = rows[0]
            .iter()
            .map(|d| match d {
                Datum::Null => String::new(),
                Datum::Bool(b) => if *b { "t" } else { "f" }.to_string(),
                Datum::Text(t) => t.clone(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(shown.join("|"), "room_t||physical|||f|f||||0/A000028||reserved||f");
        assert_eq!(rows[0].len(), View::ReplicationSlots.columns().len());
    }
}
