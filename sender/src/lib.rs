//! walstream-sender: the server side of streaming replication (postmaster, the
//! PostgresMain-style backend loop, the walsender). Built in the sender issue; for
//! now it only re-exports the protocol it will speak.

pub use walstream_protocol as protocol;
