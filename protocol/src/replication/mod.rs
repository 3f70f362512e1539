//! The replication command grammar and the CopyBoth sub-messages.
