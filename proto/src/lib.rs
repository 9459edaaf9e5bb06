//! The Spoke wire protocol: messages and gRPC services generated from
//! `proto/spoke/v1/spoke.proto` by tonic, plus the file descriptor set for
//! server reflection. The generated code ships in `src/generated/`
//! (`tests/generated_code.rs` checks it is current), so depending on this
//! crate compiles no `.proto` compiler.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// The protobuf runtime of the generated types (`prost::bytes::Bytes` is
/// the type of every `bytes` field).
pub use prost;

/// Version 1 of the protocol.
pub mod v1 {
    include!("generated/spoke.v1.rs");
}

pub mod chunks;
pub mod limits;

/// The encoded `FileDescriptorSet` of the protocol, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("generated/spoke_descriptor.bin");

/// The protocol version this crate speaks (`Register.protocol_version`).
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest message either side of the protocol accepts (16 MiB): an
/// Invoke's payload, a `Hub.Invoke` request. Results larger than
/// [`CHUNK_THRESHOLD`] travel as [`CHUNK_BYTES`] Chunks instead, so no
/// message on an Attach stream comes near it.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// A Result whose payload is larger than this (1 MiB) is sent as Chunks
/// followed by a Result with `chunked = true` and an empty payload.
pub const CHUNK_THRESHOLD: usize = 1024 * 1024;

/// The size of each Chunk of a chunked result (the last may be shorter).
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// The largest result the hub assembles for a unary `Hub.Invoke` caller
/// (64 MiB); a larger one needs `Hub.InvokeStream`. Unary clients accept
/// responses up to this plus [`RESPONSE_SLACK_BYTES`].
pub const MAX_ASSEMBLED_BYTES: usize = 64 * 1024 * 1024;

/// The largest HTTP/2 frame the hub and Spoke's clients take (256 KiB,
/// advertised as `SETTINGS_MAX_FRAME_SIZE`; HTTP/2's default is 16 KiB). A
/// large payload then crosses in a sixteenth of the frames: a 6 MiB Arrow
/// batch through the hub took 15% less time (BENCHMARKS.md, path 12). A
/// peer still sends no more than the flow-control window lets it.
pub const MAX_FRAME_BYTES: u32 = 256 * 1024;

/// Room for the envelope around an assembled result.
pub const RESPONSE_SLACK_BYTES: usize = 64 * 1024;
