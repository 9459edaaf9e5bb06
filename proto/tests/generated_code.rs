//! The generated code that `spoke-proto` ships (`src/generated/`) is what
//! `spoke/v1/spoke.proto` compiles to today, so no user of the crate runs a
//! `.proto` compiler at build time. After changing the `.proto`, regenerate:
//!
//! ```text
//! SPOKE_PROTO_BLESS=1 cargo test -p spoke-proto --test generated_code
//! ```

use std::path::{Path, PathBuf};

use prost::Message;

/// Compiles the protocol (protox: pure Rust, no `protoc`) into `out`: the
/// Rust code (`spoke.v1.rs`) and the file descriptor set for gRPC server
/// reflection (`spoke_descriptor.bin`).
fn generate(out: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fds = protox::compile(["spoke/v1/spoke.proto"], [root]).expect("the .proto compiles");
    std::fs::write(out.join("spoke_descriptor.bin"), fds.encode_to_vec()).unwrap();
    // `bytes` fields as `Bytes`: payloads are shared, not copied, when a
    // frame is kept for a resend or handed from one task to another.
    tonic_prost_build::configure()
        .bytes(".")
        .out_dir(out)
        .emit_rerun_if_changed(false)
        .compile_fds(fds)
        .expect("tonic-prost-build generates the code");
}

#[test]
fn the_shipped_code_is_generated_from_the_proto() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/generated");
    let fresh: PathBuf =
        std::env::temp_dir().join(format!("spoke-proto-generated-{}", std::process::id()));
    std::fs::create_dir_all(&fresh).unwrap();
    generate(&fresh);
    let bless = std::env::var_os("SPOKE_PROTO_BLESS").is_some();
    let mut stale = Vec::new();
    for file in ["spoke.v1.rs", "spoke_descriptor.bin"] {
        let new = std::fs::read(fresh.join(file)).unwrap();
        let old = std::fs::read(shipped.join(file)).unwrap_or_default();
        if new != old {
            if bless {
                std::fs::write(shipped.join(file), &new).unwrap();
            } else {
                stale.push(file);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&fresh);
    assert!(
        stale.is_empty(),
        "proto/src/generated/{stale:?} is not what spoke/v1/spoke.proto compiles to: \
         regenerate with `SPOKE_PROTO_BLESS=1 cargo test -p spoke-proto --test generated_code` \
         and commit the result"
    );
}
