//! The default applier: records are verified by the decoder (CRC, headers, `xl_prev`);
//! it checks their order and counts them per resource manager, as `pg_waldump --stats`.

use walstream_protocol::wal::{rmgr, RecordView};
use walstream_protocol::Lsn;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{Apply, ApplyError};

/// One resource manager's totals (a line of `pg_waldump --stats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RmgrStats {
    /// The resource manager id.
    pub rmid: u8,
    /// Its name as pg_waldump prints it.
    pub name: String,
    /// Records.
    pub count: u64,
    /// `Record size`: record bytes without full-page images.
    pub rec_bytes: u64,
    /// `FPI size`: full-page image bytes.
    pub fpi_bytes: u64,
}

/// What a [`VerifyingApplier`] has applied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApplyStats {
    /// Records applied.
    pub records: u64,
    /// The start of the last record applied (0/0 before any).
    pub last_lsn: Lsn,
    /// Per resource manager with at least one record, in id order.
    pub per_rmgr: Vec<RmgrStats>,
}

impl ApplyStats {
    /// The totals of the resource manager named `name`, if it had records.
    pub fn rmgr(&self, name: &str) -> Option<&RmgrStats> {
        self.per_rmgr.iter().find(|s| s.name == name)
    }
}

/// Counts per resource manager: (records, record bytes, FPI bytes).
type Counts = (u64, u64, u64);

/// Records applied per resource manager, readable while the applier runs (metrics).
#[derive(Debug)]
pub struct RmgrCounts([AtomicU64; 256]);

impl Default for RmgrCounts {
    fn default() -> Self {
        RmgrCounts(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl RmgrCounts {
    /// Counts one record of resource manager `rmid`.
    pub fn count(&self, rmid: u8) {
        self.0[usize::from(rmid)].fetch_add(1, Ordering::Relaxed);
    }

    /// (resource manager name as pg_waldump prints it, records) for those with records.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        self.0
            .iter()
            .enumerate()
            .map(|(id, n)| (id as u8, n.load(Ordering::Relaxed)))
            .filter(|&(_, n)| n > 0)
            .map(|(rmid, n)| {
                (rmgr::name(rmid).map_or_else(|| format!("rmid{rmid}"), |n| n.into()), n)
            })
            .collect()
    }
}

/// Verifies order and counts records per resource manager. Clones share
/// [`VerifyingApplier::rmgr_counts`].
#[derive(Debug, Clone)]
pub struct VerifyingApplier {
    counts: Box<[Counts; 256]>,
    published: Arc<RmgrCounts>,
    records: u64,
    last_lsn: Lsn,
    last_end: Lsn,
}

impl Default for VerifyingApplier {
    fn default() -> Self {
        VerifyingApplier {
            counts: Box::new([(0, 0, 0); 256]),
            published: Arc::default(),
            records: 0,
            last_lsn: Lsn::INVALID,
            last_end: Lsn::INVALID,
        }
    }
}

impl VerifyingApplier {
    /// A new applier with nothing counted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records applied per resource manager, to read while it runs.
    pub fn rmgr_counts(&self) -> Arc<RmgrCounts> {
        self.published.clone()
    }

    /// What was applied so far.
    pub fn stats(&self) -> ApplyStats {
        let per_rmgr = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, c)| c.0 > 0)
            .map(|(id, &(count, rec_bytes, fpi_bytes))| {
                let rmid = id as u8;
                let name = rmgr::name(rmid).map_or_else(|| format!("rmid{rmid}"), |n| n.into());
                RmgrStats { rmid, name, count, rec_bytes, fpi_bytes }
            })
            .collect();
        ApplyStats { records: self.records, last_lsn: self.last_lsn, per_rmgr }
    }
}

impl Apply for VerifyingApplier {
    fn apply(&mut self, record: &RecordView<'_>) -> Result<(), ApplyError> {
        let lsn = record.lsn;
        if self.records > 0 && lsn < self.last_end {
            let message =
                format!("record overlaps the previous one, which ends at {}", self.last_end);
            return Err(ApplyError::Failed { lsn, message });
        }
        let c = &mut self.counts[usize::from(record.header.rmid)];
        c.0 += 1;
        c.1 += u64::from(record.rec_len());
        c.2 += u64::from(record.fpi_len());
        self.published.0[usize::from(record.header.rmid)].fetch_add(1, Ordering::Relaxed);
        self.records += 1;
        self.last_lsn = lsn;
        self.last_end = record.end_lsn;
        Ok(())
    }
}
