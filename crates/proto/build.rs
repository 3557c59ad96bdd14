//! Compiles the `.proto` schemas with `protox` (no `protoc` binary needed) and generates Rust code
//! with `prost-build`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTOS: [&str; 3] = [
        "proto/gomon/metrics/v1/batch.proto",
        "proto/prometheus/types.proto",
        "proto/prometheus/remote.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(PROTOS, ["proto"])?;
    prost_build::Config::new()
        // BTreeMap keeps map fields (trace_context) in a stable order, so encoding is deterministic.
        .btree_map(["."])
        .compile_fds(fds)?;
    Ok(())
}
