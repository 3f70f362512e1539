//! The demo's write workload: its tables, and clients that upsert, update and insert in
//! small transactions over tokio-postgres until told to stop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

/// The demo's tables.
pub const SCHEMA: &str = "\
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL, updates int NOT NULL);
CREATE TABLE history (id bigint PRIMARY KEY, client int NOT NULL, account int NOT NULL, \
delta bigint NOT NULL, note text NOT NULL);";

/// How many accounts the clients write to.
const ACCOUNTS: u32 = 1000;

const UPSERT: &str = "INSERT INTO accounts (id, balance, updates) VALUES ($1::int4, $2::int8, 1) \
ON CONFLICT (id) DO UPDATE SET balance = accounts.balance + EXCLUDED.balance, \
updates = accounts.updates + 1";
const UPDATE: &str =
    "UPDATE accounts SET balance = balance - $2::int8, updates = updates + 1 WHERE id = $1::int4";
const INSERT: &str = "INSERT INTO history (id, client, account, delta, note) \
VALUES ($1::int8, $2::int4, $3::int4, $4::int8, $5::text)";

/// Connects to the node at `addr` as `postgres`; the connection runs on its own task.
///
/// # Errors
/// The connection or the authentication failed.
pub async fn connect(addr: SocketAddr) -> Result<Client> {
    let conninfo = format!("host={} port={} user=postgres dbname=postgres", addr.ip(), addr.port());
    let (client, conn) = tokio_postgres::connect(&conninfo, NoTls)
        .await
        .with_context(|| format!("could not connect to {addr}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("demo connection ended: {e}");
        }
    });
    Ok(client)
}

/// A small deterministic generator (xorshift64*), one per client.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Runs client number `client` against `addr` until `stop` is cancelled, counting its
/// commits in `commits`. Each transaction touches one account (upsert or update) and
/// inserts one history row, so clients never wait on each other in a cycle.
///
/// # Errors
/// A statement or the connection failed.
pub async fn run_client(
    addr: SocketAddr,
    client: u32,
    stop: CancellationToken,
    commits: Arc<AtomicU64>,
) -> Result<()> {
    let mut db = connect(addr).await?;
    let upsert = db.prepare(UPSERT).await.context("could not prepare the upsert")?;
    let update = db.prepare(UPDATE).await.context("could not prepare the update")?;
    let insert = db.prepare(INSERT).await.context("could not prepare the insert")?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (u64::from(client) + 1));
    let mut seq: i64 = 0;
    while !stop.is_cancelled() {
        seq += 1;
        let account = (rng.next() % u64::from(ACCOUNTS)) as i32 + 1;
        let delta = (rng.next() % 1000) as i64 + 1;
        let id = i64::from(client) << 40 | seq;
        let note = format!("client {client} transaction {seq}");
        let txn = db.transaction().await?;
        if seq % 3 == 0 {
            txn.execute(&update, &[&account, &delta]).await?;
        } else {
            txn.execute(&upsert, &[&account, &delta]).await?;
        }
        txn.execute(&insert, &[&id, &(client as i32), &account, &delta, &note]).await?;
        txn.commit().await?;
        commits.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_draw_different_accounts() {
        let mut a = Rng(0x9E37_79B9_7F4A_7C15 ^ 1);
        let mut b = Rng(0x9E37_79B9_7F4A_7C15 ^ 2);
        let xs: Vec<_> = (0..8).map(|_| a.next()).collect();
        let ys: Vec<_> = (0..8).map(|_| b.next()).collect();
        assert_ne!(xs, ys);
        assert!(xs.iter().all(|&x| x != 0));
    }
}
