//! Compiles the protos with protox (pure Rust, no system `protoc`) and writes the descriptor sets
//! that server reflection serves, with source info kept so `grpcurl describe` shows the comments.

use std::{env, fs, path::PathBuf};

use prost::Message;

/// Each proto with the descriptor-set file reflection serves for it. One set per proto, so a
/// server lists the sandbox service only when it registers that set (sandbox mode).
const PROTOS: &[(&str, &str)] = &[
    (
        "proto/certification/v1/certification.proto",
        "certification_descriptor.bin",
    ),
    (
        "proto/certification/sandbox/v1/sandbox.proto",
        "sandbox_descriptor.bin",
    ),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // tonic-prost-build 0.14 emits no rerun-if-changed of its own.
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    for (proto, descriptor_file) in PROTOS {
        let file_descriptors = protox::compile([proto], ["proto"])?;
        fs::write(out_dir.join(descriptor_file), file_descriptors.encode_to_vec())?;
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .compile_fds(file_descriptors)?;
    }
    Ok(())
}
