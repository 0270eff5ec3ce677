//! Integration tests: the test API server driven over HTTP by kube's typed and dynamic clients,
//! kube-runtime (watcher, finalizer, Recorder, Controller) and raw HTTP requests.

mod common;
mod crud;
mod custom;
mod gc;
mod runtime;
mod scale;
mod ssa;
mod watch;
