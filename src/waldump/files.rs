//! Arguments to a read plan as pg_waldump makes it: the WAL directory
//! (`identify_target_directory`), the segment size from the first file's long page
//! header, start and end from segment names; and the reads, in chunks of at most 256 kB.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use walstream_protocol::lsn::{
    is_segment_file_name, parse_segment_file_name, segment_file_name, XLOG_BLCKSZ,
};
use walstream_protocol::wal::rmgr;
use walstream_protocol::{Lsn, TimeLineId, WalSegSize, XLogSegNo};

use super::{Config, Fatal, WaldumpArgs};

/// `XLOGDIR`.
const XLOGDIR: &str = "pg_wal";

/// Checks the arguments as pg_waldump's `main` does and finds the files.
///
/// # Errors
/// pg_waldump's messages for bad options, missing directories and files.
pub fn configure(args: &WaldumpArgs) -> Result<Config, Fatal> {
    let mut cfg = options(args)?;
    if args.segments.len() > 2 {
        return Err(Fatal::bad_argument(format!(
            "too many command-line arguments (first is \"{}\")",
            args.segments[2]
        )));
    }
    let mut waldir = args.path.clone();
    if let Some(d) = &waldir {
        if let Err(e) = std::fs::read_dir(d) {
            return Err(Fatal::bad_argument(format!(
                "could not open directory \"{d}\": {}",
                os_msg(&e)
            )));
        }
    }
    if let Some(startseg) = args.segments.first() {
        let (dir, fname) = split_path(startseg);
        if waldir.is_none() {
            if let Some(dir) = dir {
                if let Err(e) = std::fs::read_dir(&dir) {
                    return Err(Fatal::new(format!(
                        "could not open directory \"{dir}\": {}",
                        os_msg(&e)
                    )));
                }
                waldir = Some(dir);
            }
        }
        let (dir, seg_size) = identify_target_directory(waldir.as_deref(), Some(&fname))?;
        cfg.dir = dir;
        cfg.seg_size = seg_size;
        segment_bounds(&mut cfg, args, &fname)?;
    } else {
        let (dir, seg_size) = identify_target_directory(waldir.as_deref(), None)?;
        cfg.dir = dir;
        cfg.seg_size = seg_size;
    }
    if !cfg.start.is_valid() {
        return Err(Fatal::bad_argument("no start WAL location given"));
    }
    Ok(cfg)
}

/// The option values, parsed as pg_waldump's `getopt_long` loop does.
fn options(args: &WaldumpArgs) -> Result<Config, Fatal> {
    let lsn = |s: &Option<String>| -> Result<Lsn, Fatal> {
        match s {
            None => Ok(Lsn::INVALID),
            Some(s) => s
                .parse::<Lsn>()
                .map_err(|_| Fatal::bad_argument(format!("invalid WAL location: \"{s}\""))),
        }
    };
    let (start, end) = (lsn(&args.start)?, lsn(&args.end)?);
    let limit = match &args.limit {
        None => -1,
        Some(n) => n.trim().parse::<i32>().map_err(|_| {
            Fatal::bad_argument(format!("invalid value \"{n}\" for option -n/--limit"))
        })?,
    };
    let timeline = match &args.timeline {
        None => 1,
        Some(t) => t
            .trim()
            .parse::<u32>()
            .map_err(|_| Fatal::bad_argument(format!("invalid timeline specification: \"{t}\"")))?,
    };
    let xid = match &args.xid {
        None => None,
        Some(x) => Some(x.trim().parse::<u32>().map_err(|_| {
            Fatal::bad_argument(format!("invalid transaction ID specification: \"{x}\""))
        })?),
    };
    let stats = match args.stats.as_deref() {
        None => None,
        Some("rmgr") => Some(false),
        Some("record") => Some(true),
        Some(other) => {
            return Err(Fatal::bad_argument(format!(
                "unrecognized value for option --stats: {other}"
            )))
        }
    };
    Ok(Config {
        dir: PathBuf::new(),
        seg_size: WalSegSize::DEFAULT,
        timeline,
        start,
        end: end.is_valid().then_some(end),
        limit: i64::from(limit),
        quiet: args.quiet,
        bkp_details: args.bkp_details,
        stats,
        rmgrs: rmgr_filter(&args.rmgr)?,
        xid,
        fullpage: args.fullpage,
    })
}

