//! The byte codec shared by [`super::Change`] payloads and [`super::Image`]s: little-endian
//! integers, length-prefixed strings, tagged values; every read is checked.

use bytes::{BufMut, BytesMut};

use super::catalog::{ColumnDef, TableDef};
use super::value::{SqlType, Value};

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes ended early.
    #[error("truncated at byte {0}")]
    Truncated(usize),
    /// An unknown tag.
    #[error("unknown {what} tag {tag} at byte {at}")]
    BadTag {
        /// What was read.
        what: &'static str,
        /// The tag.
        tag: u8,
        /// Where.
        at: usize,
    },
    /// A string that is not UTF-8.
    #[error("invalid UTF-8 at byte {0}")]
    Utf8(usize),
    /// Bytes left after the end.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// A bad header, version or checksum.
    #[error("{0}")]
    Header(String),
    /// A table definition that makes no sense (key column out of range).
    #[error("invalid table definition: {0}")]
    BadTable(String),
}

/// Writes values into a buffer.
pub(crate) trait PutExt {
    fn put_str(&mut self, s: &str);
    fn put_value(&mut self, v: &Value);
    fn put_row(&mut self, row: &[Value]);
    fn put_table_def(&mut self, def: &TableDef);
}

impl PutExt for BytesMut {
    fn put_str(&mut self, s: &str) {
        self.put_u32_le(s.len() as u32);
        self.put_slice(s.as_bytes());
    }

    fn put_value(&mut self, v: &Value) {
        match v {
            Value::Null => self.put_u8(0),
            Value::Bool(b) => {
                self.put_u8(1);
                self.put_u8(u8::from(*b));
            }
            Value::Int2(x) => {
                self.put_u8(2);
                self.put_i16_le(*x);
            }
            Value::Int4(x) => {
                self.put_u8(3);
                self.put_i32_le(*x);
            }
            Value::Int8(x) => {
                self.put_u8(4);
                self.put_i64_le(*x);
            }
            Value::Float8(x) => {
                self.put_u8(5);
                self.put_u64_le(x.to_bits());
            }
            Value::Text(s) => {
                self.put_u8(6);
                self.put_str(s);
            }
            Value::Bytea(b) => {
                self.put_u8(7);
                self.put_u32_le(b.len() as u32);
                self.put_slice(b);
            }
            Value::Timestamptz(x) => {
                self.put_u8(8);
                self.put_i64_le(*x);
            }
            Value::Numeric(s) => {
                self.put_u8(9);
                self.put_str(s);
            }
        }
    }

    fn put_row(&mut self, row: &[Value]) {
        self.put_u16_le(row.len() as u16);
        row.iter().for_each(|v| self.put_value(v));
    }

    fn put_table_def(&mut self, def: &TableDef) {
        self.put_u32_le(def.oid);
        self.put_str(&def.name);
        self.put_u16_le(def.columns.len() as u16);
        for c in &def.columns {
            self.put_str(&c.name);
            let (code, m) = c.ty.code();
            self.put_u8(code);
            self.put_u32_le(m);
            self.put_u8(u8::from(c.not_null));
            match &c.default {
                None => self.put_u8(0),
                Some(v) => {
                    self.put_u8(1);
                    self.put_value(v);
                }
            }
        }
        self.put_u16_le(def.pkey.len() as u16);
        def.pkey.iter().for_each(|k| self.put_u16_le(*k as u16));
    }
}

/// Reads what [`PutExt`] wrote.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or(DecodeError::Truncated(self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn arr<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.arr::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.arr()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.arr()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.arr()?))
    }

    pub(crate) fn str(&mut self) -> Result<String, DecodeError> {
        let n = self.u32()? as usize;
        let at = self.pos;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Utf8(at))
    }

    pub(crate) fn value(&mut self) -> Result<Value, DecodeError> {
        let at = self.pos;
        Ok(match self.u8()? {
            0 => Value::Null,
            1 => Value::Bool(self.u8()? != 0),
            2 => Value::Int2(u16::from_le_bytes(self.arr()?) as i16),
            3 => Value::Int4(self.u32()? as i32),
            4 => Value::Int8(self.u64()? as i64),
            5 => Value::Float8(f64::from_bits(self.u64()?)),
            6 => Value::Text(self.str()?),
            7 => {
                let n = self.u32()? as usize;
                Value::Bytea(self.take(n)?.to_vec())
            }
            8 => Value::Timestamptz(self.u64()? as i64),
            9 => Value::Numeric(self.str()?),
            tag => return Err(DecodeError::BadTag { what: "value", tag, at }),
        })
    }

    pub(crate) fn row(&mut self) -> Result<Vec<Value>, DecodeError> {
        let n = self.u16()? as usize;
        let mut row = Vec::with_capacity(n.min(self.buf.len()));
        for _ in 0..n {
            row.push(self.value()?);
        }
        Ok(row)
    }

    pub(crate) fn table_def(&mut self) -> Result<TableDef, DecodeError> {
        let oid = self.u32()?;
        let name = self.str()?;
        let n = self.u16()? as usize;
        let mut columns = Vec::with_capacity(n.min(self.buf.len()));
        for _ in 0..n {
            let name = self.str()?;
            let at = self.pos;
            let (code, m) = (self.u8()?, self.u32()?);
            let ty = SqlType::from_code(code, m).ok_or(DecodeError::BadTag {
                what: "type",
                tag: code,
                at,
            })?;
            let not_null = self.u8()? != 0;
            let default = match self.u8()? {
                0 => None,
                _ => Some(self.value()?),
            };
            columns.push(ColumnDef { name, ty, not_null, default });
        }
        let k = self.u16()? as usize;
        let mut pkey = Vec::with_capacity(k.min(self.buf.len()));
        for _ in 0..k {
            let i = self.u16()? as usize;
            if i >= columns.len() {
                return Err(DecodeError::BadTable(format!("key column {i} of {}", columns.len())));
            }
            pkey.push(i);
        }
        Ok(TableDef { oid, name, columns, pkey })
    }

    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}
