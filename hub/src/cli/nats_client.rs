//! `spoke call --nats URL`, `spoke describe --nats URL`, `spoke sync
//! --nats URL` and `spoke ls --nats URL`: the same commands, straight to
//! connectors served on NATS (`<bin> nats`, or a hub's with `spoke hub
//! --nats`), with no hub in between (`ls` reads the instances' status
//! bucket; `sync` listens to the run's events on an inbox of its own). The connection takes `SPOKE_NATS_CREDS` and
//! `SPOKE_TLS_CA` from the environment; the tenant is `--tenant` (default
//! `default`). Output and exit codes are those of the hub's commands: the
//! output on stdout, `error[<code>]: <message>` (and `details: <json>`) on
//! stderr with exit 1 for an error the connector answers (or `not_found`
//! for an action it does not have), 3 when NATS cannot be reached or
//! nobody serves the connector.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use spoke_proto::v1::SyncRunInfo;
use spoke_runtime::error::{ActionError, ErrorCode};
use spoke_runtime::nats::NatsConnect;
use spoke_runtime::nats::client::{Callee, Payload, call_with, request, start_sync};
use spoke_runtime::nats::connect::connect;
use spoke_runtime::nats::status::{self, InstanceStatus};
use spoke_runtime::nats::subjects::Subjects;
use spoke_runtime::nats::sync::{SYNC_END_HEADER, SyncAsk};
use spoke_runtime::sync::SyncOutcome;
use tokio::time::Instant;

use super::client::{
    CallOptions, EXIT_ACTION_ERROR, EXIT_HUB_ERROR, EXIT_OK, EXIT_USAGE, Failure, QUICK_TIMEOUT,
    RouteFlag, ShowEvents, columns, drop_hidden_actions, pretty, print_stdout, read_input,
};
use super::sync_client::{
    Output, RUN_SLACK, SyncOptions, Writer, end_code, end_lines, interrupts, run_too_late,
    started_line,
};

/// Where `--nats` sends: the server and the tenant.
#[derive(Debug, Clone)]
pub struct NatsTarget {
    /// The server URL(s).
    pub url: String,
    /// The tenant (`default` when not given).
    pub tenant: String,
}

async fn client(target: &NatsTarget) -> Result<spoke_runtime::nats::async_nats::Client, u8> {
    let settings = NatsConnect::from_env(Some(&target.url)).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_USAGE
    })?;
    connect(&settings, "spoke-cli").await.map_err(|e| {
        eprintln!("error[unavailable]: {e}");
        EXIT_HUB_ERROR
    })
}

async fn client_and_subjects(
    target: &NatsTarget,
    connector: &str,
) -> Result<(spoke_runtime::nats::async_nats::Client, Subjects), u8> {
    let subjects = Subjects::new(&target.tenant, connector).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_USAGE
    })?;
    Ok((client(target).await?, subjects))
}

fn report(error: &ActionError) -> u8 {
    eprintln!("error[{}]: {}", error.code(), error.message());
    if let Some(details) = error.details() {
        eprintln!("details: {details}");
    }
    if error.code() == ErrorCode::Unavailable {
        EXIT_HUB_ERROR
    } else {
        EXIT_ACTION_ERROR
    }
}

/// `spoke call --nats URL`.
pub async fn call(target: &NatsTarget, options: CallOptions) -> u8 {
    let instance = match &options.route {
        None => None,
        Some(RouteFlag::Instance(id)) => Some(id.clone()),
        Some(RouteFlag::Name(_) | RouteFlag::Tag(_)) => {
            return Failure::Usage(
                "over --nats a call goes to any instance or to one --instance ID; --name and --tag need a hub".into(),
            )
            .report();
        }
    };
    if options.events != ShowEvents::Off {
        return Failure::Usage("--events and --progress need a hub (not --nats)".into()).report();
    }
    let flags = &options.payload;
    if let Err(why) = flags.check_terminal(None) {
        return Failure::Usage(why).report();
    }
    let payload = match read_input(&options) {
        Ok(payload) => payload,
        Err(failure) => return failure.report(),
    };
    let (client, subjects) = match client_and_subjects(target, &options.connector).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let callee = if options.operator {
        Callee::Operator(&options.action)
    } else {
        Callee::Action(&options.action)
    };
    // No --output-encoding: the action's preferred, as through a hub.
    let payload = Payload {
        bytes: Bytes::from(payload),
        encoding: flags.input_encoding,
        accept: flags.accept(),
    };
    let outcome = call_with(
        &client,
        &subjects,
        instance.as_deref(),
        callee,
        payload,
        Some(options.timeout),
    )
    .await;
    let _ = client.flush().await;
    match outcome {
        Ok((body, encoding)) => match flags.write_output(encoding, &body) {
            Ok(()) => EXIT_OK,
            Err(why) => Failure::Usage(why).report(),
        },
        Err(error) => report(&error),
    }
}

