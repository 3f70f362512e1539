//! pg_waldump's output: one line per record (`XLogDumpDisplayRecord`) and the
//! statistics tables (`XLogDumpDisplayStats`, `XLogDumpStatsRow`, `xlogstats.c`).

use std::io::{self, Write};

use walstream_protocol::wal::desc::{identify, write_block_refs, write_desc};
use walstream_protocol::wal::{rmgr, DecodedRecord};
use walstream_protocol::Lsn;

use super::tz::LocalTime;

/// Prints records, reusing one buffer for the description.
#[derive(Default)]
pub struct Printer {
    buf: Vec<u8>,
    tz: LocalTime,
}

/// Writes the resource manager name padded to 11 columns (`%-11s`).
fn write_rmgr_name(out: &mut impl Write, rmid: u8, width: usize) -> io::Result<()> {
    match rmgr::BUILTIN_NAMES.get(usize::from(rmid)) {
        Some(name) => write!(out, "{name:<width$}"),
        None => write!(out, "custom{rmid:03}{:1$}", "", width.saturating_sub(9)),
    }
}

impl Printer {
    /// Prints one record as `XLogDumpDisplayRecord` does.
    ///
    /// # Errors
    /// Errors writing to `out`.
    pub fn print(
        &mut self,
        out: &mut impl Write,
        rec: &DecodedRecord,
        detailed: bool,
    ) -> io::Result<()> {
        let h = &rec.header;
        let (lsn, prev) = (rec.lsn.halves(), h.prev.halves());
        out.write_all(b"rmgr: ")?;
        write_rmgr_name(out, h.rmid, 11)?;
        write!(
            out,
            " len (rec/tot): {:6}/{:6}, tx: {:10}, lsn: {:X}/{:08X}, prev {:X}/{:08X}, desc: ",
            rec.rec_len(),
            h.tot_len,
            h.xid.0,
            lsn.0,
            lsn.1,
            prev.0,
            prev.1
        )?;
        self.buf.clear();
        write_desc(&mut self.buf, rec, &self.tz);
        write_block_refs(&mut self.buf, rec, detailed);
        out.write_all(&self.buf)
    }
}

/// Counts and sizes (`XLogRecStats`).
#[derive(Clone, Copy, Default)]
struct Counts {
    count: u64,
    rec_len: u64,
    fpi_len: u64,
}

impl Counts {
    fn add(&mut self, rec_len: u32, fpi_len: u32) {
        self.count += 1;
        self.rec_len += u64::from(rec_len);
        self.fpi_len += u64::from(fpi_len);
    }
}

/// Statistics per resource manager and per record type (`XLogStats`).
pub struct Stats {
    /// The first record read (`stats.startptr`).
    pub start: Lsn,
    end: Lsn,
    count: u64,
    rmgr: Box<[Counts; 256]>,
    record: Box<[[Counts; 16]; 256]>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            start: Lsn(0),
            end: Lsn(0),
            count: 0,
            rmgr: Box::new([Counts::default(); 256]),
            record: Box::new([[Counts::default(); 16]; 256]),
        }
    }
}

impl Stats {
    /// Counts one record (`XLogRecStoreStats`); `end` is its `EndRecPtr`.
    pub fn add(&mut self, rec: &DecodedRecord, end: Lsn) {
        let (rmid, fpi) = (usize::from(rec.header.rmid), rec.fpi_len());
        let rec_len = rec.header.tot_len.saturating_sub(fpi);
        self.count += 1;
        self.rmgr[rmid].add(rec_len, fpi);
        // xlogstats.c: XACT records keep only the opcode bits
        let mut recid = usize::from(rec.header.info >> 4);
        if rmid == usize::from(rmgr::RM_XACT_ID) {
            recid &= 0x07;
        }
        self.record[rmid][recid].add(rec_len, fpi);
        self.end = end;
    }

    /// Prints the table as `XLogDumpDisplayStats` does (nothing if no record was counted).
    ///
    /// # Errors
    /// Errors writing to `out`.
    pub fn display(&self, out: &mut impl Write, per_record: bool) -> io::Result<()> {
        if !self.end.is_valid() {
            return Ok(());
        }
        let valid = (0..=255u8).filter(|&r| rmgr::is_valid(r));
        let mut total = Counts::default();
        for r in valid.clone() {
            let c = self.rmgr[usize::from(r)];
            total.count += c.count;
            total.rec_len += c.rec_len;
            total.fpi_len += c.fpi_len;
        }
        let total_len = total.rec_len + total.fpi_len;
        writeln!(out, "WAL statistics between {} and {}:", self.start, self.end)?;
        writeln!(
            out,
            "{:<27} {:>20} {:>8} {:>20} {:>8} {:>20} {:>8} {:>20} {:>8}",
            "Type", "N", "(%)", "Record size", "(%)", "FPI size", "(%)", "Combined size", "(%)"
        )?;
        writeln!(
            out,
            "{:<27} {:>20} {:>8} {:>20} {:>8} {:>20} {:>8} {:>20} {:>8}",
            "----", "-", "---", "-----------", "---", "--------", "---", "-------------", "---"
        )?;
        for r in valid {
            let name = rmgr::name(r).unwrap_or_default();
            if !per_record {
                let c = self.rmgr[usize::from(r)];
                if rmgr::is_custom(r) && c.count == 0 {
                    continue;
                }
                stats_row(out, &name, c, total, total_len)?;
                continue;
            }
            for (j, c) in self.record[usize::from(r)].iter().enumerate() {
                if c.count == 0 {
                    continue;
                }
                let info = (j as u8) << 4;
                let row = match identify(r, info) {
                    Some(id) => format!("{name}/{id}"),
                    None => format!("{name}/UNKNOWN ({info:x})"),
                };
                stats_row(out, &row, *c, total, total_len)?;
            }
        }
        writeln!(
            out,
            "{:<27} {:>20} {:>8} {:>20} {:>8} {:>20} {:>8} {:>20}",
            "", "--------", "", "--------", "", "--------", "", "--------"
        )?;
        let rec_pct = format!("[{:.2}%]", pct(total.rec_len, total_len));
        let fpi_pct = format!("[{:.2}%]", pct(total.fpi_len, total_len));
        writeln!(
            out,
            "{:<27} {:>20} {:<9}{:>20} {:<9}{:>20} {:<9}{:>20} {:<6}",
            "Total",
            self.count,
            "",
            total.rec_len,
            rec_pct,
            total.fpi_len,
            fpi_pct,
            total_len,
            "[100%]"
        )
    }
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

// pg_waldump.c: XLogDumpStatsRow
fn stats_row(
    out: &mut impl Write,
    name: &str,
    c: Counts,
    total: Counts,
    total_len: u64,
) -> io::Result<()> {
    let tot = c.rec_len + c.fpi_len;
    writeln!(
        out,
        "{:<27} {:>20} ({:>6.2}) {:>20} ({:>6.2}) {:>20} ({:>6.2}) {:>20} ({:>6.2})",
        name,
        c.count,
        pct(c.count, total.count),
        c.rec_len,
        pct(c.rec_len, total.rec_len),
        c.fpi_len,
        pct(c.fpi_len, total.fpi_len),
        tot,
        pct(tot, total_len)
    )
}
