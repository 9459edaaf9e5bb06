//! A real NATS client no one here wrote: nats-py (2.16, from PyPI) calls
//! `echo nats` and `faults nats` on a real nats-server, reads the error
//! headers and body, and discovers the service through `$SRV.INFO`
//! (`tests/nats_client/drive.py`).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::nats::{NatsServer, Served, python};

#[test]
fn nats_py_calls_reads_errors_and_discovers() {
    let server = NatsServer::start();
    let _echo = Served::start("echo", &server.url, "py-echo", &[]);
    let _faults = Served::start("faults", &server.url, "py-faults", &[]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/nats_client/drive.py");
    let mut cmd = Command::new(python());
    cmd.arg(script).arg(&server.url).stdin(Stdio::null());
    let out = common::run_with_limit(&mut cmd, Duration::from_secs(60));
    assert!(
        out.status.success() && common::stdout(&out).trim() == "ok",
        "nats-py ({}):\nstdout: {}\nstderr: {}",
        out.status,
        common::stdout(&out),
        common::stderr(&out)
    );
}
