//! [`Change`]: the row changes a transaction logs, the payloads of the node's WAL records.

use bytes::{BufMut, Bytes, BytesMut};

use super::catalog::{Key, Oid, Row, TableDef};
use super::codec::{DecodeError, PutExt, Reader};

/// One change a statement made.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// CREATE TABLE.
    CreateTable(TableDef),
    /// DROP TABLE.
    DropTable(Oid),
    /// TRUNCATE.
    Truncate(Oid),
    /// A new row.
    Insert {
        /// The table.
        oid: Oid,
        /// The row.
        row: Row,
    },
    /// A row replaced (its key may have changed).
    Update {
        /// The table.
        oid: Oid,
        /// The old row's key.
        old_key: Key,
        /// The new row.
        new_row: Row,
    },
    /// A row deleted.
    Delete {
        /// The table.
        oid: Oid,
        /// Its key.
        key: Key,
    },
}

/// `xl_info` kinds (the high nibble; the low nibble is PostgreSQL's).
mod info {
    pub const CREATE_TABLE: u8 = 0x00;
    pub const DROP_TABLE: u8 = 0x10;
    pub const TRUNCATE: u8 = 0x20;
    pub const INSERT: u8 = 0x30;
    pub const UPDATE: u8 = 0x40;
    pub const DELETE: u8 = 0x50;
}

impl Change {
    /// The table the change is about.
    pub fn oid(&self) -> Oid {
        match self {
            Change::CreateTable(d) => d.oid,
            Change::DropTable(o) | Change::Truncate(o) => *o,
            Change::Insert { oid, .. }
            | Change::Update { oid, .. }
            | Change::Delete { oid, .. } => *oid,
        }
    }

    /// The record's `xl_info` (kind in the high nibble) and payload.
    pub fn encode(&self) -> (u8, Bytes) {
        let mut b = BytesMut::new();
        let kind = match self {
            Change::CreateTable(def) => {
                b.put_table_def(def);
                info::CREATE_TABLE
            }
            Change::DropTable(oid) => {
                b.put_u32_le(*oid);
                info::DROP_TABLE
            }
            Change::Truncate(oid) => {
                b.put_u32_le(*oid);
                info::TRUNCATE
            }
            Change::Insert { oid, row } => {
                b.put_u32_le(*oid);
                b.put_row(row);
                info::INSERT
            }
            Change::Update { oid, old_key, new_row } => {
                b.put_u32_le(*oid);
                b.put_row(old_key);
                b.put_row(new_row);
                info::UPDATE
            }
            Change::Delete { oid, key } => {
                b.put_u32_le(*oid);
                b.put_row(key);
                info::DELETE
            }
        };
        (kind, b.freeze())
    }

    /// The change a record with `info` and `payload` holds.
    ///
    /// # Errors
    /// [`DecodeError`] for an unknown kind, short or trailing bytes.
    pub fn decode(info: u8, payload: &[u8]) -> Result<Change, DecodeError> {
        let mut r = Reader::new(payload);
        let c = match info & 0xF0 {
            info::CREATE_TABLE => Change::CreateTable(r.table_def()?),
            info::DROP_TABLE => Change::DropTable(r.u32()?),
            info::TRUNCATE => Change::Truncate(r.u32()?),
            info::INSERT => Change::Insert { oid: r.u32()?, row: r.row()? },
            info::UPDATE => Change::Update { oid: r.u32()?, old_key: r.row()?, new_row: r.row()? },
            info::DELETE => Change::Delete { oid: r.u32()?, key: r.row()? },
            tag => return Err(DecodeError::BadTag { what: "change", tag, at: 0 }),
        };
        r.finish()?;
        Ok(c)
    }
}

#[cfg(test)]
pub(crate) mod strategies {
    //! proptest strategies for values, rows, table definitions and changes.
    use proptest::prelude::*;

    use super::*;
    use crate::engine::catalog::ColumnDef;
    use crate::engine::value::{SqlType, Value};

    pub fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i16>().prop_map(Value::Int2),
            any::<i32>().prop_map(Value::Int4),
            any::<i64>().prop_map(Value::Int8),
            any::<f64>().prop_filter("not NaN", |f| !f.is_nan()).prop_map(Value::Float8),
            ".{0,12}".prop_map(Value::Text),
            proptest::collection::vec(any::<u8>(), 0..16).prop_map(Value::Bytea),
            any::<i64>().prop_map(Value::Timestamptz),
            "-?[0-9]{1,5}\\.[0-9]{0,4}".prop_map(Value::Numeric),
        ]
    }

    pub fn row() -> impl Strategy<Value = Row> {
        proptest::collection::vec(value(), 0..6)
    }

    pub fn sql_type() -> impl Strategy<Value = SqlType> {
        prop_oneof![
            Just(SqlType::Bool),
            Just(SqlType::Int4),
            Just(SqlType::Int8),
            Just(SqlType::Float8),
            Just(SqlType::Text),
            proptest::option::of(1u32..100).prop_map(SqlType::Varchar),
            Just(SqlType::Timestamptz),
        ]
    }

    pub fn table_def() -> impl Strategy<Value = TableDef> {
        let col = ("[a-z]{1,8}", sql_type(), any::<bool>(), proptest::option::of(value()))
            .prop_map(|(name, ty, not_null, default)| ColumnDef { name, ty, not_null, default });
        (16384u32.., "[a-z_]{1,10}", proptest::collection::vec(col, 1..5)).prop_map(
            |(oid, name, columns)| {
                let pkey = vec![0];
                TableDef { oid, name, columns, pkey }
            },
        )
    }

    pub fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            table_def().prop_map(Change::CreateTable),
            any::<u32>().prop_map(Change::DropTable),
            any::<u32>().prop_map(Change::Truncate),
            (any::<u32>(), row()).prop_map(|(oid, row)| Change::Insert { oid, row }),
            (any::<u32>(), row(), row()).prop_map(|(oid, old_key, new_row)| Change::Update {
                oid,
                old_key,
                new_row
            }),
            (any::<u32>(), row()).prop_map(|(oid, key)| Change::Delete { oid, key }),
        ]
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::strategies::change;
    use super::*;

    proptest! {
        #[test]
        fn change_round_trips(c in change()) {
            let (info, payload) = c.encode();
            prop_assert_eq!(info & 0x0F, 0);
            prop_assert_eq!(Change::decode(info, &payload).unwrap(), c);
        }

        #[test]
        fn decode_never_panics(info in any::<u8>(), bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Change::decode(info, &bytes);
        }

        #[test]
        fn truncated_payloads_are_errors(c in change(), cut in 1usize..8) {
            let (info, payload) = c.encode();
            let n = payload.len().saturating_sub(cut);
            prop_assert!(Change::decode(info, &payload[..n]).is_err());
        }
    }
}
