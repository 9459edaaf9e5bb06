//! Compiles the protocol with protox (pure Rust, no `protoc`) and keeps the
//! file descriptor set for gRPC server reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "spoke/v1/spoke.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("spoke_descriptor.bin"), fds.encode_to_vec())?;
    // `bytes` fields as `Bytes`: payloads are shared, not copied, when a
    // frame is kept for a resend or handed from one task to another.
    tonic_prost_build::configure().bytes(".").compile_fds(fds)?;
    Ok(())
}
