//! [`RowKey`]: a primary key as the engine's row maps hold and order it. A key of one
//! integer column (the common `k int PRIMARY KEY`) is an `i64`, compared without looking at
//! values and stored without an allocation; any other key keeps its values.
//!
//! The order is exactly [`Value`]'s on the key's values: [`Value::cmp`] compares every
//! integer width by its `i64` value (and against floats and numerics as an `f64`), so an
//! integer of any width is the same key as that integer in an `Int8`.

use std::cmp::Ordering;

use super::catalog::{Key, TableDef};
use super::value::Value;

/// A primary key in a table's row map.
#[derive(Debug, Clone)]
pub(crate) enum RowKey {
    /// A key that is one integer value, of any width.
    Int(i64),
    /// Any other key: its values in key order.
    Values(Key),
}

impl RowKey {
    /// The row map's key for `key`.
    pub fn new(key: Key) -> RowKey {
        match key.as_slice() {
            [v] => v.as_i64().map_or(RowKey::Values(key), RowKey::Int),
            _ => RowKey::Values(key),
        }
    }

    /// The row map's key for a borrowed `key` (allocates only for a key that is not one
    /// integer).
    pub fn from_key(key: &[Value]) -> RowKey {
        match key {
            [v] => v.as_i64().map_or_else(|| RowKey::Values(key.to_vec()), RowKey::Int),
            _ => RowKey::Values(key.to_vec()),
        }
    }

    /// The key of `row` in table `def` (allocates only for a key that is not one integer).
    pub fn of_row(def: &TableDef, row: &[Value]) -> RowKey {
        if let [i] = def.pkey.as_slice() {
            if let Some(k) = row.get(*i).and_then(Value::as_i64) {
                return RowKey::Int(k);
            }
        }
        RowKey::Values(def.key_of(row))
    }

    /// Calls `f` with the key's values.
    fn with_values<T>(&self, f: impl FnOnce(&[Value]) -> T) -> T {
        match self {
            RowKey::Int(i) => f(&[Value::Int8(*i)]),
            RowKey::Values(v) => f(v),
        }
    }
}

impl Ord for RowKey {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (RowKey::Int(a), RowKey::Int(b)) => a.cmp(b),
            _ => self.with_values(|a| other.with_values(|b| a.cmp(b))),
        }
    }
}

impl PartialOrd for RowKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for RowKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for RowKey {}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::engine::change::strategies::value;

    fn keys() -> impl Strategy<Value = Key> {
        prop_oneof![
            any::<i64>().prop_map(|i| vec![Value::Int8(i)]),
            any::<i32>().prop_map(|i| vec![Value::Int4(i)]),
            any::<i16>().prop_map(|i| vec![Value::Int2(i)]),
            proptest::collection::vec(value(), 0..3),
        ]
    }

    proptest! {
        /// The row map orders keys exactly as their values order.
        #[test]
        fn order_is_the_values_order(a in keys(), b in keys()) {
            let (ka, kb) = (RowKey::new(a.clone()), RowKey::new(b.clone()));
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
            prop_assert_eq!(RowKey::from_key(&a).cmp(&kb), a.cmp(&b));
            prop_assert_eq!(ka == kb, a.cmp(&b) == Ordering::Equal);
        }
    }

    #[test]
    fn one_integer_is_held_as_an_integer() {
        assert!(matches!(RowKey::new(vec![Value::Int4(-7)]), RowKey::Int(-7)));
        assert!(matches!(RowKey::new(vec![Value::Int2(3)]), RowKey::Int(3)));
        assert!(matches!(RowKey::new(vec![Value::Text("a".into())]), RowKey::Values(_)));
        assert!(matches!(RowKey::new(vec![Value::Int4(1), Value::Int4(2)]), RowKey::Values(_)));
        assert_eq!(RowKey::new(vec![Value::Int4(5)]), RowKey::new(vec![Value::Float8(5.0)]));
    }
}
