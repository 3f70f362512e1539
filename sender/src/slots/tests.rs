//! Tests of the slot store.

use std::sync::Arc;
use std::time::Duration;

use super::*;

const T1: TimeLineId = TimeLineId(1);

#[test]
fn create_get_acquire_release_drop() {
    let s = SlotStore::in_memory(4);
    let info = s.create("a", false, 10, None).unwrap();
    assert_eq!(info.active_pid, None);
    assert_eq!(info.restart_lsn, None);
    let b = s.create("b", false, 10, Some((Lsn(0x100_0000), T1))).unwrap();
    assert_eq!((b.restart_lsn, b.restart_tli), (Some(Lsn(0x100_0000)), Some(T1)));
    assert_eq!(s.list().iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(s.acquire("a", 11).unwrap().active_pid, Some(11));
    let e = s.acquire("a", 12).unwrap_err();
    assert_eq!(e.to_string(), "replication slot \"a\" is active for PID 11");
    assert_eq!(e.sqlstate(), "55006");
    s.release("a", 12); // not the holder: nothing happens
    assert_eq!(s.get("a").unwrap().active_pid, Some(11));
    s.release("a", 11);
    assert_eq!(s.get("a").unwrap().active_pid, None);
    let e = s.acquire("nosuch", 1).unwrap_err();
    assert_eq!(e.to_string(), "replication slot \"nosuch\" does not exist");
    assert_eq!(e.sqlstate(), "42704");
    let e = s.create("a", true, 1, None).unwrap_err();
    assert_eq!(e.to_string(), "replication slot \"a\" already exists");
    assert_eq!(e.sqlstate(), "42710");
    assert_eq!(s.min_restart_lsn(), Some(Lsn(0x100_0000)));
}

#[tokio::test]
async fn drop_without_wait_fails_when_active() {
    let s = SlotStore::in_memory(2);
    s.create("a", false, 1, None).unwrap();
    s.acquire("a", 2).unwrap();
    let e = s.drop_slot("a", 3, false).await.unwrap_err();
    assert_eq!(e.sqlstate(), "55006");
    s.release("a", 2);
    s.drop_slot("a", 3, false).await.unwrap();
    assert!(s.get("a").is_none());
    let e = s.drop_slot("a", 3, false).await.unwrap_err();
    assert_eq!(e.to_string(), "replication slot \"a\" does not exist");
}

#[tokio::test]
async fn drop_wait_waits_for_release() {
    let s = Arc::new(SlotStore::in_memory(2));
    s.create("a", false, 1, None).unwrap();
    s.acquire("a", 2).unwrap();
    let s2 = Arc::clone(&s);
    let dropper = tokio::spawn(async move { s2.drop_slot("a", 3, true).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!dropper.is_finished());
    assert!(s.get("a").is_some());
    s.release("a", 2);
    tokio::time::timeout(Duration::from_secs(5), dropper).await.unwrap().unwrap().unwrap();
    assert!(s.get("a").is_none());
}

#[test]
fn advance_never_moves_backwards() {
    let s = SlotStore::in_memory(1);
    s.create("a", false, 1, None).unwrap();
    s.advance("a", Lsn(0x2000), T1).unwrap();
    s.advance("a", Lsn(0x1000), TimeLineId(2)).unwrap();
    let i = s.get("a").unwrap();
    assert_eq!((i.restart_lsn, i.restart_tli), (Some(Lsn(0x2000)), Some(T1)));
    s.advance("a", Lsn(0x3000), TimeLineId(2)).unwrap();
    let i = s.get("a").unwrap();
    assert_eq!((i.restart_lsn, i.restart_tli), (Some(Lsn(0x3000)), Some(TimeLineId(2))));
    assert!(s.advance("b", Lsn(1), T1).is_err());
}

#[test]
fn temporary_slots_belong_to_their_session() {
    let s = SlotStore::in_memory(4);
    let t = s.create("t", true, 7, Some((Lsn(0x500), T1))).unwrap();
    assert_eq!(t.active_pid, Some(7));
    assert_eq!(s.acquire("t", 8).unwrap_err().sqlstate(), "55006");
    s.acquire("t", 7).unwrap();
    s.release("t", 7);
    assert_eq!(s.get("t").unwrap().active_pid, Some(7));
    s.create("p", false, 7, None).unwrap();
    s.acquire("p", 7).unwrap();
    s.release_all_of(7);
    assert!(s.get("t").is_none());
    assert_eq!(s.get("p").unwrap().active_pid, None);
    s.create("u", true, 9, None).unwrap();
    s.drop_temporary_of(9);
    assert!(s.get("u").is_none());
    assert_eq!(s.min_restart_lsn(), None);
}

#[test]
fn persistent_slots_survive_reopen_temporary_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pg_replslot");
    {
        let s = SlotStore::open(&root, 4).unwrap();
        s.create("keep", false, 1, Some((Lsn(0x100_0000), T1))).unwrap();
        s.create("nolsn", false, 1, None).unwrap();
        s.create("temp", true, 1, Some((Lsn(0x10), T1))).unwrap();
        s.create("gone", false, 1, None).unwrap();
        futures_drop(&s, "gone");
        s.acquire("keep", 5).unwrap();
        // Within the persist interval: only dirty in memory...
        s.advance("keep", Lsn(0x200_0000), TimeLineId(2)).unwrap();
        // ...and written on release.
        s.release("keep", 5);
        assert!(!root.join("temp").exists());
    }
    let s = SlotStore::open(&root, 4).unwrap();
    let names: Vec<_> = s.list().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["keep", "nolsn"]);
    let k = s.get("keep").unwrap();
    assert_eq!((k.restart_lsn, k.restart_tli), (Some(Lsn(0x200_0000)), Some(TimeLineId(2))));
    assert!(!k.temporary && k.active_pid.is_none());
    assert_eq!(s.get("nolsn").unwrap().restart_lsn, None);
}

