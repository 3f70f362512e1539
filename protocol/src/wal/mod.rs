//! The PostgreSQL 15 WAL format: pages, records, CRC-32C, decoding and encoding.
//!
//! - [`page`]: page headers; [`crc`]: record CRC-32C; [`record`]: decoded records.
//! - [`decoder`]: the sans-I/O [`WalDecoder`] (`feed`/`poll`), errors in [`error`].
//! - [`encoder`]: [`WalEncoder`], records laid out on pages as a server writes them.

pub mod assemble;
pub mod body;
pub mod crc;
pub mod decoder;
pub mod desc;
pub mod encoder;
pub mod error;
pub mod fuzz;
mod input;
pub mod page;
mod pagecheck;
pub mod record;
pub mod rmgr;
pub mod view;

pub use assemble::{EncodeError, RecordSpec};
pub use decoder::WalDecoder;
pub use encoder::{segment_files, Appended, EncoderConfig, WalEncoder};
pub use error::{WalError, WalErrorKind};
pub use record::{BlockImage, BlockRef, DecodedRecord, RelFileNode, XLogRecordHeader};
pub use view::{BlockView, ImageHeader, RecordView};

#[cfg(test)]
mod borrowed_tests;
#[cfg(test)]
mod decoder_tests;
#[cfg(test)]
mod roundtrip_tests;
