//! Link-time settings of the `gomon` executable.

fn main() {
    // Relative relocations packed (DT_RELR, glibc 2.36+): the loader reads a few kilobytes at start instead of
    // 600 KB of `.rela.dyn`, which otherwise stays resident in every agent.
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
