//! berth-tests: hermetic whole-job tests over the recording fake sandbox (see `tests/`).
