//! Command-line front end.
pub mod engine;
pub mod store_cmds;
