//! Where series go: a Prometheus remote write receiver ([`remote_write`]), the `/federate` page ([`federate`]), and
//! the hosts' recent measures for the console of `gomon up` ([`hosts`]).

pub mod federate;
pub mod hosts;
pub mod remote_write;
