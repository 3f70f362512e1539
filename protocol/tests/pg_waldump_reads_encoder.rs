//! pg_waldump 15 reads the encoder's WAL: every record listed, no error but end of WAL.

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use walstream_protocol::wal::{segment_files, EncoderConfig, RecordSpec, WalEncoder};
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};

const PG_WALDUMP: &str = "/usr/lib/postgresql/15/bin/pg_waldump";

fn custom(len: usize, info: u8) -> RecordSpec {
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    RecordSpec { rmid: 128, info, main_data: Bytes::from(data), ..Default::default() }
}

#[test]
fn pg_waldump_reads_encoder_output() {
    if !Path::new(PG_WALDUMP).exists() {
        println!("skipped: {PG_WALDUMP} is not installed");
        return;
    }
    let seg_size = WalSegSize::new(1 << 20).unwrap();
    let cfg =
        EncoderConfig { system_id: 7_300_000_000_000_000_001, timeline: TimeLineId(1), seg_size };
    let start = Lsn(0x0100_0000);
    let mut enc = WalEncoder::new(cfg, start, Lsn(0x00FF_FF00)).unwrap();
    let mut lsns = Vec::new();
    let sizes = [0, 1, 7, 8, 100, 255, 256, 1000, 8100, 8150, 8170, 8192, 8200, 20_000, 70_000];
    for (i, &n) in sizes.iter().chain(sizes.iter()).enumerate() {
        lsns.push(enc.append(&custom(n, (i as u8 % 16) << 4)).unwrap().lsn);
    }
    // Across a segment boundary, then a switch, then more.
    lsns.push(enc.append(&custom(1_500_000, 0)).unwrap().lsn);
    for n in [50, 300, 8000] {
        lsns.push(enc.append(&custom(n, 0)).unwrap().lsn);
    }
    lsns.push(enc.switch(walstream_protocol::lsn::Xid(0)).unwrap().unwrap().lsn);
    for n in [0, 9000, 123] {
        lsns.push(enc.append(&custom(n, 0)).unwrap().lsn);
    }
    let end = enc.position();
    let (from, bytes) = enc.take();
    let dir = tempfile::tempdir().unwrap();
    for (name, contents) in segment_files(from, &bytes, TimeLineId(1), seg_size) {
        std::fs::write(dir.path().join(name), contents).unwrap();
    }
    let out = Command::new(PG_WALDUMP)
        .arg("-p")
        .arg(dir.path())
        .arg("-s")
        .arg(lsns[0].to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let listed: Vec<&str> = stdout.lines().collect();
    assert_eq!(listed.len(), lsns.len(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for (line, lsn) in listed.iter().zip(&lsns) {
        let (hi, lo) = lsn.halves();
        assert!(line.contains(&format!("lsn: {hi:X}/{lo:08X},")), "{line} should be at {lsn}");
    }
    let switch = &listed[listed.len() - 4];
    assert!(switch.starts_with("rmgr: XLOG") && switch.contains("desc: SWITCH"), "{switch}");
    // pg_waldump stops at the zeros after the last record: that is its only complaint.
    let last_rec = lsns.last().unwrap();
    let expected = format!(
        "pg_waldump: error: error in WAL record at {last_rec}: invalid record length at {end}: \
         wanted 24, got 0\n"
    );
    assert_eq!(stderr, expected);
    assert_eq!(out.status.code(), Some(1));
}

mod faults {
    //! Crafted faults: our error text equals pg_waldump's for the same bytes.

    use super::*;
    use walstream_protocol::wal::crc::whole_record_crc;
    use walstream_protocol::wal::{BlockImage, BlockRef, RelFileNode, WalDecoder};

    struct Wal {
        from: Lsn,
        bytes: Vec<u8>,
        lsns: Vec<Lsn>,
        tot: Vec<u32>,
    }

    fn seg() -> WalSegSize {
        WalSegSize::new(1 << 20).unwrap()
    }

    fn block(id: u8, data: &'static [u8], image: Option<BlockImage>) -> BlockRef {
        BlockRef {
            id,
            fork_flags: 0,
            rnode: RelFileNode { spc_node: 1663, db_node: 5, rel_node: 16384 },
            blkno: 7,
            image,
            data: Bytes::from_static(data),
        }
    }

    fn build() -> Wal {
        let cfg = EncoderConfig { system_id: 42, timeline: TimeLineId(1), seg_size: seg() };
        let start = Lsn(0x0100_0000);
        let mut enc = WalEncoder::new(cfg, start, Lsn(0x00FF_FF00)).unwrap();
        let holed = BlockImage {
            bimg_info: 0x01,
            hole_offset: 100,
            hole_length: 1000,
            data: Bytes::from(vec![1u8; 7192]),
        };
        let full = BlockImage {
            bimg_info: 0,
            hole_offset: 0,
            hole_length: 0,
            data: Bytes::from(vec![2u8; 8192]),
        };
        let main = Bytes::from_static(b"0123456789");
        let specs = [
            RecordSpec { rmid: 128, main_data: main.clone(), ..Default::default() },
            RecordSpec {
                rmid: 128,
                blocks: vec![block(0, b"abcde", None), block(1, b"", None)],
                main_data: Bytes::from_static(b"01234567890123456789"),
                ..Default::default()
            },
            RecordSpec {
                rmid: 128,
                blocks: vec![block(0, b"", Some(holed))],
                main_data: main.clone(),
                ..Default::default()
            },
            RecordSpec {
                rmid: 128,
                blocks: vec![block(0, b"", Some(full))],
                main_data: main.clone(),
                ..Default::default()
            },
            custom(20_000, 0),
            custom(10, 0),
        ];
        let mut lsns = Vec::new();
        let mut tot = Vec::new();
        for s in &specs {
            let a = enc.append(s).unwrap();
            lsns.push(a.lsn);
            tot.push(a.header.tot_len);
        }
        let (from, bytes) = enc.take();
        Wal { from, bytes: bytes.to_vec(), lsns, tot }
    }

    impl Wal {
        fn at(&mut self, lsn: Lsn) -> &mut u8 {
            &mut self.bytes[(lsn - self.from) as usize]
        }
        /// Sets byte `k` of record `i`.
        fn set(&mut self, i: usize, k: u64, v: u8) {
            *self.at(self.lsns[i].add_record_bytes(k, seg())) = v;
        }
        /// Recomputes record `i`'s CRC (its tot_len as written originally).
        fn fix_crc(&mut self, i: usize) {
            let rec: Vec<u8> = (0..u64::from(self.tot[i]))
                .map(|k| *self.at(self.lsns[i].add_record_bytes(k, seg())))
                .collect();
            for (k, b) in whole_record_crc(&rec).to_le_bytes().into_iter().enumerate() {
                self.set(i, 20 + k as u64, b);
            }
        }
        /// Sets byte `k` of the page header of the page after record `i`'s first page.
        fn set_next_page(&mut self, i: usize, k: u64, v: u8) {
            let page = self.lsns[i].page_start() + 8192;
            *self.at(page + k) = v;
        }
    }

    /// Runs pg_waldump and our decoder over the same bytes; both must say the same.
    fn compare(name: &str, w: &Wal) {
        let dir = tempfile::tempdir().unwrap();
        for (file, contents) in segment_files(w.from, &w.bytes, TimeLineId(1), seg()) {
            std::fs::write(dir.path().join(file), contents).unwrap();
        }
        let out = Command::new(PG_WALDUMP)
            .arg("-p")
            .arg(dir.path())
            .arg("-s")
            .arg(w.lsns[0].to_string())
            .output()
            .unwrap();
        let mut d = WalDecoder::find_next(w.lsns[0], seg());
        let mut padded = w.bytes.clone();
        padded.resize(seg().bytes() as usize, 0);
        d.feed(Bytes::from(padded));
        let mut listed = 0;
        let mut last = Lsn::INVALID;
        let err = loop {
            match d.poll() {
                Ok(Some(r)) => {
                    listed += 1;
                    last = r.lsn;
                }
                Ok(None) => panic!("{name}: decoder wants more"),
                Err(e) => break e,
            }
        };
        let ours = format!("pg_waldump: error: error in WAL record at {last}: {err}\n");
        assert_eq!(ours, String::from_utf8_lossy(&out.stderr), "{name}");
        assert_eq!(listed, String::from_utf8_lossy(&out.stdout).lines().count(), "{name}");
        assert_eq!(err.is_end_of_wal(), matches!(name, "zero page" | "pageaddr"), "{name}: {err}");
    }

    #[test]
    fn fault_texts_match_pg_waldump() {
        if !Path::new(PG_WALDUMP).exists() {
            println!("skipped: {PG_WALDUMP} is not installed");
            return;
        }
        type Patch = fn(&mut Wal);
        let cases: [(&str, Patch); 17] = [
            ("crc", |w| w.set(5, 30, 0xEE)),
            ("prev-link", |w| {
                w.set(1, 8, 0x08);
                w.fix_crc(1)
            }),
            ("rmid", |w| {
                w.set(1, 17, 50);
                w.fix_crc(1)
            }),
            ("out-of-order", |w| {
                w.set(1, 44, 0);
                w.fix_crc(1)
            }),
            ("invalid block id", |w| {
                w.set(1, 44, 40);
                w.fix_crc(1)
            }),
            ("has data, no data", |w| {
                w.set(1, 26, 0);
                w.fix_crc(1)
            }),
            ("data without flag", |w| {
                w.set(1, 25, 0);
                w.fix_crc(1)
            }),
            ("same rel first", |w| {
                w.set(1, 25, 0xA0);
                w.fix_crc(1)
            }),
            ("invalid length", |w| {
                let k = 24 + 20 + 8 + 1;
                w.set(1, k, 19);
                w.fix_crc(1)
            }),
            ("hole offset 0", |w| {
                w.set(2, 30, 0);
                w.set(2, 31, 0);
                w.fix_crc(2)
            }),
            ("hole without flag", |w| {
                w.set(2, 32, 0);
                w.fix_crc(2)
            }),
            ("compressed full", |w| {
                w.set(3, 32, 0x04);
                w.fix_crc(3)
            }),
            ("no contrecord", |w| w.set_next_page(4, 2, 0x04)),
            ("contrecord length", |w| w.set_next_page(4, 16, 0x01)),
            ("pageaddr", |w| w.set_next_page(4, 9, 0x00)),
            ("magic", |w| w.set_next_page(4, 0, 0x34)),
            ("info bits", |w| w.set_next_page(4, 2, 0x15)),
        ];
        for (name, patch) in cases {
            let mut w = build();
            patch(&mut w);
            compare(name, &w);
        }
        let mut w = build();
        let page = w.lsns[4].page_start() + 8192;
        for k in 0..24 {
            *w.at(page + k) = 0;
        }
        compare("zero page", &w);
    }
}

#[test]
fn pg_waldump_skips_an_overwritten_contrecord_like_us() {
    if !Path::new(PG_WALDUMP).exists() {
        println!("skipped: {PG_WALDUMP} is not installed");
        return;
    }
    let seg_size = WalSegSize::new(1 << 20).unwrap();
    let cfg = EncoderConfig { system_id: 9, timeline: TimeLineId(1), seg_size };
    let mut enc = WalEncoder::new(cfg, Lsn(0x0100_0000), Lsn(0x00FF_FF00)).unwrap();
    let a = enc.append(&custom(8000, 0)).unwrap().lsn;
    enc.append_overwritten(&custom(30_000, 0)).unwrap();
    let b = enc.append(&custom(100, 0)).unwrap().lsn;
    let c = enc.append(&custom(10, 0)).unwrap().lsn;
    let (from, bytes) = enc.take();
    let dir = tempfile::tempdir().unwrap();
    for (name, contents) in segment_files(from, &bytes, TimeLineId(1), seg_size) {
        std::fs::write(dir.path().join(name), contents).unwrap();
    }
    let out = Command::new(PG_WALDUMP)
        .arg("-p")
        .arg(dir.path())
        .arg("-s")
        .arg(a.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lsns: Vec<String> = [a, b, c]
        .iter()
        .map(|l| {
            let (hi, lo) = l.halves();
            format!("lsn: {hi:X}/{lo:08X},")
        })
        .collect();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for (line, lsn) in lines.iter().zip(&lsns) {
        assert!(line.contains(lsn.as_str()), "{line}");
    }
}
