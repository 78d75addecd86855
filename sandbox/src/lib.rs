//! berth-sandbox.
