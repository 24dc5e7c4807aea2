//! The generated protobuf and gRPC code (`proto/clerkindex/v1`), compiled by `build.rs`.

tonic::include_proto!("clerkindex.v1");
// serde in the proto3 JSON mapping (camelCase names, 64-bit integers as strings, enums by name).
include!(concat!(env!("OUT_DIR"), "/clerkindex.v1.serde.rs"));

/// For gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("clerkindex_descriptor");
