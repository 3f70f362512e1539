//! walstream-receiver: the client side of streaming replication (connection,
//! streaming, segment files, apply, feedback). Built in the receiver issue; for now
//! it only re-exports the protocol it will speak.

pub use walstream_protocol as protocol;

pub mod conn;
pub mod conninfo;
