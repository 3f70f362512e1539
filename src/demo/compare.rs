//! Whether the standby's tables equal the primary's: the same aggregate query (count,
//! and sum/min/max of every column) on both, compared as text.

use anyhow::{Context, Result};
use tokio_postgres::{Client, SimpleQueryMessage};

/// One query per table of the workload.
pub const QUERIES: [(&str, &str); 2] = [
    (
        "accounts",
        "SELECT count(*), sum(id), min(id), max(id), sum(balance), min(balance), \
         max(balance), sum(updates), min(updates), max(updates) FROM accounts",
    ),
    (
        "history",
        "SELECT count(*), sum(id), min(id), max(id), sum(client), min(client), max(client), \
         sum(account), min(account), max(account), sum(delta), min(delta), max(delta), \
         sum(length(note)), min(note), max(note) FROM history",
    ),
];

/// One table's aggregates on the primary and the standby.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCheck {
    /// The table.
    pub table: &'static str,
    /// The aggregates on the primary (NULL as `None`).
    pub primary: Vec<Option<String>>,
    /// The aggregates on the standby.
    pub standby: Vec<Option<String>>,
}

impl TableCheck {
    /// Whether both sides agree.
    pub fn matches(&self) -> bool {
        self.primary == self.standby
    }

    /// The table's row count on the primary.
    pub fn count(&self) -> Option<u64> {
        self.primary.first()?.as_deref()?.parse().ok()
    }
}

/// The single row `sql` returns, as text.
async fn row(db: &Client, sql: &str) -> Result<Vec<Option<String>>> {
    let messages = db.simple_query(sql).await?;
    let row = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .context("the query returned no row")?;
    Ok((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect())
}

/// Runs every query of [`QUERIES`] on both nodes.
///
/// # Errors
/// A query failed on either node.
pub async fn check_tables(primary: &Client, standby: &Client) -> Result<Vec<TableCheck>> {
    let mut checks = Vec::new();
    for (table, sql) in QUERIES {
        checks.push(TableCheck {
            table,
            primary: row(primary, sql).await.with_context(|| format!("{table} on the primary"))?,
            standby: row(standby, sql).await.with_context(|| format!("{table} on the standby"))?,
        });
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_matches_when_both_sides_agree() {
        let v = |s: &str| Some(s.to_string());
        let mut c = TableCheck {
            table: "t",
            primary: vec![v("3"), v("6"), None],
            standby: vec![v("3"), v("6"), None],
        };
        assert!(c.matches());
        assert_eq!(c.count(), Some(3));
        c.standby[1] = v("7");
        assert!(!c.matches());
    }
}
