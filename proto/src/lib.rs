//! The Spoke wire protocol: messages and gRPC services generated from
//! `proto/spoke/v1/spoke.proto` by tonic, plus the file descriptor set for
//! server reflection.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// Version 1 of the protocol.
pub mod v1 {
    tonic::include_proto!("spoke.v1");
}

/// The encoded `FileDescriptorSet` of the protocol, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("spoke_descriptor");

/// The protocol version this crate speaks (`Register.protocol_version`).
pub const PROTOCOL_VERSION: u32 = 1;
