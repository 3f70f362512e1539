//! Unit tests of the apply pipeline's bookkeeping.

use super::*;

fn seg() -> WalSegSize {
    WalSegSize::new(1 << 20).unwrap()
}

#[test]
fn feeding_past_the_expected_position_is_refused() {
    let mut p = ApplyPipeline::find_next(Lsn(0x70_0000), seg(), TimeLineId(1));
    p.feed(Lsn(0x70_0000), &Bytes::from_static(b"abcd")).unwrap();
    let e = p.feed(Lsn(0x70_0005), &Bytes::from_static(b"x")).unwrap_err();
    assert_eq!(e.to_string(), "got WAL data at 0/700005, expected 0/700004");
    // Overlapping bytes are skipped.
    p.feed(Lsn(0x70_0000), &Bytes::from_static(b"abcdef")).unwrap();
    assert_eq!(p.next_feed_lsn(), Lsn(0x70_0006));
}

#[test]
fn garbage_is_corrupt_and_sticky() {
    let mut p = ApplyPipeline::find_next(Lsn(0x70_0000), seg(), TimeLineId(1));
    p.feed(Lsn(0x70_0000), &Bytes::from(vec![0xAB; 8192])).unwrap();
    let mut a = VerifyingApplier::new();
    let e = p.apply_available(&mut a).unwrap_err();
    assert!(matches!(e, ApplyError::Corrupt { lsn: Lsn(0x70_0000), .. }), "{e}");
    assert_eq!(p.apply_available(&mut a).unwrap_err(), e);
    assert_eq!(p.applied(), Lsn(0x70_0000));
}

#[test]
fn zeros_are_the_end_of_wal() {
    let mut p = ApplyPipeline::find_next(Lsn(0x70_0000), seg(), TimeLineId(1));
    p.feed(Lsn(0x70_0000), &Bytes::from(vec![0; 8192])).unwrap();
    assert_eq!(p.apply_available(&mut VerifyingApplier::new()).unwrap(), Lsn(0x70_0000));
    assert!(p.end_of_wal().is_some());
}

#[test]
fn switching_past_the_switch_point_is_refused() {
    let mut p = ApplyPipeline::find_next(Lsn(0x70_0000), seg(), TimeLineId(1));
    p.feed(Lsn(0x70_0000), &Bytes::from(vec![0; 100])).unwrap();
    assert!(p.switch_timeline(TimeLineId(2), Lsn(0x70_0010)).is_err());
    p.switch_timeline(TimeLineId(2), Lsn(0x70_0064)).unwrap();
    assert_eq!(p.timeline(), TimeLineId(2));
}
