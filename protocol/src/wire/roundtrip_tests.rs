//! Property tests: encode → parse is the identity for every message in both directions,
//! also when bytes arrive one at a time or back to back; arbitrary bytes never panic.

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;

use super::strategies::{backend_message, frontend_message, startup_packet};
use super::{parse_backend, parse_frontend, parse_startup, MessageLimits, WireError};

/// Feeds `bytes` one at a time to `parse`: `None` until the last byte, then exactly one
/// message and an empty buffer.
fn parse_byte_by_byte<T>(
    bytes: &[u8],
    mut parse: impl FnMut(&mut BytesMut) -> Result<Option<T>, WireError>,
) -> T {
    let mut buf = BytesMut::new();
    let (last, init) = bytes.split_last().expect("a message has bytes");
    for &b in init {
        buf.extend_from_slice(&[b]);
        assert!(parse(&mut buf).expect("valid prefix").is_none(), "complete too early");
    }
    buf.extend_from_slice(&[*last]);
    let message = parse(&mut buf).expect("valid message").expect("complete");
    assert!(buf.is_empty());
    message
}

/// Parses until the buffer is exhausted, needs more bytes, or fails.
fn drain<T>(
    buf: &mut BytesMut,
    mut parse: impl FnMut(&mut BytesMut) -> Result<Option<T>, WireError>,
) {
    while let Ok(Some(_)) = parse(buf) {}
}

fn frontend(buf: &mut BytesMut) -> Result<Option<super::FrontendMessage>, WireError> {
    parse_frontend(buf, &MessageLimits::default())
}

proptest! {
    #[test]
    fn frontend_round_trip(a in frontend_message(), b in frontend_message()) {
        let mut buf = BytesMut::new();
        a.encode(&mut buf);
        prop_assert_eq!(parse_byte_by_byte(&buf, frontend), a.clone());
        b.encode(&mut buf);
        prop_assert_eq!(frontend(&mut buf).unwrap(), Some(a));
        prop_assert_eq!(frontend(&mut buf).unwrap(), Some(b));
        prop_assert_eq!(frontend(&mut buf).unwrap(), None);
    }

    #[test]
    fn backend_round_trip(a in backend_message(), b in backend_message()) {
        let mut buf = BytesMut::new();
        a.encode(&mut buf);
        prop_assert_eq!(parse_byte_by_byte(&buf, parse_backend), a.clone());
        b.encode(&mut buf);
        prop_assert_eq!(parse_backend(&mut buf).unwrap(), Some(a));
        prop_assert_eq!(parse_backend(&mut buf).unwrap(), Some(b));
        prop_assert_eq!(parse_backend(&mut buf).unwrap(), None);
    }

    #[test]
    fn startup_round_trip(a in startup_packet(), b in startup_packet()) {
        let mut buf = BytesMut::new();
        a.encode(&mut buf);
        prop_assert_eq!(parse_byte_by_byte(&buf, parse_startup), a.clone());
        b.encode(&mut buf);
        prop_assert_eq!(parse_startup(&mut buf).unwrap(), Some(a));
        prop_assert_eq!(parse_startup(&mut buf).unwrap(), Some(b));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..200)) {
        drain(&mut BytesMut::from(&bytes[..]), parse_startup);
        drain(&mut BytesMut::from(&bytes[..]), frontend);
        drain(&mut BytesMut::from(&bytes[..]), parse_backend);
    }

    /// Arbitrary bodies behind a valid header, so the body parsers are reached.
    #[test]
    fn arbitrary_bodies_never_panic(
        tag in prop::sample::select(&b"QPBEDCHSXdcfFpRKSZTDCIEN123nstGHWdcvAV"[..]),
        body in vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = vec![tag];
        bytes.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        bytes.extend_from_slice(&body);
        let _ = frontend(&mut BytesMut::from(&bytes[..]));
        let _ = parse_backend(&mut BytesMut::from(&bytes[..]));
        let mut startup = (body.len() as u32 + 8).to_be_bytes().to_vec();
        startup.extend_from_slice(&[0, 3, 0, 0]);
        startup.extend_from_slice(&body);
        let _ = parse_startup(&mut BytesMut::from(&startup[..]));
    }

    /// A truncated message is never an error while bytes may still come, and a message
    /// whose length word cuts its body short is an error, not a panic.
    #[test]
    fn truncated_and_cut_short(m in backend_message(), cut in any::<prop::sample::Index>()) {
        let mut full = BytesMut::new();
        m.encode(&mut full);
        let n = cut.index(full.len());
        prop_assert_eq!(parse_backend(&mut BytesMut::from(&full[..n])), Ok(None));
        if n >= 5 {
            let mut short = BytesMut::from(&full[..n]);
            short[1..5].copy_from_slice(&(n as u32 - 1).to_be_bytes());
            // Either it parses as a shorter message of the same type or it is refused.
            let _ = parse_backend(&mut short);
        }
    }
}

#[test]
fn trailing_garbage_is_refused_in_every_fixed_body() {
    for msg in [&b"H\0\0\0\x05x"[..], b"c\0\0\0\x05x", b"X\0\0\0\x05x", b"E\0\0\0\x0a\0\0\0\0\0x"] {
        assert!(matches!(
            frontend(&mut BytesMut::from(msg)),
            Err(WireError::InvalidMessageFormat { .. })
        ));
    }
    for msg in [&b"1\0\0\0\x05x"[..], b"K\0\0\0\x0d\0\0\0\x01\0\0\0\x02x", b"C\0\0\0\x07a\0b"] {
        assert!(matches!(
            parse_backend(&mut BytesMut::from(msg)),
            Err(WireError::InvalidMessageFormat { .. })
        ));
    }
}

#[test]
fn lowered_limits_apply_per_class() {
    let limits = MessageLimits { small: 8, large: 16, auth: 12 };
    let mut q = BytesMut::from(&b"Q\0\0\0\x11"[..]);
    assert_eq!(
        parse_frontend(&mut q, &limits),
        Err(WireError::InvalidMessageLength { tag: b'Q', len: 17 })
    );
    let mut s = BytesMut::from(&b"C\0\0\0\x09"[..]);
    assert_eq!(
        parse_frontend(&mut s, &limits),
        Err(WireError::InvalidMessageLength { tag: b'C', len: 9 })
    );
    let mut p = BytesMut::from(&b"p\0\0\0\x0c"[..]);
    assert_eq!(parse_frontend(&mut p, &limits), Ok(None));
}
