//! Table definitions: typed columns, NOT NULL, DEFAULT constants and the primary key.

use super::error::EngineError;
use super::value::{SqlType, Value};

/// A table's oid (assigned from 16384 up, PostgreSQL's FirstNormalObjectId).
pub type Oid = u32;

/// The first oid a user table gets (transam.h: FirstNormalObjectId).
pub const FIRST_NORMAL_OBJECT_ID: Oid = 16384;

/// A row: one value per column.
pub type Row = Vec<Value>;

/// A primary key: the key columns' values in key order.
pub type Key = Vec<Value>;

/// One column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: SqlType,
    /// NOT NULL (primary key columns always are).
    pub not_null: bool,
    /// Its DEFAULT constant.
    pub default: Option<Value>,
}

/// A table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDef {
    /// Its oid.
    pub oid: Oid,
    /// Its name.
    pub name: String,
    /// Its columns in order.
    pub columns: Vec<ColumnDef>,
    /// Indexes into `columns` of the primary key, in key order (never empty for a
    /// table the engine created; a table without a key uses all columns).
    pub pkey: Vec<usize>,
}

impl TableDef {
    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The key of `row`.
    pub fn key_of(&self, row: &[Value]) -> Key {
        self.pkey.iter().map(|&i| row.get(i).cloned().unwrap_or(Value::Null)).collect()
    }

    /// The primary key constraint's name (`t_pkey`).
    pub fn pkey_name(&self) -> String {
        format!("{}_pkey", self.name)
    }

    /// 23505 for `key`.
    pub fn unique_violation(&self, key: &[Value]) -> EngineError {
        let cols: Vec<&str> = self.pkey.iter().map(|&i| self.columns[i].name.as_str()).collect();
        let vals: Vec<String> = key.iter().map(Value::display).collect();
        EngineError::UniqueViolation {
            constraint: self.pkey_name(),
            detail: format!("Key ({})=({}) already exists.", cols.join(", "), vals.join(", ")),
        }
    }

    /// executor/execMain.c: ExecConstraints: 23502 for the first NULL in a NOT NULL column.
    ///
    /// # Errors
    /// [`EngineError::NotNullViolation`].
    pub fn check_not_null(&self, row: &[Value]) -> Result<(), EngineError> {
        for (c, v) in self.columns.iter().zip(row) {
            if c.not_null && v.is_null() {
                let vals: Vec<String> = row.iter().map(Value::display).collect();
                return Err(EngineError::NotNullViolation {
                    column: c.name.clone(),
                    table: self.name.clone(),
                    detail: format!("Failing row contains ({}).", vals.join(", ")),
                });
            }
        }
        Ok(())
    }
}
