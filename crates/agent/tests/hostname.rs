//! Where the `host` label comes from: the configuration, then `NODE_NAME`, then the kernel's host name.
//!
//! This binary holds a single test because it changes the process environment, which no other thread may read
//! meanwhile.

mod common;

use common::FakeHost;
use gomon_agent::{AgentConfig, Collector};

#[test]
fn configured_name_then_node_name_then_kernel_hostname() {
    let host = FakeHost::new();
    let unset = AgentConfig {
        hostname: None,
        ..host.config.clone()
    };
    let name = |config: &AgentConfig| {
        Collector::new(config.clone())
            .expect("resolves")
            .host()
            .to_owned()
    };

    // SAFETY: this test binary runs this one test on one thread; nothing else reads the environment meanwhile.
    unsafe { std::env::set_var("NODE_NAME", "k8s-node-7") };
    assert_eq!(name(&host.config), "node-a");
    assert_eq!(name(&unset), "k8s-node-7");

    // SAFETY: as above.
    unsafe { std::env::set_var("NODE_NAME", "") };
    assert_eq!(name(&unset), "fixture-host");

    // SAFETY: as above.
    unsafe { std::env::remove_var("NODE_NAME") };
    assert_eq!(name(&unset), "fixture-host");

    host.remove("sys/kernel/hostname");
    let error = Collector::new(unset).expect_err("no name").to_string();
    assert!(error.starts_with("agent.hostname: "), "{error}");
}
