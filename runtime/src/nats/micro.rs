//! The NATS micro service protocol (ADR-32, `io.nats.micro.v1`): what an
//! instance answers on `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` (each
//! bare, `.<name>` and `.<name>.<id>`), and the counters behind STATS.
//!
//! async-nats has a `service` module, and Spoke does not use it: an error
//! answer there has an empty body (a JSON body means answering "success"
//! with error headers, which STATS then does not count as an error), its
//! `stop` is not a drain, its verb task ends silently on one failed publish,
//! and it queue-subscribes every endpoint (ADR-32 lets an endpoint have
//! none, which an instance's own subjects want). This module is the small
//! part of the protocol those need: the three answers, in the shapes of
//! the jsm.go schemas `schemas/micro/v1/{ping,info,stats}_response.json`
//! (the tests check them against copies), and counters updated as each
//! answer is sent.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// The queue group of the endpoints every instance shares (ADR-32's
/// default).
pub const QUEUE_GROUP: &str = "q";

/// What identifies the service and this instance of it.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceInfo {
    /// The service's name (the connector's): `[A-Za-z0-9_-]+`.
    pub name: String,
    /// This instance's id, unique among the service's instances.
    pub id: String,
    /// The service's version (semver).
    pub version: String,
    /// What it does.
    pub description: String,
    /// Fixed facts about it (never changed while it runs).
    pub metadata: BTreeMap<String, String>,
}

/// One endpoint: a subject the instance answers on.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointInfo {
    /// Its name, unique in the service: `[A-Za-z0-9_-]+`.
    pub name: String,
    /// The subject (it may end in a wildcard).
    pub subject: String,
    /// Its queue group; `None`: every instance subscribed gets each
    /// request (an instance's own subjects).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_group: Option<String>,
    /// Fixed facts about it.
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct Counters {
    requests: u64,
    errors: u64,
    last_error: String,
    processing: Duration,
}

/// An endpoint and its counters.
#[derive(Debug)]
pub struct Endpoint {
    /// What INFO says of it.
    pub info: EndpointInfo,
    counters: Mutex<Counters>,
}

impl Endpoint {
    /// A new endpoint, nothing counted.
    pub fn new(info: EndpointInfo) -> Endpoint {
        Endpoint {
            info,
            counters: Mutex::default(),
        }
    }

    /// Counts an answer sent after `elapsed`; `error` is `Some("<code>:<message>")`
    /// for an error answer.
    pub fn record(&self, elapsed: Duration, error: Option<String>) {
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        c.requests += 1;
        c.processing += elapsed;
        if let Some(error) = error {
            c.errors += 1;
            c.last_error = error;
        }
    }

    /// The answers counted so far, and of those the errors.
    pub fn counts(&self) -> (u64, u64) {
        let c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        (c.requests, c.errors)
    }

    fn stats(&self) -> EndpointStats<'_> {
        let c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let total = c.processing.as_nanos().min(i64::MAX as u128) as i64;
        EndpointStats {
            name: &self.info.name,
            subject: &self.info.subject,
            queue_group: self.info.queue_group.as_deref(),
            num_requests: c.requests,
            num_errors: c.errors,
            last_error: c.last_error.clone(),
            processing_time: total,
            average_processing_time: if c.requests == 0 {
                0
            } else {
                total / c.requests as i64
            },
        }
    }
}

#[derive(Serialize)]
struct EndpointStats<'a> {
    name: &'a str,
    subject: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue_group: Option<&'a str>,
    num_requests: u64,
    num_errors: u64,
    last_error: String,
    processing_time: i64,
    average_processing_time: i64,
}

/// A service instance's answers to the `$SRV` verbs.
#[derive(Debug)]
pub struct Micro {
    info: ServiceInfo,
    /// When it started, RFC 3339 in UTC.
    started: String,
    endpoints: Vec<std::sync::Arc<Endpoint>>,
}

#[derive(Serialize)]
struct Answer<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    info: &'a ServiceInfo,
    #[serde(flatten)]
    more: T,
}

impl Micro {
    /// The service `info` with `endpoints`, started now.
    pub fn new(info: ServiceInfo, endpoints: Vec<std::sync::Arc<Endpoint>>) -> Micro {
        Micro {
            info,
            started: jiff::Timestamp::now().to_string(),
            endpoints,
        }
    }

    /// The service's description of itself.
    pub fn info(&self) -> &ServiceInfo {
        &self.info
    }

    /// Its endpoints.
    pub fn endpoints(&self) -> &[std::sync::Arc<Endpoint>] {
        &self.endpoints
    }

