//! The node's error: what stops it from starting or running, wrapping each layer's error.

use std::path::PathBuf;

use crate::datadir::DataDirError;
use crate::engine::EngineError;
use crate::xlog::XlogError;

/// An error of the node's composed layer (startup, checkpoints, roles).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The data directory cannot be used.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The WAL layer failed.
    #[error(transparent)]
    Xlog(#[from] XlogError),
    /// The engine refused something (redo of a change that does not apply).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The configuration (files, `-c`, `pg_hba.conf`, roles) cannot be used.
    #[error("{0}")]
    Config(String),
    /// The checkpoint state file is unreadable or corrupt.
    #[error("could not read the checkpoint state: {0}")]
    State(String),
    /// What stops the startup process with PostgreSQL's FATAL (and its DETAIL).
    #[error("{message}{}", detail.as_ref().map(|d| format!("\nDETAIL:  {d}")).unwrap_or_default())]
    Fatal {
        /// The FATAL's text.
        message: String,
        /// Its DETAIL.
        detail: Option<String>,
    },
    /// A file operation failed.
    #[error("could not {op} \"{}\": {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}
