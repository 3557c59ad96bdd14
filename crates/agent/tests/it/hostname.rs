//! Where the `host` label comes from: the configuration, then `NODE_NAME`, then the kernel's host name.
//!
//! The value of `NODE_NAME` is passed to [`Collector::with_node_name`] rather than set in the environment: the
//! other tests of this binary run meanwhile on other threads, and changing the environment of a process while
//! another thread may read it (librdkafka, the C library) is undefined behaviour.

use crate::common::FakeHost;
use gomon_agent::{AgentConfig, Collector};

#[test]
fn configured_name_then_node_name_then_kernel_hostname() {
    let host = FakeHost::new();
    let unset = AgentConfig {
        hostname: None,
        ..host.config.clone()
    };
    let name = |config: &AgentConfig, node_name: Option<&str>| {
        Collector::with_node_name(config.clone(), node_name)
            .expect("resolves")
            .host()
            .to_owned()
    };

    assert_eq!(name(&host.config, Some("k8s-node-7")), "node-a");
    assert_eq!(name(&unset, Some("k8s-node-7")), "k8s-node-7");
    assert_eq!(name(&unset, Some("")), "fixture-host");
    assert_eq!(name(&unset, None), "fixture-host");

    host.remove("sys/kernel/hostname");
    let error = Collector::with_node_name(unset, None)
        .expect_err("no name")
        .to_string();
    assert!(error.starts_with("agent.hostname: "), "{error}");
}
