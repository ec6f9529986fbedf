//! Schema and migrations of index.sqlite.
