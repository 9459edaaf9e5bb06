//! Path 4: the cost of one in-process invocation of echo through
//! `Instance::invoke` (context, lookup, JSON decode of the input, the
//! action, JSON encode of the output, panic and deadline supervision),
//! against the bare work: decoding the same input and encoding the same
//! output with serde_json.

use std::hint::black_box;
use std::time::Instant;

use serde::Deserialize;
use spoke::{Context, Input};

use crate::payload::{SIZES, echo_input};
use crate::report::Report;
use crate::stats::median;
use crate::{Opts, echo};

const PATH: &str = "4 in-process call";

#[derive(Deserialize)]
struct EchoIn {
    text: String,
}

pub async fn run(opts: &Opts, report: &mut Report) {
    eprintln!("{PATH}");
    let instance = echo::instance().await;
    let iterations = if opts.quick { 20_000 } else { 200_000 };
    for (size, size_name) in SIZES {
        let payload = echo_input(size);
        let (mut spoke_ns, mut raw_ns) = (Vec::new(), Vec::new());
        for round in 0..=opts.rounds {
            let started = Instant::now();
            for i in 0..iterations {
                let ctx = Context::builder(i.to_string(), "echo").build();
                let output = instance
                    .invoke("echo", Input::Bytes(black_box(&payload)), ctx)
                    .await
                    .expect("echo");
                black_box(output.bytes().len());
            }
            let spoke = started.elapsed().as_nanos() as f64 / iterations as f64;
            let started = Instant::now();
            for i in 0..iterations {
                black_box(i.to_string());
                let input: EchoIn = serde_json::from_slice(black_box(&payload)).expect("input");
                let output =
                    serde_json::to_string(&format!("{}{}", "", input.text)).expect("output");
                black_box(output.len());
            }
            let raw = started.elapsed().as_nanos() as f64 / iterations as f64;
            // Round 0 warms up.
            if round > 0 {
                spoke_ns.push(spoke);
                raw_ns.push(raw);
            }
        }
        report
            .add(PATH, size_name, "per call", "ns", median(&spoke_ns))
            .baseline(median(&raw_ns))
            .note("baseline: serde_json decode of the input and encode of the output alone");
    }
}
