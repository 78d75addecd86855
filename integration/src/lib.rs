//! berth-integration.
