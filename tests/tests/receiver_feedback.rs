//! Hot standby feedback from walstream's receiver: the applier's xmin reaches a real
//! PostgreSQL 15 primary's `pg_stat_replication.backend_xmin`, on the status cadence.

use std::time::Duration;

use walstream_protocol::wal::RecordView;
use walstream_receiver::apply::{Apply, ApplyError};
use walstream_receiver::conninfo::ConnInfo;
use walstream_receiver::segments::{SegmentWriter, WriterOptions};
use walstream_receiver::stream::{Receiver, StreamOptions};
use walstream_tests::{scenario, wait_for, PgCluster};

/// An applier whose readers hold a fixed xmin.
struct HoldsXmin(u32);

impl Apply for HoldsXmin {
    fn apply(&mut self, _record: &RecordView<'_>) -> Result<(), ApplyError> {
        Ok(())
    }

    fn feedback_xmin(&self) -> Option<(u32, u32)> {
        Some((self.0, 0))
    }
}

#[test]
fn feedback_xmin_reaches_the_primary() -> anyhow::Result<()> {
    let primary = PgCluster::start(&scenario::source_config())?;
    // An xmin the primary can hold: its current next xid.
    let xmin: u32 = primary.psql("SELECT txid_current() % (2^32)::bigint")?.parse()?;
    let dir = tempfile::tempdir()?;
    let info = ConnInfo::parse(&format!(
        "host=127.0.0.1 port={} user=postgres application_name=feedback",
        primary.port()
    ))?;
    let opts = StreamOptions {
        conninfo: info,
        slot: None,
        status_interval: Duration::from_millis(200),
        receiver_timeout: Duration::from_secs(60),
        synchronous: false,
        report_flush: true,
        endpos: None,
        no_loop: true,
        hot_standby_feedback: true,
    };
    let writer = SegmentWriter::open(dir.path(), scenario::seg_size(), WriterOptions::default())?;
    let rt = tokio::runtime::Runtime::new()?;
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = {
        let cancel = cancel.clone();
        rt.spawn(async move { Receiver::new(opts, writer, HoldsXmin(xmin)).run(&cancel).await })
    };
    let seen = wait_for("backend_xmin", Duration::from_secs(20), || {
        let v = primary.psql(
            "SELECT backend_xmin FROM pg_stat_replication WHERE application_name = 'feedback'",
        )?;
        Ok((!v.is_empty()).then_some(v))
    });
    cancel.cancel();
    let ended = rt.block_on(task)?;
    assert_eq!(seen?, xmin.to_string());
    ended?;
    Ok(())
}
