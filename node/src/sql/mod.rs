//! SQL: statements parsed by `sqlparser`, bound and executed against the engine.
