//! The whole-job contract suite on real rootless Podman through the berth binary (its twin over
//! the recording fake is `tests/tests/contract_fake.rs`): the same scenarios, the same endings.

use berth_integration::contract::RealBackend;

berth_tests::contract_tests!(RealBackend::new("localhost/busybox:latest"));
