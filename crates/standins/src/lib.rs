//! Stand-in servers for runctl tests.
pub mod aws;
