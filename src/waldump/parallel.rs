//! `--stats` on several threads: the range is cut at segment boundaries and each part is
//! decoded by its own [`WalDecoder`], with exactly the result of one sequential pass.
//!
//! First the first record `f` after each cut is found (`XLogFindNextRecord`, reading a
//! little of each segment). Part `i + 1` starts there; part `i` decodes on until it
//! reaches a record at `f` or beyond. If it decodes `f` itself, both decoders have just validated the same record
//! with the same previous record and the same pages, so their states are equal from there
//! on: part `i` stops and part `i + 1`'s records (from `f`) are the sequential ones. If
//! part `i` steps over `f`, or there is no `f`, part `i` carries on alone to the end and
//! the later parts are ignored. Parts are small (a few segments) and taken in order by a
//! pool of threads, since records are not spread evenly over the bytes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use walstream_protocol::wal::{WalDecoder, WalError};
use walstream_protocol::{Lsn, XLogSegNo};

use super::display::Stats;
use super::files::SegmentReader;
use super::{announce_first, io_fatal, no_valid_record, wanted, Config, Fatal};

/// Segments a part should have at least, so that the split pays for itself.
const MIN_SEGMENTS_PER_PART: u64 = 2;
/// Parts per thread, to even out parts with few and many records.
const PARTS_PER_THREAD: u64 = 8;

/// How one part ended.
enum Ending {
    /// It reached the first record of the next part, which goes on from there.
    HandedOver,
    /// It reached the end of the range (`None`) or an error; later parts do not count.
    End(Option<WalError>),
}

/// What one part read.
struct Part {
    stats: Stats,
    first: Option<Lsn>,
    last_read: Lsn,
    ending: Ending,
}

/// One part of the range: where it starts and the first record of the next part.
#[derive(Clone, Copy)]
struct Plan {
    from: Lsn,
    until: Option<Lsn>,
}

/// Segment starts that cut the range into parts, and the number of threads.
fn cuts(cfg: &Config) -> (Vec<Lsn>, usize) {
    let Some(end) = cfg.end.filter(|&e| e > cfg.start) else { return (Vec::new(), 1) };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let first = cfg.start.segno(cfg.seg_size).0;
    let segs = Lsn(end.0 - 1).segno(cfg.seg_size).0 - first + 1;
    let parts = (threads as u64 * PARTS_PER_THREAD).min(segs / MIN_SEGMENTS_PER_PART).max(1);
    if threads < 2 || parts < 2 {
        return (Vec::new(), 1);
    }
    let cuts = (1..parts).map(|i| XLogSegNo(first + segs * i / parts).start_lsn(cfg.seg_size));
    (cuts.collect(), threads)
}

/// The first record at or after `at` (`XLogFindNextRecord`), if one is found before the
/// end of the range or an error.
fn first_record(cfg: &Config, at: Lsn) -> Option<Lsn> {
    let mut reader = SegmentReader::new(cfg);
    let mut dec = WalDecoder::find_next(at, cfg.seg_size);
    loop {
        match dec.poll_ref() {
            Ok(Some(rec)) => return Some(rec.lsn),
            Ok(None) => dec.feed(reader.next_chunk(dec.next_feed_lsn()).ok()??),
            Err(_) => return None,
        }
    }
}

/// The parts: each starts at the previous one's `until`; a part with no `until` goes to
/// the end, and nothing after it is planned.
fn plan(cfg: &Config, cuts: &[Lsn]) -> Vec<Plan> {
    let mut plans = vec![Plan { from: cfg.start, until: None }];
    for &cut in cuts {
        let Some(f) = first_record(cfg, cut) else { break };
        let last = plans.last_mut().expect("plans start with one part");
        if f <= last.from {
            continue;
        }
        last.until = Some(f);
        plans.push(Plan { from: f, until: None });
    }
    plans
}

/// Counts the statistics of the range, on as many threads as pay off, and prints them;
/// the error message if the range ended with one.
///
/// # Errors
/// As the sequential loop: no valid record, reading or writing failures.
pub fn run_stats(cfg: &Config, out: &mut impl std::io::Write) -> Result<Option<String>, Fatal> {
    let (cuts, threads) = cuts(cfg);
    let plans = plan(cfg, &cuts);
    let results: Vec<Mutex<Option<Result<Part, Fatal>>>> =
        plans.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    // Parts after one that did not hand over do not count: no need to decode them.
    let cutoff = AtomicUsize::new(usize::MAX);
    std::thread::scope(|s| {
        for _ in 0..threads.min(plans.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&p) = plans.get(i).filter(|_| i <= cutoff.load(Ordering::Relaxed)) else {
                    break;
                };
                let part = stats_part(cfg, p);
                if !matches!(part, Ok(Part { ending: Ending::HandedOver, .. })) {
                    cutoff.fetch_min(i, Ordering::Relaxed);
                }
                *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(part);
            });
        }
    });
    let parts = results.into_iter().map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()));
    merge(cfg, out, parts)
}

/// Joins the parts in order; the error message, if the range ended with one.
fn merge(
    cfg: &Config,
    out: &mut impl std::io::Write,
    parts: impl Iterator<Item = Option<Result<Part, Fatal>>>,
) -> Result<Option<String>, Fatal> {
    let mut total: Option<Part> = None;
    for part in parts {
        let Some(part) = part else { break };
        let part = part?;
        let ending = match total.as_mut() {
            None => {
                let Some(first) = part.first else { return Err(no_valid_record(cfg)) };
                announce_first(out, cfg, first)?;
                let ending = matches!(part.ending, Ending::HandedOver);
                total = Some(part);
                ending
            }
            Some(t) => {
                t.stats.merge(&part.stats);
                t.last_read = part.last_read;
                t.ending = part.ending;
                matches!(t.ending, Ending::HandedOver)
            }
        };
        if !ending {
            break;
        }
    }
    let Some(t) = total else { return Err(no_valid_record(cfg)) };
    t.stats.display(out, cfg.stats == Some(true)).map_err(io_fatal)?;
    Ok(match t.ending {
        Ending::End(Some(e)) => Some(format!("error in WAL record at {}: {e}", t.last_read)),
        _ => None,
    })
}

/// Decodes from `plan.from` (a record, or anywhere for the first part, as
/// `XLogFindNextRecord`) until the end of the range, an error, or a record at or after
/// `plan.until`.
fn stats_part(cfg: &Config, plan: Plan) -> Result<Part, Fatal> {
    let mut reader = SegmentReader::new(cfg);
    let mut dec = WalDecoder::find_next(plan.from, cfg.seg_size);
    let mut stats = Stats::default();
    let mut until = plan.until;
    let (mut first, mut last_read) = (None::<Lsn>, Lsn(0));
    let ending = loop {
        let rec = match dec.poll_ref() {
            Ok(Some(rec)) => rec,
            Ok(None) => match reader.next_chunk(dec.next_feed_lsn())? {
                Some(chunk) => {
                    dec.feed(chunk);
                    continue;
                }
                None => break Ending::End(None),
            },
            Err(e) => break Ending::End(Some(e)),
        };
        if first.is_none() {
            first = Some(rec.lsn);
            stats.start = rec.lsn;
        }
        match until {
            Some(f) if rec.lsn == f => break Ending::HandedOver,
            // Stepped over the next part's start: go on alone.
            Some(f) if rec.lsn > f => until = None,
            _ => {}
        }
        last_read = rec.lsn;
        if wanted(cfg, &rec) {
            stats.add(&rec, rec.next_lsn);
        }
    };
    Ok(Part { stats, first, last_read, ending })
}
