//! Compiles `proto/model.proto` and `proto/iris.proto` with the `protoc`
//! binary shipped in the `protoc-bin-vendored` crate, so building needs no
//! system `protoc`. `iris.proto` also gets its file descriptor set
//! (`$OUT_DIR/iris_descriptor.bin`), which the fleet server's gRPC reflection
//! service serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // tonic-prost-build 0.14 prints no rerun-if-changed lines of its own.
    println!("cargo:rerun-if-changed=proto/model.proto");
    println!("cargo:rerun-if-changed=proto/iris.proto");
    println!("cargo:rerun-if-changed=build.rs");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // Always the vendored binary, whatever `protoc` or `$PROTOC` the machine has.
    let config = || {
        let mut config = tonic_prost_build::Config::new();
        config.protoc_executable(&protoc);
        config
    };
    tonic_prost_build::configure().compile_with_config(
        config(),
        &["proto/model.proto"],
        &["proto"],
    )?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("iris_descriptor.bin"))
        .compile_with_config(config(), &["proto/iris.proto"], &["proto"])?;
    Ok(())
}
