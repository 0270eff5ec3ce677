//! Stand-in servers for runctl tests.
