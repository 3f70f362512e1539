//! Finding the flushed end of the WAL in a directory by decoding it, and following it
//! as files grow.
//!
//! The flushed end is the end of the last complete record (`EndRecPtr`; after
//! `XLOG_SWITCH`, the end of its segment, as the server's flush pointer). Zero-filled
//! tails, pre-allocated and recycled segments end the WAL: the decoder stops there.
//!
//! The decoder's errors are sticky, and a file may be written after the decoder saw its
//! zeros (a padded `.partial`, a pre-allocated segment). So after any error the decoder
//! is rebuilt at the flushed end, fed the real first page of that segment (the decoder
//! validates it first, as PostgreSQL does), zeros it never looks at up to the page of the
//! flushed end, then the real bytes from there: a restart reads one page plus the tail.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use walstream_protocol::lsn::XLOG_BLCKSZ;
use walstream_protocol::timeline::TimelineHistory;
use walstream_protocol::wal::WalDecoder;
use walstream_protocol::{Lsn, TimeLineId, WalSegSize, XLogSegNo};

use super::super::segfile::read_exact_at;
use super::super::WalSourceError;
use super::listing::{read_long_header, Listing, SegFile};

/// Bytes read and fed at a time, at most.
const CHUNK: u64 = 256 * 1024;
/// The first read after a restart: usually all that is left before the zeros.
const FIRST_CHUNK: u64 = 16 * 1024;
/// Filler the decoder skips over (it never reads the pages between a segment's first page
/// and the page where a restart begins).
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
/// A file whose modification time is older than this (at the time we looked) is taken
/// as unchanged when its size and time are unchanged.
const SETTLED: Duration = Duration::from_secs(1);

/// What the decoding needs to know about the directory.
#[derive(Debug, Clone)]
pub(super) struct Ctx<'a> {
    pub dir: &'a Path,
    pub seg_size: WalSegSize,
    pub sysid: u64,
}

/// A file's identity for "did anything change since the decoder stopped".
type Fingerprint = Vec<(XLogSegNo, u64, Option<SystemTime>)>;

/// The decoding position in the files of one timeline.
#[derive(Debug)]
pub(super) struct Tail {
    /// The timeline whose files are decoded.
    pub tli: TimeLineId,
    /// When decoding an ancestor of the current timeline: where it ended.
    cap: Option<Lsn>,
    decoder: WalDecoder,
    /// The decoder stopped with an error; rebuild it before feeding more.
    dead: bool,
    /// A record has been decoded.
    found: bool,
    /// The end of the last complete record (or where the search started).
    end: Lsn,
    /// The files as they were when the decoder stopped, and whether they had settled.
    stopped_at: Option<(Fingerprint, bool)>,
    /// The file last fed from.
    file: Option<(XLogSegNo, String, File)>,
    /// The next read's size: small after a restart, doubling up to [`CHUNK`].
    chunk: u64,
}

impl Tail {
    fn searching(ctx: &Ctx<'_>, tli: TimeLineId, segno: XLogSegNo, cap: Option<Lsn>) -> Tail {
        let start = segno.start_lsn(ctx.seg_size);
        let mut decoder = WalDecoder::find_next(start, ctx.seg_size);
        decoder.set_system_id(ctx.sysid);
        decoder.set_timeline(tli);
        Tail {
            tli,
            cap,
            decoder,
            dead: false,
            found: false,
            end: start,
            stopped_at: None,
            file: None,
            chunk: CHUNK,
        }
    }

    /// Starts decoding the WAL of `tli`: from the newest segment whose first page is valid
    /// for its name and from which a record decodes, else from older ones; if `tli` has no
    /// such segment, its ancestors' (from its history file), capped where each ended.
    ///
    /// # Errors
    /// No segment of `tli` or its ancestors has a valid first page; I/O errors.
    pub fn locate(
        ctx: &Ctx<'_>,
        listing: &Listing,
        tli: TimeLineId,
    ) -> Result<Tail, WalSourceError> {
        let mut chain = vec![(tli, None)];
        if let Some(history) = read_history(ctx.dir, tli) {
            chain.extend(history.ancestors.iter().rev().map(|e| (e.tli, Some(e.switchpoint))));
        }
        let mut fallback = None;
        for &(t, cap) in &chain {
            for (segno, f) in listing.segments_of(t).rev() {
                if !first_page_valid(ctx, t, segno, f) {
                    continue;
                }
                let mut tail = Tail::searching(ctx, t, segno, cap);
                tail.advance(ctx, listing)?;
                if tail.found {
                    return Ok(tail);
                }
                fallback.get_or_insert(tail);
            }
        }
        fallback.ok_or_else(|| {
            WalSourceError::Invalid(format!(
                "no WAL segment of timeline {tli} in \"{}\" has a valid first page",
                ctx.dir.display()
            ))
        })
    }

    /// The flushed end.
    pub fn flushed(&self) -> Lsn {
        self.cap.map_or(self.end, |c| c.min(self.end))
    }

    /// Whether the search has not found any record and the decoder gave up: the caller
    /// should [`Tail::locate`] again.
    pub fn lost(&self) -> bool {
        self.dead && !self.found
    }

