//! In-process Kubernetes API test server.