/// `spoke describe --nats URL <connector>`: the manifest from any instance.
pub async fn describe(target: &NatsTarget, connector: &str, hidden: bool) -> u8 {
    let (client, subjects) = match client_and_subjects(target, connector).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    match request(
        &client,
        &subjects,
        subjects.describe(),
        Bytes::new(),
        Some(QUICK_TIMEOUT),
    )
    .await
    {
        Ok(body) => match serde_json::from_slice::<Value>(&body) {
            Ok(mut manifest) => {
                if !hidden {
                    drop_hidden_actions(&mut manifest);
                }
                print_stdout(pretty(&manifest).as_bytes(), true);
                EXIT_OK
            }
            Err(e) => report(&ActionError::internal(format!(
                "{} answered something that is not a manifest: {e}",
                subjects.describe()
            ))),
        },
        Err(error) => report(&error),
    }
}

/// `spoke ls --nats URL`: the tenant's live instances, from the status
/// bucket every instance puts its heartbeat in, grouped by connector.
pub async fn ls(target: &NatsTarget, as_json: bool) -> u8 {
    let client = match client(target).await {
        Ok(client) => client,
        Err(code) => return code,
    };
    let js = spoke_runtime::nats::async_nats::jetstream::new(client);
    let instances = match status::list(&js, Some(&target.tenant)).await {
        Ok(instances) => instances,
        Err(e) => {
            eprintln!("error[unavailable]: {e}");
            return EXIT_HUB_ERROR;
        }
    };
    let text = if as_json {
        pretty(&ls_json(instances))
    } else {
        ls_table(&instances, &target.tenant)
    };
    print_stdout(text.as_bytes(), true);
    EXIT_OK
}

fn ls_json(instances: Vec<InstanceStatus>) -> Value {
    let connectors: Vec<Value> = status::by_connector(instances)
        .into_iter()
        .map(|(name, instances)| {
            let instances: Vec<Value> = instances
                .into_iter()
                .map(|i| {
                    json!({
                        "id": i.instance_id,
                        "display_name": i.display_name,
                        "version": i.version,
                        "tags": i.tags,
                        "state": i.state,
                        "tenant": i.tenant,
                        "in_flight": i.in_flight,
                        "requests": i.requests,
                        "errors": i.errors,
                        "started": i.started,
                        "updated": i.updated,
                        "sdk_version": i.sdk_version,
                    })
                })
                .collect();
            json!({ "name": name, "instances": instances })
        })
        .collect();
    json!({ "connectors": connectors })
}

fn ls_table(instances: &[InstanceStatus], tenant: &str) -> String {
    if instances.is_empty() {
        return format!("no instances of tenant `{tenant}` are serving on NATS");
    }
    let dash = |s: String| if s.is_empty() { "-".to_owned() } else { s };
    let mut rows: Vec<[String; 9]> = vec![
        [
            "CONNECTOR",
            "VERSION",
            "INSTANCE",
            "NAME",
            "TAGS",
            "STATE",
            "IN-FLIGHT",
            "REQUESTS",
            "ERRORS",
        ]
        .map(str::to_owned),
    ];
    for i in instances {
        rows.push([
            i.connector.clone(),
            dash(i.version.clone()),
            i.instance_id.clone(),
            dash(i.display_name.clone()),
            dash(i.tags.join(",")),
            i.state.clone(),
            i.in_flight.to_string(),
            i.requests.to_string(),
            i.errors.to_string(),
        ]);
    }
    columns(&rows).join("\n")
}

