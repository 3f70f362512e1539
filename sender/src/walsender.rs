//! The walsender.
