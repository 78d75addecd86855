//! berth-tests.
