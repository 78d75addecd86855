//! berth-config.
