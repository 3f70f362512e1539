//! [`SqlHandler`]: the sender's [`QueryHandler`] for the node: one [`Session`] per
//! connection over the shared engine and server context.

use std::sync::Arc;

use walstream_protocol::wire::{sqlstate, ErrorFields};
use walstream_sender::backend::query::{QueryHandler, QuerySession, SessionInfo};

use super::server::ServerContext;
use super::session::Session;
use crate::engine::Engine;

/// Makes a [`Session`] for every client connection.
pub struct SqlHandler {
    engine: Arc<Engine>,
    server: Arc<dyn ServerContext>,
}

impl SqlHandler {
    /// A handler over `engine` with `server`'s functions, relations and settings.
    pub fn new(engine: Arc<Engine>, server: Arc<dyn ServerContext>) -> Arc<SqlHandler> {
        Arc::new(SqlHandler { engine, server })
    }
}

impl std::fmt::Debug for SqlHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlHandler").field("engine", &self.engine).finish_non_exhaustive()
    }
}

impl QueryHandler for SqlHandler {
    fn session(&self, info: &SessionInfo) -> Box<dyn QuerySession> {
        Box::new(Session::new(Arc::clone(&self.engine), Arc::clone(&self.server), info.clone()))
    }

    fn check_startup_settings(&self, settings: &[(String, String)]) -> Result<(), ErrorFields> {
        let mut s = super::guc::SessionSettings::new(self.server.settings(), "");
        for (name, value) in settings {
            match s.set(name, value) {
                // guc.c: a custom name (`a.b`, checked before) the node does not have
                // becomes a placeholder, as in PostgreSQL.
                Err(e) if e.code == sqlstate::UNDEFINED_OBJECT && name.contains('.') => {}
                other => other?,
            }
        }
        Ok(())
    }
}