fn futures_drop(s: &SlotStore, name: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(s.drop_slot(name, 1, false)).unwrap();
}

#[test]
fn flush_dirty_writes_advanced_slots() {
    let dir = tempfile::tempdir().unwrap();
    let s = SlotStore::open(dir.path(), 2).unwrap();
    s.create("a", false, 1, None).unwrap();
    s.acquire("a", 3).unwrap();
    s.advance("a", Lsn(0x700), T1).unwrap();
    s.flush_dirty().unwrap();
    let again = SlotStore::open(dir.path(), 2).unwrap();
    assert_eq!(again.get("a").unwrap().restart_lsn, Some(Lsn(0x700)));
}

#[test]
fn leftovers_of_interrupted_operations_are_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let s = SlotStore::open(dir.path(), 2).unwrap();
    s.create("a", false, 1, None).unwrap();
    std::fs::create_dir(dir.path().join("half.tmp")).unwrap();
    std::fs::write(dir.path().join("a/state.tmp"), b"torn").unwrap();
    let s = SlotStore::open(dir.path(), 2).unwrap();
    assert_eq!(s.list().len(), 1);
    assert!(!dir.path().join("half.tmp").exists());
    assert!(!dir.path().join("a/state.tmp").exists());
}

#[test]
fn corrupt_state_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = SlotStore::open(dir.path(), 2).unwrap();
    s.create("a", false, 1, Some((Lsn(0x1234), T1))).unwrap();
    let file = dir.path().join("a/state");
    let mut data = std::fs::read(&file).unwrap();
    let n = data.len();
    data[n / 2] ^= 0x20;
    std::fs::write(&file, &data).unwrap();
    let e = SlotStore::open(dir.path(), 2).unwrap_err();
    assert!(e.to_string().contains(&file.display().to_string()), "{e}");
    assert!(e.to_string().contains("checksum mismatch"), "{e}");
    std::fs::write(&file, &data[..n / 2]).unwrap();
    let e = SlotStore::open(dir.path(), 2).unwrap_err();
    assert!(matches!(e, SlotError::Corrupt { .. }), "{e}");
    std::fs::remove_file(&file).unwrap();
    assert!(matches!(SlotStore::open(dir.path(), 2), Err(SlotError::Io { .. })));
}

#[test]
fn name_validation_matches_postgres() {
    let s = SlotStore::in_memory(2);
    let e = s.create("", false, 1, None).unwrap_err();
    assert_eq!(
        (e.to_string().as_str(), e.sqlstate()),
        ("replication slot name \"\" is too short", "42602")
    );
    let long = "a".repeat(64);
    let e = s.create(&long, false, 1, None).unwrap_err();
    assert_eq!(e.to_string(), format!("replication slot name \"{long}\" is too long"));
    assert_eq!(e.sqlstate(), "42622");
    s.create(&"a".repeat(63), false, 1, None).unwrap();
    for bad in ["A", "a-b", "a b", "é", "a.b"] {
        let e = s.create(bad, false, 1, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("replication slot name \"{bad}\" contains invalid character")
        );
        assert_eq!(e.sqlstate(), "42602");
        assert_eq!(
            e.hint(),
            Some("Replication slot names may only contain lower case letters, numbers, and the underscore character.")
        );
    }
}

#[test]
fn slot_limits() {
    let s = SlotStore::in_memory(0);
    let e = s.create("a", false, 1, None).unwrap_err();
    assert_eq!(e.to_string(), "replication slots can only be used if max_replication_slots > 0");
    assert_eq!(e.sqlstate(), "55000");
    let s = SlotStore::in_memory(1);
    s.create("a", true, 1, None).unwrap();
    let e = s.create("b", false, 1, None).unwrap_err();
    assert_eq!(
        (e.to_string().as_str(), e.sqlstate()),
        ("all replication slots are in use", "53400")
    );
    assert_eq!(e.hint(), Some("Free one or increase max_replication_slots."));
    let dir = tempfile::tempdir().unwrap();
    let s = SlotStore::open(dir.path(), 2).unwrap();
    s.create("a", false, 1, None).unwrap();
    s.create("b", false, 1, None).unwrap();
    assert!(matches!(SlotStore::open(dir.path(), 1), Err(SlotError::TooManyOnDisk)));
}
