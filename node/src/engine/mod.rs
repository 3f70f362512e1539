//! The I/O-free core of the node: values, tables, transactions, row locks, changes and redo.
