//! The backend table.
