//! Compiles `proto/` with a vendored `protoc`, so building needs no system protobuf compiler.
//! The generated code lands in `OUT_DIR` and is never committed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("clerkindex_descriptor.bin"))
        .compile_protos(
            &[
                "proto/clerkindex/v1/user_index.proto",
                "proto/clerkindex/v1/sync.proto",
                "proto/clerkindex/v1/segments.proto",
            ],
            &["proto"],
        )?;
    // proto3 JSON (serde) for every message: the CLI's `-o json`, and later the JSON API.
    let descriptors = std::fs::read(out_dir.join("clerkindex_descriptor.bin"))?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .build(&[".clerkindex"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
