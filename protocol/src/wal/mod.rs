//! The PostgreSQL 15 WAL format: pages, records, CRC-32C, decoding and encoding.

pub mod desc;
pub mod record;
pub mod rmgr;

pub use record::{BlockImage, BlockRef, DecodedRecord, RelFileNode, XLogRecordHeader};
