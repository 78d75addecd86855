//! The whole-job contract suite over the recording fake (its real-Podman twin is
//! `integration/tests/contract.rs`).

use berth_tests::fake_backend::FakeBackend;

berth_tests::contract_tests!(FakeBackend::new("alpine:3"));
