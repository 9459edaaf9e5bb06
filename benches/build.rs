//! Compiles the baselines' protocol with protox (no `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/baseline.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".baseline.Blob")
        .compile_fds(fds)?;
    Ok(())
}