// pg_waldump.c: case 'r' (custom### or a built-in name, case-insensitive)
fn rmgr_filter(names: &[String]) -> Result<Option<[bool; 256]>, Fatal> {
    if names.is_empty() {
        return Ok(None);
    }
    let mut filter = [false; 256];
    for name in names {
        if let Some(num) = name.strip_prefix("custom") {
            let id = num.parse::<u32>().ok().filter(|&id| (128..=255).contains(&id));
            let Some(id) = id else {
                return Err(Fatal::bad_argument(format!(
                    "custom resource manager \"{name}\" does not exist"
                )));
            };
            filter[id as usize] = true;
        } else {
            let found = rmgr::BUILTIN_NAMES.iter().position(|n| n.eq_ignore_ascii_case(name));
            let Some(id) = found else {
                return Err(Fatal::bad_argument(format!(
                    "resource manager \"{name}\" does not exist"
                )));
            };
            filter[id] = true;
        }
    }
    Ok(Some(filter))
}

/// Start and end from STARTSEG and ENDSEG (pg_waldump.c: main).
fn segment_bounds(cfg: &mut Config, args: &WaldumpArgs, fname: &str) -> Result<(), Fatal> {
    let seg_size = cfg.seg_size;
    let parse = |name: &str| {
        parse_segment_file_name(name, seg_size)
            .ok_or_else(|| Fatal::new(format!("could not parse WAL file name \"{name}\"")))
    };
    open_in(&cfg.dir, fname)?;
    let (tli, mut segno) = parse(fname)?;
    cfg.timeline = tli.0;
    if !cfg.start.is_valid() {
        cfg.start = segno.start_lsn(seg_size);
    } else if cfg.start.segno(seg_size) != segno {
        return Err(Fatal::bad_argument(format!(
            "start WAL location {} is not inside file \"{fname}\"",
            cfg.start
        )));
    }
    if let Some(endseg) = args.segments.get(1) {
        let (_, end_fname) = split_path(endseg);
        open_in(&cfg.dir, &end_fname)?;
        let (tli, endsegno) = parse(&end_fname)?;
        cfg.timeline = tli.0;
        if endsegno < segno {
            return Err(Fatal::new(format!(
                "ENDSEG {endseg} is before STARTSEG {}",
                args.segments[0]
            )));
        }
        cfg.end.get_or_insert(endsegno.next().start_lsn(seg_size));
        segno = endsegno;
    } else {
        cfg.end.get_or_insert(segno.next().start_lsn(seg_size));
    }
    let end = cfg.end.unwrap_or(Lsn::INVALID);
    if end.segno(seg_size) != segno && end != segno.next().start_lsn(seg_size) {
        let last = args.segments.last().map_or("", String::as_str);
        return Err(Fatal::bad_argument(format!(
            "end WAL location {end} is not inside file \"{last}\""
        )));
    }
    Ok(())
}

fn open_in(dir: &Path, fname: &str) -> Result<(), Fatal> {
    std::fs::File::open(dir.join(fname))
        .map(drop)
        .map_err(|_| Fatal::new(format!("could not open file \"{fname}\"")))
}

/// `split_path`: directory and file name at the last `/`.
fn split_path(path: &str) -> (Option<String>, String) {
    match path.rfind('/') {
        Some(i) => (Some(path[..i].to_string()), path[i + 1..].to_string()),
        None => (None, path.to_string()),
    }
}

/// The OS error text without Rust's " (os error N)" suffix, as `%m` prints it.
fn os_msg(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

// pg_waldump.c: search_directory
fn search_directory(dir: &Path, fname: Option<&str>) -> Result<Option<WalSegSize>, Fatal> {
    let (file, name) = match fname {
        Some(f) => match std::fs::File::open(dir.join(f)) {
            Ok(file) => (file, f.to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Fatal::new(format!("could not open file \"{f}\": {}", os_msg(&e))))
            }
        },
        None => {
            let Ok(entries) = std::fs::read_dir(dir) else { return Ok(None) };
            let found = entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| is_segment_file_name(n));
            let Some(n) = found else { return Ok(None) };
            let file = std::fs::File::open(dir.join(&n))
                .map_err(|e| Fatal::new(format!("could not open file \"{n}\": {}", os_msg(&e))))?;
            (file, n)
        }
    };
    read_seg_size(file, &name).map(Some)
}

