//! CRC-32C of WAL records, computed as PostgreSQL does (`xlogreader.c: ValidXLogRecord`,
//! `xloginsert.c: XLogRecordAssemble`): the body `[24, tot_len)` first, then the header
//! bytes `[0, 20)` that precede `xl_crc`.

use super::record::SIZE_OF_XLOG_RECORD;

/// Offset of `xl_crc` in the record header (`offsetof(XLogRecord, xl_crc)`).
pub const XL_CRC_OFFSET: usize = 20;

/// CRC-32C of a record given its header (at least the first 20 bytes) and its body.
#[inline]
pub fn record_crc(header: &[u8], body: &[u8]) -> u32 {
    let head = header.get(..XL_CRC_OFFSET).unwrap_or(header);
    crc32c::crc32c_append(crc32c::crc32c(body), head)
}

/// CRC-32C of a whole record (`xl_tot_len` bytes, header included). A slice shorter than
/// the header is hashed as it is.
#[inline]
pub fn whole_record_crc(record: &[u8]) -> u32 {
    let body = record.get(SIZE_OF_XLOG_RECORD as usize..).unwrap_or(&[]);
    record_crc(record, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        // CRC-32C's standard check value, as PostgreSQL's pg_crc32c computes it.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn body_first_then_header() {
        let mut rec = vec![0u8; 30];
        rec[0] = 30;
        rec[24..].copy_from_slice(b"abcdef");
        let mut joined = b"abcdef".to_vec();
        joined.extend_from_slice(&rec[..20]);
        assert_eq!(whole_record_crc(&rec), crc32c::crc32c(&joined));
        assert_eq!(record_crc(&rec[..24], &rec[24..]), crc32c::crc32c(&joined));
    }
}
