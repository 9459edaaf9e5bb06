//! `spoke call --nats URL`, `spoke describe --nats URL` and `spoke ls
//! --nats URL`: the same commands, straight to connectors served on NATS
//! (`<bin> nats`), with no hub in between (`ls` reads the instances'
//! status bucket). The connection takes `SPOKE_NATS_CREDS` and
//! `SPOKE_TLS_CA` from the environment; the tenant is `--tenant` (default
//! `default`). Output and exit codes are those of the hub's commands: the
//! output on stdout, `error[<code>]: <message>` (and `details: <json>`) on
//! stderr with exit 1 for an error the connector answers (or `not_found`
//! for an action it does not have), 3 when NATS cannot be reached or
//! nobody serves the connector.

use bytes::Bytes;
use serde_json::{Value, json};
use spoke_runtime::error::{ActionError, ErrorCode};
use spoke_runtime::nats::NatsConnect;
use spoke_runtime::nats::client::{Callee, call as call_over_nats, request};
use spoke_runtime::nats::connect::connect;
use spoke_runtime::nats::status::{self, InstanceStatus};
use spoke_runtime::nats::subjects::Subjects;

use super::client::{
    CallOptions, EXIT_ACTION_ERROR, EXIT_HUB_ERROR, EXIT_OK, EXIT_USAGE, Failure, QUICK_TIMEOUT,
    RouteFlag, ShowEvents, columns, drop_hidden_actions, pretty, print_stdout, read_input,
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
    let outcome = call_over_nats(
        &client,
        &subjects,
        instance.as_deref(),
        callee,
        Bytes::from(payload),
        Some(options.timeout),
    )
    .await;
    let _ = client.flush().await;
    match outcome {
        Ok(body) => {
            match serde_json::from_slice::<Value>(&body) {
                Ok(value) => print_stdout(pretty(&value).as_bytes(), true),
                Err(_) => print_stdout(&body, true),
            }
            EXIT_OK
        }
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