/// The segment size in a segment's long page header (`xlp_seg_size`, offset 32).
fn read_seg_size(mut file: std::fs::File, name: &str) -> Result<WalSegSize, Fatal> {
    let mut page = vec![0u8; XLOG_BLCKSZ as usize];
    let mut got = 0;
    while got < page.len() {
        match file.read(&mut page[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => {
                return Err(Fatal::new(format!("could not read file \"{name}\": {}", os_msg(&e))))
            }
        }
    }
    if got < page.len() {
        return Err(Fatal::new(format!(
            "could not read file \"{name}\": read {got} of {XLOG_BLCKSZ}"
        )));
    }
    let size = u32::from_le_bytes([page[32], page[33], page[34], page[35]]);
    WalSegSize::new(u64::from(size)).map_err(|_| {
        let unit = if size == 1 { "byte" } else { "bytes" };
        Fatal::new(format!(
            "WAL segment size must be a power of two between 1 MB and 1 GB, but the WAL file \"{name}\" header specifies {} {unit}",
            size as i32
        ))
    })
}

// pg_waldump.c: identify_target_directory
fn identify_target_directory(
    dir: Option<&str>,
    fname: Option<&str>,
) -> Result<(PathBuf, WalSegSize), Fatal> {
    let candidates: Vec<PathBuf> = match dir {
        Some(d) => vec![PathBuf::from(d), Path::new(d).join(XLOGDIR)],
        None => {
            let mut c = vec![PathBuf::from("."), PathBuf::from(XLOGDIR)];
            if let Some(pgdata) = std::env::var_os("PGDATA") {
                c.push(Path::new(&pgdata).join(XLOGDIR));
            }
            c
        }
    };
    for c in candidates {
        if let Some(size) = search_directory(&c, fname)? {
            return Ok((c, size));
        }
    }
    Err(Fatal::new(match fname {
        Some(f) => format!("could not locate WAL file \"{f}\""),
        None => "could not find any WAL file".to_string(),
    }))
}

/// Reads the WAL of the segments a [`Config`] names, in chunks.
pub struct SegmentReader<'a> {
    cfg: &'a Config,
    open: Option<OpenSegment>,
}

/// The segment file being read.
struct OpenSegment {
    segno: XLogSegNo,
    name: String,
    file: File,
    len: u64,
}

/// How much one read takes: big enough to amortize the system call, small enough to stay
/// in cache while it is decoded.
const CHUNK: usize = 256 * 1024;

impl<'a> SegmentReader<'a> {
    /// A reader of the segments `cfg` names.
    pub fn new(cfg: &'a Config) -> Self {
        SegmentReader { cfg, open: None }
    }

    /// The next WAL bytes from `at`: at most [`CHUNK`], never past the end of its
    /// segment or the end LSN; `None` when `at` has reached the end LSN (pg_waldump's
    /// `endptr_reached`).
    ///
    /// # Errors
    /// pg_waldump's messages for a missing or short segment file.
    pub fn next_chunk(&mut self, at: Lsn) -> Result<Option<Bytes>, Fatal> {
        let seg_size = self.cfg.seg_size;
        if self.cfg.end.is_some_and(|end| at >= end) {
            return Ok(None);
        }
        let segno = at.segno(seg_size);
        let from = at.segment_offset(seg_size) as usize;
        let mut to = seg_size.bytes() as usize;
        if let Some(end) = self.cfg.end {
            if end.segno(seg_size) == segno {
                to = end.segment_offset(seg_size) as usize;
            }
        }
        let to = to.min(from + CHUNK);
        let OpenSegment { name, file, len, .. } = open_segment(&mut self.open, self.cfg, segno)?;
        if (*len as usize) < to {
            let page = from - from % XLOG_BLCKSZ as usize;
            return Err(Fatal::new(format!(
                "could not read from file {name}, offset {page}: read {} of {}",
                (*len as usize).saturating_sub(page).min(XLOG_BLCKSZ as usize),
                XLOG_BLCKSZ
            )));
        }
        let err = |e: std::io::Error| {
            Fatal::new(format!("could not read from file {name}, offset {from}: {}", os_msg(&e)))
        };
        // Read into uninitialized capacity (no memset): `read_to_end` on a `File` does.
        let want = to - from;
        let mut buf = Vec::with_capacity(want);
        let mut f: &File = file;
        f.seek(SeekFrom::Start(from as u64)).map_err(err)?;
        f.take(want as u64).read_to_end(&mut buf).map_err(err)?;
        if buf.len() < want {
            let e = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
            return Err(err(e));
        }
        Ok(Some(Bytes::from(buf)))
    }
}

/// The segment `segno` of `cfg`, opened into `slot` unless it already is.
fn open_segment<'s>(
    slot: &'s mut Option<OpenSegment>,
    cfg: &Config,
    segno: XLogSegNo,
) -> Result<&'s OpenSegment, Fatal> {
    if let Some(open) = slot.take().filter(|o| o.segno == segno) {
        return Ok(slot.insert(open));
    }
    let name = segment_file_name(TimeLineId(cfg.timeline), segno, cfg.seg_size);
    let not_found =
        |e: std::io::Error| Fatal::new(format!("could not find file \"{name}\": {}", os_msg(&e)));
    let file = File::open(cfg.dir.join(&name)).map_err(not_found)?;
    let len = file.metadata().map_err(not_found)?.len();
    Ok(slot.insert(OpenSegment { segno, name, file, len }))
}
