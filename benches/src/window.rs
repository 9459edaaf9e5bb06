//! The two load shapes of the transport benchmarks:
//!
//! - [`drive`]: one link (a stream, a pipe) with up to `window` calls in
//!   flight: a new call goes out each time an answer comes back;
//! - [`closed_loop`]: `workers` callers, each making one call at a time
//!   (unary RPCs sharing one connection).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::stats::Run;

/// A link calls travel over, identified by number.
pub trait Link {
    /// A new round starts: call ids start from 0 again. Links whose peer
    /// remembers request ids (a Spoke connector ignores an Invoke whose id it
    /// has answered in the session) make them unique here.
    fn new_round(&mut self) {}
    /// Sends call `id`.
    fn send(&mut self, id: u64) -> impl Future<Output = ()>;
    /// Waits for the next answer; its call's id.
    fn recv(&mut self) -> impl Future<Output = u64>;
}

/// Makes `calls` calls over `link`, `window` at a time.
pub async fn drive<L: Link>(link: &mut L, calls: u64, window: usize) -> Run {
    link.new_round();
    let mut sent_at = vec![None; calls as usize];
    let mut latencies = Vec::with_capacity(calls as usize);
    let started = Instant::now();
    let mut next = 0u64;
    while next < calls && (next as usize) < window {
        sent_at[next as usize] = Some(Instant::now());
        link.send(next).await;
        next += 1;
    }
    let mut done = 0u64;
    while done < calls {
        let id = link.recv().await;
        let at = sent_at
            .get_mut(id as usize)
            .and_then(Option::take)
            .unwrap_or_else(|| panic!("an answer for call {id}, which is not in flight"));
        latencies.push(at.elapsed());
        done += 1;
        if next < calls {
            sent_at[next as usize] = Some(Instant::now());
            link.send(next).await;
            next += 1;
        }
    }
    Run {
        calls,
        elapsed: started.elapsed(),
        latencies,
    }
}

/// Makes `calls` calls with `workers` concurrent callers, each awaiting
/// `call(id)` before making its next.
pub async fn closed_loop<F, Fut>(calls: u64, workers: usize, call: F) -> Run
where
    F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let next = Arc::clone(&next);
            let call = call.clone();
            tokio::spawn(async move {
                let mut latencies: Vec<Duration> = Vec::new();
                loop {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    if id >= calls {
                        return latencies;
                    }
                    let at = Instant::now();
                    call(id).await;
                    latencies.push(at.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(calls as usize);
    for task in tasks {
        latencies.extend(task.await.expect("a caller panicked"));
    }
    Run {
        calls,
        elapsed: started.elapsed(),
        latencies,
    }
}
