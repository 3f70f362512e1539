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
    let cfg = EncoderConfig { system_id: 7_300_000_000_000_000_001, timeline: TimeLineId(1), seg_size };
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
