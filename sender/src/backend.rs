//! The backend loop, modelled on PostgresMain.
