//! The example background worker: every interval it copies `pg_stat_replication` into the
//! table `walstream_replication_samples`, so the replication history of a primary can be
//! queried later. It shows the registration API:
//!
//! ```no_run
//! use std::time::Duration;
//! use walstream_node::bgworker::sampler;
//! use walstream_node::server::NodeOptions;
//!
//! # fn f(mut opts: NodeOptions) {
//! opts.workers.push(sampler::registration(Duration::from_secs(10)));
//! # }
//! ```

use std::time::Duration;

use walstream_sender::backend::query::{Datum, QueryOutput, QuerySession};

use super::{BgWorker, BgWorkerStart, Restart, WorkerContext};

/// The table the samples go to.
pub const TABLE: &str = "walstream_replication_samples";

/// `pg_stat_replication`'s columns the sampler keeps.
const COLUMNS: &str =
    "application_name, state, sent_lsn, write_lsn, flush_lsn, replay_lsn, sync_state";

/// The sampler, every `interval`; it starts once recovery has finished and, when it
/// fails, again after 5 seconds.
pub fn registration(interval: Duration) -> BgWorker {
    BgWorker {
        name: "replication sampler".into(),
        bgw_type: "replication sampler",
        start: BgWorkerStart::RecoveryFinished,
        restart: Restart::After(Duration::from_secs(5)),
        main: std::sync::Arc::new(move |ctx| Box::pin(run(ctx, interval))),
    }
}

fn literal(d: &Datum) -> String {
    match d.encode(0) {
        None => "NULL".into(),
        Some(b) => format!("'{}'", String::from_utf8_lossy(&b).replace('\'', "''")),
    }
}

async fn sql(session: &mut Box<dyn QuerySession>, text: &str) -> Result<Vec<QueryOutput>, String> {
    let r = session.simple_query(text).await;
    match r.error {
        Some(e) => Err(format!("{text}: {}", e.message)),
        None => Ok(r.outputs),
    }
}

async fn run(mut ctx: WorkerContext, interval: Duration) -> Result<(), String> {
    sql(
        &mut ctx.sql,
        &format!(
            "CREATE TABLE IF NOT EXISTS {TABLE} (sample_time timestamptz NOT NULL, \
             application_name text NOT NULL, state text, sent_lsn text, write_lsn text, \
             flush_lsn text, replay_lsn text, sync_state text, \
             PRIMARY KEY (sample_time, application_name))"
        ),
    )
    .await?;
    loop {
        if ctx.failpoints.take(&ctx.name) {
            return Err("failed as a test asked".into());
        }
        let outputs =
            sql(&mut ctx.sql, &format!("SELECT {COLUMNS} FROM pg_stat_replication")).await?;
        let rows = outputs.into_iter().find_map(|o| match o {
            QueryOutput::Rows { rows, .. } => Some(rows),
            _ => None,
        });
        let values: Vec<String> = rows
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let cols: Vec<String> = r.iter().map(literal).collect();
                format!("(now(), {})", cols.join(", "))
            })
            .collect();
        if !values.is_empty() {
            let insert = format!(
                "INSERT INTO {TABLE} (sample_time, {COLUMNS}) VALUES {} ON CONFLICT (sample_time, application_name) DO NOTHING",
                values.join(", ")
            );
            sql(&mut ctx.sql, &insert).await?;
        }
        tokio::select! {
            () = ctx.shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
    }
}
