//! SQL: statements parsed by `sqlparser`, bound and executed against the engine.

pub mod dml;
pub mod error;
pub mod expr;
pub mod guc;
pub mod numeric;
pub mod query;
pub mod server;
pub mod session;
pub mod types;

pub use server::{RelationColumn, ServerContext, ServerFunction, SyncCommit, TestServer};
pub use session::Session;
pub use walstream_sender::backend::query::SessionInfo;

#[cfg(test)]
mod tests;
