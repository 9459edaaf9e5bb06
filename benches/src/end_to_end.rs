//! Path 2: end to end. A client's unary `Hub.Invoke` through the real hub
//! (in this process, logging its one line per call as a running hub does)
//! to the echo connector attached to it, and back; against a raw tonic
//! unary echo server. Two hops against one.

use std::net::SocketAddr;

use spoke_proto::v1::hub_client::HubClient;
use spoke_proto::v1::{InvokeRequest, instance_result};
use tonic::transport::{Channel, Endpoint};

use crate::baseline::{self, Msg};
use crate::payload::{IN_FLIGHT, SIZES, echo_input};
use crate::report::{Report, Runs, Target};
use crate::stats::Run;
use crate::window::closed_loop;
use crate::{Opts, echo};

const PATH: &str = "2 end to end";

/// Starts a hub on a fresh loopback port with one echo instance attached.
pub async fn hub_with_echo() -> SocketAddr {
    let addr = start_hub().await;
    attach(addr, echo::instance().await, "bench");
    // Wait until it is routable.
    let mut client = client(addr).await;
    loop {
        if invoke(&mut client, echo_input(64)).await.is_ok() {
            return addr;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Starts a hub (in this process, with its defaults) on a fresh loopback
/// port.
pub async fn start_hub() -> SocketAddr {
    let config = spoke_hub::HubConfig::new("127.0.0.1:0".parse().unwrap());
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(spoke_hub::run_until(
        config,
        std::future::pending(),
        move |addr| {
            let _ = bound_tx.send(addr);
        },
    ));
    bound_rx.await.expect("the hub binds")
}

/// Attaches `instance` to the hub at `addr` as instance `id`, over gRPC
/// with the runtime's defaults (64 calls in flight).
pub fn attach(addr: SocketAddr, instance: spoke::Instance, id: &str) {
    let mut options = spoke::AttachOptions::new(instance.manifest());
    options.hub_url = format!("http://{addr}");
    options.instance.id = id.into();
    options.max_in_flight = 64;
    tokio::spawn(spoke::grpc::serve::run_until(
        instance,
        options,
        std::future::pending(),
    ));
}

pub async fn client(addr: SocketAddr) -> HubClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("url")
        .tcp_nodelay(true)
        .max_frame_size(spoke_proto::MAX_FRAME_BYTES)
        .connect()
        .await
        .expect("connect to the hub");
    HubClient::new(channel)
}

pub async fn invoke(client: &mut HubClient<Channel>, payload: Vec<u8>) -> Result<(), String> {
    let response = client
        .invoke(InvokeRequest {
            connector: "echo".into(),
            action: "echo".into(),
            payload: payload.into(),
            ..Default::default()
        })
        .await
        .map_err(|s| s.to_string())?
        .into_inner();
    match response.results.first().and_then(|r| r.outcome.as_ref()) {
        Some(instance_result::Outcome::Payload(_)) => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

pub async fn run(opts: &Opts, report: &mut Report) {
    eprintln!("{PATH}");
    let hub = hub_with_echo().await;
    let spoke_client = client(hub).await;
    let (raw_addr, _ends) = baseline::serve().await;
    let raw_client = baseline::client(raw_addr).await;

    for (size, size_name) in SIZES {
        let payload = echo_input(size);
        for workers in IN_FLIGHT {
            let calls = opts.calls(workers) / 2;
            let spoke_call = {
                let (client, payload) = (spoke_client.clone(), payload.clone());
                move |_id: u64| {
                    let (mut client, payload) = (client.clone(), payload.clone());
                    async move {
                        invoke(&mut client, payload)
                            .await
                            .expect("a call through the hub")
                    }
                }
            };
            let raw_call = {
                let (client, payload) = (raw_client.clone(), payload.clone());
                move |id: u64| {
                    let (mut client, payload) = (client.clone(), payload.clone());
                    async move {
                        let msg = Msg {
                            id: id.to_string(),
                            payload,
                        };
                        client.unary(msg).await.expect("a raw unary call");
                    }
                }
            };
            closed_loop(calls / 4 + 1, workers, spoke_call.clone()).await;
            closed_loop(calls / 4 + 1, workers, raw_call.clone()).await;
            let (mut spoke_runs, mut raw_runs): (Vec<Run>, Vec<Run>) = (Vec::new(), Vec::new());
            for _ in 0..opts.rounds {
                if !crate::spoke_only() {
                    raw_runs.push(closed_loop(calls, workers, raw_call.clone()).await);
                }
                spoke_runs.push(closed_loop(calls, workers, spoke_call.clone()).await);
            }
            let case = format!("{size_name}, {workers} in flight");
            report.add_runs(
                PATH,
                &case,
                Runs {
                    throughput: Some(Target::RatioAtLeast { ratio: 0.5 }),
                    p99: Some(Target::RatioAtMost { ratio: 2.5 }),
                    note: "baseline: raw tonic unary echo server".to_owned(),
                    ..Runs::new(&spoke_runs, &raw_runs, "calls/s")
                },
            );
        }
    }
}
