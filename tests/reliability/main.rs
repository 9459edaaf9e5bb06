//! The reliability suite: faults injected into real processes (the `spoke`
//! hub, example connectors, a loopback TCP proxy), each scenario asserting
//! the hub's invariants and printing its figures (`figures:` lines, with
//! `--nocapture`).
//!
//! Invariants, checked by [`tally::Tally`] for every call a scenario makes:
//! every call is answered exactly once (a call's future yields one answer;
//! one that yields none within its deadline plus [`tally::MARGIN`], or
//! within the scenario's hang limit, is a *hang*); none is answered later
//! than its deadline plus the margin; and what each answer is (by code) is
//! the scenario's to assert. Around them: RSS and open fds of the hub back
//! to their baseline.
//!
//! The hostile-peer set is `tests/hub_hostile_peers.rs` and
//! `tests/hub_hostile_attach.rs`; the scenario counts here are the reduced
//! ones CI runs. `SPOKE_RELIABILITY_FULL=1 cargo test --release --test
//! reliability -- --nocapture --test-threads 1` runs the full counts (the
//! panic storm with 100,000 calls); `RELIABILITY.md` records one such run.

#[path = "../common/mod.rs"]
mod common;

mod faults;
mod restarts;
mod storms;
mod tally;