    /// Feeds what was written since the last call and decodes it.
    ///
    /// # Errors
    /// I/O errors reading a segment file.
    pub fn advance(&mut self, ctx: &Ctx<'_>, listing: &Listing) -> Result<(), WalSourceError> {
        if self.dead {
            let fp = self.fingerprint(ctx, listing);
            if self.stopped_at.as_ref().is_some_and(|(old, settled)| *settled && *old == fp) {
                return Ok(());
            }
            if !self.found || !self.restart(ctx, listing)? {
                return Ok(());
            }
        }
        while self.feed_chunk(ctx, listing)? {
            if !self.decode() {
                let fp = self.fingerprint(ctx, listing);
                let newest = fp.iter().filter_map(|f| f.2).max();
                let settled = newest.is_some_and(|t| {
                    SystemTime::now().duration_since(t).is_ok_and(|age| age > SETTLED)
                });
                self.stopped_at = Some((fp, settled));
                break;
            }
        }
        Ok(())
    }

    /// Reads and feeds the next bytes; `false` when there are none.
    fn feed_chunk(&mut self, ctx: &Ctx<'_>, listing: &Listing) -> Result<bool, WalSourceError> {
        let pos = self.decoder.next_feed_lsn();
        let segno = pos.segno(ctx.seg_size);
        let Some(f) = listing.segment(self.tli, segno) else { return Ok(false) };
        let off = u64::from(pos.segment_offset(ctx.seg_size));
        let avail = f.len.min(u64::from(ctx.seg_size.bytes()));
        if off >= avail {
            return Ok(false);
        }
        let data = self.read_at(ctx, segno, f, off, (avail - off).min(self.chunk))?;
        self.chunk = (self.chunk * 2).min(CHUNK);
        if data.is_empty() {
            return Ok(false);
        }
        self.decoder.feed(data);
        Ok(true)
    }

    /// Polls every record the input holds; `false` if the decoder stopped with an error.
    fn decode(&mut self) -> bool {
        loop {
            match self.decoder.poll_ref().map(|r| r.is_some()) {
                Ok(true) => {
                    self.found = true;
                    self.end = self.decoder.next_record_lsn();
                }
                Ok(false) => return true,
                Err(e) => {
                    if !e.is_end_of_wal() {
                        tracing::debug!("WAL in {} ends at {}: {e}", self.tli, e.lsn);
                    }
                    self.dead = true;
                    return false;
                }
            }
        }
    }

    /// Rebuilds the decoder at the flushed end (see the module docs); `false` if the
    /// segment holding it is gone.
    fn restart(&mut self, ctx: &Ctx<'_>, listing: &Listing) -> Result<bool, WalSourceError> {
        let at = self.end;
        let mut d = WalDecoder::new(at, ctx.seg_size);
        d.set_system_id(ctx.sysid);
        d.set_timeline(self.tli);
        let seg_start = at.segment_start(ctx.seg_size);
        let page = at.page_start();
        if page > seg_start {
            let segno = at.segno(ctx.seg_size);
            let Some(f) = listing.segment(self.tli, segno) else { return Ok(false) };
            let first = self.read_at(ctx, segno, f, 0, u64::from(XLOG_BLCKSZ))?;
            if first.len() < XLOG_BLCKSZ as usize {
                return Ok(false);
            }
            d.feed(first);
            let mut fill = seg_start + u64::from(XLOG_BLCKSZ);
            while fill < page {
                let n = (page - fill).min(ZEROS.len() as u64);
                d.feed(Bytes::from_static(&ZEROS[..n as usize]));
                fill = fill + n;
            }
        }
        self.decoder = d;
        self.chunk = FIRST_CHUNK;
        self.dead = false;
        self.stopped_at = None;
        Ok(true)
    }

    /// The files from the flushed end's segment on.
    fn fingerprint(&self, ctx: &Ctx<'_>, listing: &Listing) -> Fingerprint {
        let from = self.end.segno(ctx.seg_size);
        listing
            .segments_of(self.tli)
            .filter(|(s, _)| *s >= from)
            .map(|(s, f)| (s, f.len, f.mtime))
            .collect()
    }

    fn read_at(
        &mut self,
        ctx: &Ctx<'_>,
        segno: XLogSegNo,
        f: &SegFile,
        off: u64,
        len: u64,
    ) -> Result<Bytes, WalSourceError> {
        let io = |source| WalSourceError::Io { path: f.name.clone(), source };
        if !matches!(&self.file, Some((s, n, _)) if *s == segno && *n == f.name) {
            let file = File::open(ctx.dir.join(&f.name)).map_err(io)?;
            self.file = Some((segno, f.name.clone(), file));
        }
        let Some((_, _, file)) = &self.file else { return Ok(Bytes::new()) };
        read_exact_at(file, off, len as usize).map_err(io)
    }
}

/// Whether the first page header of segment file `f` is valid for its name: magic, long
/// header, `xlp_pageaddr` the segment start, this system, a timeline not above the file's.
fn first_page_valid(ctx: &Ctx<'_>, tli: TimeLineId, segno: XLogSegNo, f: &SegFile) -> bool {
    read_long_header(&ctx.dir.join(&f.name)).is_some_and(|(h, seg, sysid)| {
        seg == ctx.seg_size
            && sysid == ctx.sysid
            && h.pageaddr == segno.start_lsn(ctx.seg_size)
            && h.tli <= tli
    })
}

/// The parsed history file of `tli`, if it exists and parses.
pub(super) fn read_history(dir: &Path, tli: TimeLineId) -> Option<TimelineHistory> {
    let name = walstream_protocol::lsn::history_file_name(tli);
    let bytes = std::fs::read(dir.join(name)).ok()?;
    TimelineHistory::parse(tli, &bytes).ok()
}
