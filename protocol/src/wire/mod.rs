//! The frontend/backend protocol, version 3.0, in both directions.
