//! One scenario's calls through the hub and what became of them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spoke_proto::v1::hub_client::HubClient;
use spoke_proto::v1::{InvokeRequest, instance_result};
use tonic::transport::Channel;

/// How late after its deadline a call may be answered.
pub const MARGIN: Duration = Duration::from_secs(1);

/// What became of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The action's output.
    Ok(String),
    /// The action's error, by code (a result, gRPC OK).
    ActionError(String),
    /// The hub's gRPC status.
    Status(tonic::Code),
    /// No answer in time.
    Hang,
}

impl Answer {
    /// A short name for the figures: `ok`, `error:<code>`, `status:<code>`, `hang`.
    pub fn name(&self) -> String {
        match self {
            Answer::Ok(_) => "ok".into(),
            Answer::ActionError(code) => format!("error:{code}"),
            Answer::Status(code) => format!("status:{code:?}"),
            Answer::Hang => "hang".into(),
        }
    }
}

/// The calls of a scenario.
#[derive(Debug, Default)]
pub struct Tally {
    answers: BTreeMap<String, usize>,
    calls: usize,
    late: usize,
    latest_over: Duration,
}

impl Tally {
    /// The tally of `answers`, the `n`th call's deadline being `deadline(n)`.
    pub fn of(
        answers: &[(Answer, Duration)],
        deadline: impl Fn(usize) -> Option<Duration>,
    ) -> Tally {
        let mut tally = Tally::default();
        for (n, (answer, elapsed)) in answers.iter().enumerate() {
            tally.record(answer, *elapsed, deadline(n));
        }
        tally
    }

    /// Counts one call: its answer and whether it came later than its
    /// deadline plus [`MARGIN`].
    pub fn record(&mut self, answer: &Answer, elapsed: Duration, deadline: Option<Duration>) {
        self.calls += 1;
        *self.answers.entry(answer.name()).or_default() += 1;
        if let Some(deadline) = deadline
            && *answer != Answer::Hang
        {
            let over = elapsed.saturating_sub(deadline);
            self.latest_over = self.latest_over.max(over);
            if over > MARGIN {
                self.late += 1;
            }
        }
    }

    /// How many calls got this answer (by [`Answer::name`]).
    pub fn count(&self, name: &str) -> usize {
        self.answers.get(name).copied().unwrap_or(0)
    }

    /// Prints the figures and asserts no call hung or came late.
    pub fn check(&self, scenario: &str) {
        eprintln!(
            "figures: {scenario}: {} calls, answers {:?}, hangs {}, late {} (latest {:?} past its deadline)",
            self.calls,
            self.answers,
            self.count("hang"),
            self.late,
            self.latest_over
        );
        assert_eq!(
            self.count("hang"),
            0,
            "{scenario}: calls hung: {:?}",
            self.answers
        );
        assert_eq!(
            self.late, 0,
            "{scenario}: calls answered after deadline + {MARGIN:?}"
        );
    }
}

/// A connected client of the hub at `url`.
pub async fn client(url: &str) -> HubClient<Channel> {
    let channel = Channel::from_shared(url.to_owned())
        .expect("hub url")
        .connect()
        .await
        .expect("connect to the hub");
    HubClient::new(channel)
}

/// Calls `action` of `connector` with `payload` and a `deadline` (as
/// `grpc-timeout`), giving up after `hang_limit`; the answer and how long
/// it took.
pub async fn call(
    client: &HubClient<Channel>,
    connector: &str,
    action: &str,
    payload: &str,
    deadline: Option<Duration>,
    hang_limit: Duration,
) -> (Answer, Duration) {
    let mut request = tonic::Request::new(InvokeRequest {
        connector: connector.to_owned(),
        action: action.to_owned(),
        payload: payload.as_bytes().to_vec().into(),
        ..Default::default()
    });
    if let Some(deadline) = deadline {
        request.set_timeout(deadline);
    }
    let mut client = client.clone();
    let started = Instant::now();
    let answered = tokio::time::timeout(hang_limit, client.invoke(request)).await;
    let elapsed = started.elapsed();
    let answer = match answered {
        Err(_) => Answer::Hang,
        Ok(Err(status)) => Answer::Status(status.code()),
        Ok(Ok(response)) => match response
            .into_inner()
            .results
            .first()
            .and_then(|r| r.outcome.clone())
        {
            Some(instance_result::Outcome::Payload(p)) => {
                Answer::Ok(String::from_utf8_lossy(&p).into_owned())
            }
            Some(instance_result::Outcome::Error(e)) => Answer::ActionError(e.code),
            None => Answer::ActionError("no outcome".into()),
        },
    };
    (answer, elapsed)
}

/// Runs `count` calls, at most `concurrency` at once, each made by
/// `make(n)`; their answers, in order.
pub async fn run_calls<F, Fut>(count: usize, concurrency: usize, make: F) -> Vec<(Answer, Duration)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = (Answer, Duration)> + Send + 'static,
{
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let make = Arc::new(make);
    let tasks: Vec<_> = (0..count)
        .map(|n| {
            let limit = Arc::clone(&limit);
            let make = Arc::clone(&make);
            tokio::spawn(async move {
                let _permit = limit.acquire_owned().await.expect("the limit stays open");
                make(n).await
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(count);
    for task in tasks {
        answers.push(task.await.expect("a call task"));
    }
    answers
}

/// Asserts the `faults` connector behind `url` serves a plain call at once:
/// `add` of `a` and `b` answers their sum.
pub async fn assert_serves(url: &str, a: u64, b: u64) {
    let client = client(url).await;
    let (answer, _) = call(
        &client,
        "faults",
        "add",
        &format!(r#"{{"a":{a},"b":{b}}}"#),
        None,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(answer, Answer::Ok((a + b).to_string()));
}
