//! Unit tests of the simulated cloud through its provider, with a manual clock.
