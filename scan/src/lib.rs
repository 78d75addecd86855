//! berth-scan: image inventory, offline advisory matching, policy and reports (pure core).
