//! Compiles `proto/model.proto` and `proto/iris.proto` with the `protoc`
//! binary shipped in the `protoc-bin-vendored` crate, so building needs no
//! system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // tonic-prost-build 0.14 prints no rerun-if-changed lines of its own.
    println!("cargo:rerun-if-changed=proto/model.proto");
    println!("cargo:rerun-if-changed=proto/iris.proto");
    println!("cargo:rerun-if-changed=build.rs");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // Always the vendored binary, whatever `protoc` or `$PROTOC` the machine has.
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/model.proto", "proto/iris.proto"],
        &["proto"],
    )?;
    Ok(())
}
