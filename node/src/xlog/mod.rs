//! The node's WAL: records, the WAL writer with group commit, segment files, the control file, recovery reads.
