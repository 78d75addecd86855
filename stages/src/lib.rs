//! berth-stages.
