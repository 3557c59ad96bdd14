//! Where series go: a Prometheus remote write receiver ([`remote_write`]) and the `/federate` page
//! ([`federate`]).

pub mod federate;
pub mod remote_write;
