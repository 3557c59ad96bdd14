//! The fake Slack lives in gomon-testkit, shared with the end-to-end test of the `gomon` binary.

// Not every test binary that includes the support module talks to Slack.
#![allow(unused_imports)]

pub(crate) use gomon_testkit::slack::*;
