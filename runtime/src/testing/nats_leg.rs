//! The conformance leg of the `nats` transport (features `testing` and
//! `nats`): each call starts `<bin> nats` on the NATS server the test
//! gives, in a tenant of its own, and calls it with Spoke's NATS client.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Instant;

use bytes::Bytes;
use serde_json::json;

use super::conformance::{Answer, Case, Conformance, Leg};
use crate::nats::client::{Callee, call};
use crate::nats::connect::connect;
use crate::nats::options::NatsConnect;
use crate::nats::subjects::Subjects;

/// `<bin> nats` on a NATS server at `url`.
pub(super) struct NatsLeg {
    pub(super) url: String,
    /// The connector's name (from `describe`, once per run).
    pub(super) connector: String,
}

impl Leg for NatsLeg {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn answer(&self, run: &Conformance, case: &Case) -> Result<Answer, String> {
        static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A tenant per call: nothing else on the server answers it.
        let tenant = format!("conformance-{}-{n}", std::process::id());
        let mut command = run.command();
        command
            .arg("nats")
            .env("SPOKE_NATS_URL", &self.url)
            .env("SPOKE_TENANT", &tenant)
            .env("SPOKE_INSTANCE_ID", format!("conformance-{n}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run `nats`: {e}"))?;
        let answer = (|| {
            let stderr = child.stderr.take().ok_or("no stderr")?;
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut log = String::new();
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("serving on NATS") {
                        let _ = tx.send(Ok(()));
                    }
                    log.push_str(&line);
                    log.push('\n');
                }
                let _ = tx.send(Err(log));
            });
            match rx.recv_timeout(run.call_timeout()) {
                Ok(Ok(())) => {}
                Ok(Err(log)) => return Err(format!("`nats` ended before serving: {log}")),
                Err(_) => {
                    return Err(format!(
                        "`nats` did not serve within {:?}",
                        run.call_timeout()
                    ));
                }
            }
            let subjects = Subjects::new(&tenant, &self.connector).map_err(|e| e.to_string())?;
            let (callee, payload) = match case {
                Case::Action { action, input } => (Callee::Action(action), input.to_string()),
                Case::Resolve { operator, value } => (
                    Callee::Operator(operator),
                    json!({ "value": value }).to_string(),
                ),
            };
            let timeout = run.call_timeout();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let started = Instant::now();
            runtime.block_on(async {
                let client = connect(&NatsConnect::url(self.url.clone()), "spoke conformance")
                    .await
                    .map_err(|e| e.to_string())?;
                let outcome = call(
                    &client,
                    &subjects,
                    None,
                    callee,
                    Bytes::from(payload),
                    Some(timeout),
                )
                .await;
                let _ = client.flush().await;
                Ok::<_, String>(match outcome {
                    Ok(body) => Answer::Output(serde_json::from_slice(&body).map_err(|e| {
                        format!("the answer is not JSON ({e}) after {:?}", started.elapsed())
                    })?),
                    Err(e) => Answer::Error(e.code().as_str().to_owned()),
                })
            })
        })();
        let _ = child.kill();
        let _ = child.wait();
        answer
    }
}
