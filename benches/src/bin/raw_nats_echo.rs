//! The baseline of path 11: a minimal NATS service endpoint written by hand
//! with async-nats (the version and features the runtime builds), the way a
//! service written straight against the client would answer.
//!
//! `raw-nats-echo <url> <subject>` connects to `<url>`, queue-subscribes on
//! `<subject>` in group `q` (the group every Spoke instance answers in), and
//! for each request spawns a task that publishes the request's bytes back
//! to its reply subject. It runs on tokio's multi-thread runtime (a worker
//! per core, as `<connector> nats` runs) and writes `serving on NATS` to
//! stderr once the server has its subscription. async-nats's `service`
//! module (ADR-32) is not used: its feature is off in the build the runtime
//! makes, and a raw endpoint needs nothing of it to answer.

use std::process::ExitCode;

use futures_util::StreamExt;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, subject] = args.as_slice() else {
        eprintln!("usage: raw-nats-echo <nats-url> <subject>");
        return ExitCode::from(2);
    };
    let client = match async_nats::ConnectOptions::new()
        .name("raw-nats-echo")
        .connect(url.as_str())
        .await
    {
        Ok(client) => client,
        Err(e) => {
            eprintln!("raw-nats-echo: cannot connect to {url}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut requests = match client
        .queue_subscribe(subject.clone(), "q".to_owned())
        .await
    {
        Ok(subscriber) => subscriber,
        Err(e) => {
            eprintln!("raw-nats-echo: cannot subscribe on {subject}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = client.flush().await {
        eprintln!("raw-nats-echo: flushing: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!("raw-nats-echo: serving on NATS at {url} as {subject}");
    while let Some(message) = requests.next().await {
        let Some(reply) = message.reply else { continue };
        let client = client.clone();
        tokio::spawn(async move {
            if let Err(e) = client.publish(reply, message.payload).await {
                eprintln!("raw-nats-echo: answering: {e}");
            }
        });
    }
    ExitCode::SUCCESS
}
