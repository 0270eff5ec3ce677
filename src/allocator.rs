//! The binaries' memory allocator: jemalloc, with settings for a long-running controller whose
//! heap is a fleet of small, long-lived cached objects plus bursts (a completion wave of
//! thousands of jobs) that come and go.
//!
//! - `narenas:1`: one arena. jemalloc's default (four per CPU) spreads the caches over several
//!   arenas, each keeping its own partly used pages; a controller's allocation rate does not need
//!   them (`docs/benchmarks.md`, "Fixed because of the benchmark", has the measured effect).
//! - `background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0`: freed pages go back to the
//!   kernel about a second after a burst instead of ten, so RSS follows the live heap.
//!
//! Use [`use_jemalloc!`](crate::use_jemalloc) once in each binary.

use std::ffi::CStr;

/// jemalloc's settings (see the module documentation).
pub const MALLOC_CONF: &CStr =
    c"narenas:1,background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0";

/// Makes jemalloc with [`MALLOC_CONF`] the global allocator of the binary that invokes it.
#[macro_export]
macro_rules! use_jemalloc {
    () => {
        #[global_allocator]
        static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

        /// Read by jemalloc at start-up as `const char *malloc_conf` (the `_rjem_` prefix is
        /// tikv-jemallocator's): a thin pointer to the first byte of a static C string.
        // The only unsafe code of the crate (an exported symbol name); the workspace denies it
        // everywhere else.
        #[allow(non_upper_case_globals, unsafe_code)]
        #[unsafe(export_name = "_rjem_malloc_conf")]
        pub static malloc_conf: &u8 = &$crate::allocator::MALLOC_CONF.to_bytes_with_nul()[0];
    };
}