/// How often `spoke sync --nats`, hearing nothing, checks that the run's
/// instance is still live in the status bucket.
const SILENCE_CHECK: Duration = Duration::from_secs(5);

/// `spoke sync --nats URL`: starts a run on any instance serving the
/// connector on NATS (or on `--instance`), writes its events as JSON
/// lines, and ends as `spoke sync` through a hub does (the same lines on
/// stderr, exit 0 when it completed, 1 when it failed or was cancelled, 3
/// when it could not start or its instance died). Ctrl-C cancels the run
/// and waits for its end; a second one stops waiting.
pub async fn sync(target: &NatsTarget, options: SyncOptions) -> u8 {
    let instance = match &options.route {
        None => None,
        Some(RouteFlag::Instance(id)) => Some(id.clone()),
        Some(RouteFlag::Name(_) | RouteFlag::Tag(_)) => {
            return Failure::Usage(
                "over --nats a run goes to any instance or to one --instance ID; --display-name needs a hub".into(),
            )
            .report();
        }
    };
    if options.fresh || options.verbose {
        return Failure::Usage(
            "--fresh and --verbose need a hub (not --nats): over NATS the instance resumes an interrupted run, and the checkpoints are in KV (spoke_<connector>_syncs)".into(),
        )
        .report();
    }
    let mode = match options
        .mode
        .as_deref()
        .map(|m| serde_json::from_value(json!(m)))
    {
        None => None,
        Some(Ok(mode)) => Some(mode),
        Some(Err(e)) => return Failure::Usage(format!("--mode: {e}")).report(),
    };
    let mut writer = match Output::open(options.out.as_deref()) {
        Ok(output) => Writer::start(output),
        Err(failure) => return failure.report(),
    };
    let (client, subjects) = match client_and_subjects(target, &options.connector).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let sync = match options.sync.clone() {
        Some(sync) => sync,
        None => match only_sync(&client, &subjects, &options.connector).await {
            Ok(sync) => sync,
            Err(code) => return code,
        },
    };
    let ask = SyncAsk {
        source_id: options.source.clone().unwrap_or_default(),
        mode,
        timeout_ms: options
            .timeout
            .map(|t| t.as_millis().try_into().unwrap_or(u64::MAX)),
        ..SyncAsk::default()
    };
    let mut interrupts = interrupts();
    let started = tokio::select! {
        started = start_sync(&client, &subjects, instance.as_deref(), &sync, ask) => started,
        Some(()) = interrupts.recv() => {
            eprintln!("cancelled before the run started");
            return EXIT_ACTION_ERROR;
        }
    };
    let (started, mut events) = match started {
        Ok(started) => started,
        Err(error) => {
            report(&error);
            return EXIT_HUB_ERROR;
        }
    };
    let text = |key: &str| started[key].as_str().unwrap_or_default().to_owned();
    let mut info = SyncRunInfo {
        run_id: text("run_id"),
        tenant: target.tenant.clone(),
        connector: options.connector.clone(),
        sync: text("sync"),
        source_id: text("source_id"),
        mode: text("mode"),
        resume: started["is_resume"] == true,
        instance_id: text("instance"),
        status: "running".to_owned(),
        ..SyncRunInfo::default()
    };
    eprintln!("{}", started_line(&info));
    let js = spoke_runtime::nats::async_nats::jetstream::new(client.clone());
    let deadline = options.timeout.map(|t| Instant::now() + t + RUN_SLACK);
    let mut too_late = std::pin::pin!(crate::deadline::sleep_until(deadline));
    let mut cancelling = false;
    loop {
        tokio::select! {
            message = tokio::time::timeout(SILENCE_CHECK, events.next()), if !writer.busy => {
                let message = match message {
                    Ok(Some(message)) => message,
                    Ok(None) => {
                        return Failure::Hub {
                            code: "unavailable",
                            message: "the connection to NATS ended before the run did".to_owned(),
                        }
                        .report();
                    }
                    Err(_silence) => {
                        if let Some(why) = gone(&js, &info).await {
                            return Failure::Hub { code: "unavailable", message: why }.report();
                        }
                        continue;
                    }
                };
                let end = message.headers.as_ref().and_then(|h| h.get(SYNC_END_HEADER));
                if end.is_none() {
                    let mut line = Vec::with_capacity(message.payload.len() + 1);
                    line.extend_from_slice(&message.payload);
                    line.push(b'\n');
                    writer.write(line.into());
                    continue;
                }
                match serde_json::from_slice::<SyncOutcome>(&message.payload) {
                    Ok(outcome) => ended(&mut info, &outcome),
                    Err(e) => {
                        info.status = end.map(|s| s.to_string()).unwrap_or_default();
                        info.error = Some(spoke_proto::v1::Error {
                            code: "internal".to_owned(),
                            message: format!("the run's last message is not its outcome: {e}"),
                            details_json: String::new(),
                        });
                    }
                }
                for line in end_lines(&info) {
                    eprintln!("{line}");
                }
                return end_code(&info);
            }
            written = writer.written(), if writer.busy => {
                if let Err(e) = written {
                    let _ = client.publish(subjects.cancel(&info.run_id), Bytes::new()).await;
                    let _ = client.flush().await;
                    return Failure::Usage(format!(
                        "cannot write the events to {}: {e}; the run is cancelled",
                        writer.name
                    ))
                    .report();
                }
            }
            Some(()) = interrupts.recv() => {
                if cancelling {
                    eprintln!("stopped waiting for run {} to end", info.run_id);
                    return EXIT_ACTION_ERROR;
                }
                cancelling = true;
                eprintln!("cancelling run {}…", info.run_id);
                let sent = client.publish(subjects.cancel(&info.run_id), Bytes::new()).await;
                if let Err(e) = sent {
                    eprintln!("cannot cancel run {}: {e}; still waiting for its end (Ctrl-C again to stop waiting)", info.run_id);
                }
                let _ = client.flush().await;
            }
            () = &mut too_late => return run_too_late(options.timeout),
        }
    }
}

