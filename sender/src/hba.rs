//! pg_hba.conf rules: which authentication method a connection gets.
