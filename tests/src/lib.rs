//! Test support: throwaway PostgreSQL 15 clusters.
