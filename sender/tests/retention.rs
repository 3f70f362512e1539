//! Removal of old segments from a served directory: what `max_wal_size` allows, and never
//! a segment a replication slot still needs (real PostgreSQL 15 WAL from testdata).

use std::fs;

use walstream_sender::protocol::lsn::parse_segment_file_name;
use walstream_sender::protocol::{Lsn, TimeLineId, WalSegSize};
use walstream_sender::retention::remove_once;
use walstream_sender::slots::SlotStore;
use walstream_sender::walsource::{DirWalSource, DirWalSourceOptions};

fn copy_shapes() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in walstream_testdata::wal_files(&walstream_testdata::shapes_dir()) {
        fs::write(dir.path().join(name), bytes).unwrap();
    }
    dir
}

fn segments(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.len() == 24)
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_slot_keeps_its_segments_and_the_rest_go() {
    let wal = copy_shapes();
    let before = segments(wal.path());
    assert!(before.len() >= 5, "{before:?}");
    let source = DirWalSource::open(wal.path(), DirWalSourceOptions::default()).unwrap();
    let slot_dir = tempfile::tempdir().unwrap();
    let slots = SlotStore::open(slot_dir.path(), 10).unwrap();
    // A slot that still needs the third segment.
    let (_, segno) =
        parse_segment_file_name(&before[2], WalSegSize::new(1 << 20).unwrap()).unwrap();
    let third = Lsn(segno.0 << 20);
    slots.create("keeper", false, 1, Some((third, TimeLineId(1)))).unwrap();
    let removed = remove_once(&source, &slots, 0);
    assert_eq!(removed, before[..2].to_vec());
    assert_eq!(segments(wal.path()), before[2..].to_vec());
    // Without the slot, everything but the segment holding the flushed end goes.
    slots.drop_slot("keeper", 1, false).await.unwrap();
    let removed = remove_once(&source, &slots, 0);
    assert_eq!(removed.len(), before.len() - 3, "{removed:?}");
    assert_eq!(segments(wal.path()), before[before.len() - 1..].to_vec());
}
