//! Compiles the proto with protox (pure Rust, no system `protoc`) and writes the descriptor set
//! that server reflection serves, with source info kept so `grpcurl describe` shows the comments.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // tonic-prost-build 0.14 emits no rerun-if-changed of its own.
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");

    let file_descriptors = protox::compile(["proto/certification/v1/certification.proto"], ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("certification_descriptor.bin"),
        file_descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(file_descriptors)?;
    Ok(())
}
