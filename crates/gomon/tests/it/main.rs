//! The `gomon` binary's integration tests, in one test binary: each role, `gomon up` and the platform end to end
//! as separate `gomon` processes against real systems (tansu, VictoriaMetrics, PostgreSQL).

mod aggregator_binary;
mod alerting_binary;
mod console;
mod end_to_end;
mod kafka_tls;
mod listeners;
mod support;
mod traces;
mod up_binary;