    /// When it started, RFC 3339 in UTC.
    pub fn started(&self) -> &str {
        &self.started
    }

    fn answer<T: Serialize>(&self, kind: &'static str, more: T) -> Bytes {
        let answer = Answer {
            kind,
            info: &self.info,
            more,
        };
        Bytes::from(serde_json::to_vec(&answer).unwrap_or_default())
    }

    /// The PING answer (`io.nats.micro.v1.ping_response`).
    pub fn ping(&self) -> Bytes {
        #[derive(Serialize)]
        struct Nothing {}
        self.answer("io.nats.micro.v1.ping_response", Nothing {})
    }

    /// The INFO answer (`io.nats.micro.v1.info_response`).
    pub fn info_answer(&self) -> Bytes {
        #[derive(Serialize)]
        struct Endpoints<'a> {
            endpoints: Vec<&'a EndpointInfo>,
        }
        let endpoints = self.endpoints.iter().map(|e| &e.info).collect();
        self.answer("io.nats.micro.v1.info_response", Endpoints { endpoints })
    }

    /// The STATS answer (`io.nats.micro.v1.stats_response`).
    pub fn stats(&self) -> Bytes {
        #[derive(Serialize)]
        struct Stats<'a> {
            started: &'a str,
            endpoints: Vec<EndpointStats<'a>>,
        }
        let endpoints = self.endpoints.iter().map(|e| e.stats()).collect();
        self.answer(
            "io.nats.micro.v1.stats_response",
            Stats {
                started: &self.started,
                endpoints,
            },
        )
    }

    /// Answers the verbs on `client` until `stop`. A failed publish is
    /// logged and the next request answered.
    pub async fn answer_verbs(
        self: std::sync::Arc<Self>,
        client: Client,
        stop: CancellationToken,
    ) -> Result<(), async_nats::SubscribeError> {
        let mut subscriptions = Vec::new();
        for verb in ["PING", "INFO", "STATS"] {
            for subject in [
                format!("$SRV.{verb}"),
                format!("$SRV.{verb}.{}", self.info.name),
                format!("$SRV.{verb}.{}.{}", self.info.name, self.info.id),
            ] {
                let subscriber = client.subscribe(subject).await?;
                subscriptions.push(subscriber.map(move |m| (verb, m)));
            }
        }
        let mut requests = futures_util::stream::select_all(subscriptions);
        tokio::spawn(async move {
            loop {
                let (verb, message) = tokio::select! {
                    () = stop.cancelled() => break,
                    next = requests.next() => match next {
                        Some(next) => next,
                        None => break,
                    },
                };
                let Some(reply) = message.reply else { continue };
                let answer = match verb {
                    "PING" => self.ping(),
                    "INFO" => self.info_answer(),
                    _ => self.stats(),
                };
                if let Err(e) = client.publish(reply, answer).await {
                    tracing::warn!(target: "spoke::nats", "answering $SRV.{verb}: {e}");
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::sync::Arc;

    #[test]
    fn answers_have_the_protocol_fields() {
        let endpoint = Arc::new(Endpoint::new(EndpointInfo {
            name: "echo".into(),
            subject: "spoke.default.echo.echo".into(),
            queue_group: Some(QUEUE_GROUP.into()),
            metadata: BTreeMap::new(),
        }));
        let micro = Micro::new(
            ServiceInfo {
                name: "echo".into(),
                id: "echo-1".into(),
                version: "0.1.0".into(),
                description: "Echo".into(),
                metadata: BTreeMap::from([("a".into(), "b".into())]),
            },
            vec![endpoint.clone()],
        );
        endpoint.record(Duration::from_micros(30), None);
        endpoint.record(Duration::from_micros(10), Some("404:no such thing".into()));
        let stats: Value = serde_json::from_slice(&micro.stats()).unwrap();
        assert_eq!(stats["type"], "io.nats.micro.v1.stats_response");
        assert_eq!(stats["id"], "echo-1");
        let e = &stats["endpoints"][0];
        assert_eq!(e["num_requests"], 2);
        assert_eq!(e["num_errors"], 1);
        assert_eq!(e["last_error"], "404:no such thing");
        assert_eq!(e["processing_time"], 40_000);
        assert_eq!(e["average_processing_time"], 20_000);
        let info: Value = serde_json::from_slice(&micro.info_answer()).unwrap();
        assert_eq!(info["endpoints"][0]["queue_group"], "q");
        assert_eq!(info["metadata"]["a"], "b");
        let ping: Value = serde_json::from_slice(&micro.ping()).unwrap();
        assert_eq!(ping["type"], "io.nats.micro.v1.ping_response");
        assert!(ping.get("endpoints").is_none());
    }
}
