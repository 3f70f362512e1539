//! Entry points for cargo-fuzz targets: each takes arbitrary bytes, parses every message
//! it can, and checks that re-encoding a parsed message parses back to the same value.

use bytes::BytesMut;

use super::{parse_backend, parse_frontend, parse_startup, MessageLimits, WireError};

/// Parses `data` as a run of messages with `parse`, re-encoding each with `encode` and
/// parsing that again. Returns how many messages parsed.
///
/// # Panics
/// Only if the codec is inconsistent: a parsed message that does not survive
/// encode → parse unchanged, or a parser that succeeds without consuming bytes.
fn run<T: PartialEq + std::fmt::Debug>(
    data: &[u8],
    mut parse: impl FnMut(&mut BytesMut) -> Result<Option<T>, WireError>,
    encode: impl Fn(&T, &mut BytesMut),
) -> usize {
    let mut buf = BytesMut::from(data);
    let mut count = 0;
    loop {
        let before = buf.len();
        let Ok(Some(message)) = parse(&mut buf) else {
            break;
        };
        assert!(buf.len() < before, "a message parsed from no bytes");
        let mut again = BytesMut::new();
        encode(&message, &mut again);
        let reparsed = parse(&mut again);
        assert_eq!(reparsed, Ok(Some(message)), "encode → parse changed the message");
        assert!(again.is_empty(), "re-encoded message left bytes over");
        count += 1;
    }
    count
}

/// Fuzz entry point for [`parse_startup`].
pub fn fuzz_startup(data: &[u8]) -> usize {
    run(data, parse_startup, |m, b| m.encode(b))
}

/// Fuzz entry point for [`parse_frontend`] with PostgreSQL's default limits.
pub fn fuzz_frontend(data: &[u8]) -> usize {
    let limits = MessageLimits::default();
    run(data, |b| parse_frontend(b, &limits), |m, b| m.encode(b))
}

/// Fuzz entry point for [`parse_backend`].
pub fn fuzz_backend(data: &[u8]) -> usize {
    run(data, parse_backend, |m, b| m.encode(b))
}

/// Fuzz entry point for the `p` interpreters ([`super::password`]): reads `data` as each
/// kind of `p` body.
pub fn fuzz_password(data: &[u8]) {
    let body = bytes::Bytes::copy_from_slice(data);
    if let Ok(r) = super::SaslInitialResponse::parse(&body) {
        if let super::FrontendMessage::Password(again) = r.to_message() {
            assert_eq!(super::SaslInitialResponse::parse(&again), Ok(r));
        }
    }
    if let Ok(pw) = super::password::parse_password(&body) {
        assert_eq!(&pw[..], data.get(..data.len().saturating_sub(1)).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn fuzz_entry_points_hold_on_arbitrary_bytes(data in vec(any::<u8>(), 0..256)) {
            fuzz_startup(&data);
            fuzz_frontend(&data);
            fuzz_backend(&data);
            fuzz_password(&data);
        }
    }

    #[test]
    fn entry_points_count_messages() {
        assert_eq!(fuzz_frontend(b"S\0\0\0\x04H\0\0\0\x04X"), 2);
        assert_eq!(fuzz_backend(b"Z\0\0\0\x05IZ\0\0\0\x05T"), 2);
        assert_eq!(fuzz_startup(b"\0\0\0\x08\x04\xd2\x16\x2f"), 1);
    }
}