/// The connector's one sync, from its manifest (`describe`); a usage error
/// naming them when it has several, none when it has none.
async fn only_sync(
    client: &spoke_runtime::nats::async_nats::Client,
    subjects: &Subjects,
    connector: &str,
) -> Result<String, u8> {
    let manifest = request(
        client,
        subjects,
        subjects.describe(),
        Bytes::new(),
        Some(QUICK_TIMEOUT),
    )
    .await
    .map_err(|e| report(&e))?;
    let manifest: Value = serde_json::from_slice(&manifest).unwrap_or_default();
    let names: Vec<&str> = manifest["syncs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .collect();
    match names.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => Err(Failure::Usage(format!("connector `{connector}` has no syncs")).report()),
        several => Err(Failure::Usage(format!(
            "connector `{connector}` has several syncs ({}): name one",
            several.join(", ")
        ))
        .report()),
    }
}

/// Why the run will not end, when its instance is no longer live in the
/// status bucket; `None` while it is (or when there is no bucket to ask).
async fn gone(
    js: &spoke_runtime::nats::async_nats::jetstream::Context,
    info: &SyncRunInfo,
) -> Option<String> {
    let store = status::existing(js).await.ok()??;
    let key = status::key(&info.tenant, &info.connector, &info.instance_id);
    match store.get(key).await {
        Ok(None) => Some(format!(
            "instance {} running run {} is gone (no longer in the status bucket): the next `spoke sync --nats` resumes the run from its last checkpoint",
            info.instance_id, info.run_id
        )),
        _ => None,
    }
}

/// Fills `info` with how the run ended.
fn ended(info: &mut SyncRunInfo, outcome: &SyncOutcome) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().try_into().unwrap_or(u64::MAX));
    info.status = outcome.status.as_str().to_owned();
    info.error = outcome.error.as_ref().map(crate::wire::error_frame);
    info.counters = Some(spoke_runtime::grpc::wire_counters(&outcome.counters));
    if !outcome.failures.is_empty() {
        info.failures_json = serde_json::to_string(&outcome.failures).unwrap_or_default();
    }
    info.swept = outcome.swept;
    info.started_unix_ms = now.saturating_sub(outcome.elapsed_ms);
    info.ended_unix_ms = now;
}
