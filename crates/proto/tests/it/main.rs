//! gomon-proto's integration tests, laid out as every crate's: one test binary, `tests/it`, its files modules of it.

mod wire;
