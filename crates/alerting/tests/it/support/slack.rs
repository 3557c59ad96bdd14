//! The fake Slack lives in gomon-testkit, shared with the end-to-end test of the `gomon` binary.

pub(crate) use gomon_testkit::slack::*;
