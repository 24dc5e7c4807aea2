//! The generated protobuf and gRPC code (`proto/clerkindex/v1`), compiled by `build.rs`.

tonic::include_proto!("clerkindex.v1");

/// For gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("clerkindex_descriptor");
