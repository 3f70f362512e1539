//! pg_waldump's output: one line per record (`XLogDumpDisplayRecord`) and the
//! statistics tables (`XLogDumpDisplayStats`, `XLogDumpStatsRow`, `xlogstats.c`).

use std::io::{self, Write};

use walstream_protocol::wal::desc::{identify, write_block_refs, write_desc};
use walstream_protocol::wal::{rmgr, DecodedRecord, RecordView};
use walstream_protocol::Lsn;

use super::tz::LocalTime;

/// Prints records, reusing one buffer for the description.
#[derive(Default)]
pub struct Printer {
    buf: Vec<u8>,
    tz: LocalTime,
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
        let b = &mut self.buf;
        b.clear();
        // "rmgr: %-11s len (rec/tot): %6u/%6u, tx: %10u, lsn: %X/%08X, prev %X/%08X, "
        b.extend_from_slice(b"rmgr: ");
        // The decoder only returns records of valid (built-in or custom) rmgrs.
        pad_right(b, rmgr::name(h.rmid).unwrap_or_default().as_bytes(), 11);
        b.extend_from_slice(b" len (rec/tot): ");
        push_u32(b, rec.rec_len(), 6);
        b.push(b'/');
        push_u32(b, h.tot_len, 6);
        b.extend_from_slice(b", tx: ");
        push_u32(b, h.xid.0, 10);
        b.extend_from_slice(b", lsn: ");
        push_lsn(b, rec.lsn);
        b.extend_from_slice(b", prev ");
        push_lsn(b, h.prev);
        b.extend_from_slice(b", desc: ");
        write_desc(b, rec, &self.tz);
        write_block_refs(b, rec, detailed);
        out.write_all(b)
    }
}

/// `%-Ns`.
fn pad_right(b: &mut Vec<u8>, s: &[u8], width: usize) {
    b.extend_from_slice(s);
    b.resize(b.len() + width.saturating_sub(s.len()), b' ');
}

/// `%Nu`: right-aligned in `width` columns.
fn push_u32(b: &mut Vec<u8>, v: u32, width: usize) {
    let mut digits = [0u8; 10];
    let (mut n, mut i) = (v, digits.len());
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = digits.len() - i;
    b.resize(b.len() + width.saturating_sub(len), b' ');
    b.extend_from_slice(&digits[i..]);
}

/// `%X/%08X`.
fn push_lsn(b: &mut Vec<u8>, lsn: Lsn) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let (hi, lo) = lsn.halves();
    let hi_digits = (8 - hi.leading_zeros() / 4).max(1);
    for shift in (0..hi_digits).rev() {
        b.push(HEX[((hi >> (shift * 4)) & 0xF) as usize]);
    }
    b.push(b'/');
    for shift in (0..8).rev() {
        b.push(HEX[((lo >> (shift * 4)) & 0xF) as usize]);
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

    fn merge(&mut self, other: &Counts) {
        self.count += other.count;
        self.rec_len += other.rec_len;
        self.fpi_len += other.fpi_len;
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
    pub fn add(&mut self, rec: &RecordView<'_>, end: Lsn) {
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

    /// Adds the counts of `other`, which read the records after this one's.
    pub fn merge(&mut self, other: &Stats) {
        self.count += other.count;
        for (a, b) in self.rmgr.iter_mut().zip(other.rmgr.iter()) {
            a.merge(b);
        }
        for (ra, rb) in self.record.iter_mut().zip(other.record.iter()) {
            for (a, b) in ra.iter_mut().zip(rb.iter()) {
                a.merge(b);
            }
        }
        if other.end.is_valid() {
            self.end = other.end;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_fields_as_printf() {
        let mut b = Vec::new();
        push_u32(&mut b, 53, 6);
        push_u32(&mut b, u32::MAX, 6);
        push_lsn(&mut b, Lsn(0x0280_0028));
        b.push(b' ');
        push_lsn(&mut b, Lsn(0x1_0000_0000));
        pad_right(&mut b, b"XLOG", 11);
        b.push(b'|');
        assert_eq!(
            String::from_utf8(b).unwrap(),
            "    5342949672950/02800028 1/00000000XLOG       |"
        );
    }
}
