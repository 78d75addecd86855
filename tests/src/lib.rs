//! berth-tests: the whole-job contract suite. The same scenarios (prepare, each stage, a failing
//! script, a cancelled one, cleanup twice) run against the recording fake here
//! (`tests/tests/contract_fake.rs`) and against real Podman through the berth binary
//! (`integration/tests/contract.rs`), so the fake cannot drift from the real backend unnoticed.

pub mod contract;
pub mod fake_backend;
