//! Physical replication slots: persistent and temporary, and the WAL they retain.
