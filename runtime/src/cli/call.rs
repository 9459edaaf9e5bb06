//! `<bin> call` and `<bin> resolve`: one action or search operator, run
//! in-process, its events on stderr, its output on stdout or in a file.
//!
//! An action's input may come in any encoding it takes (`--input-encoding`,
//! from the command line, stdin or `--input-file`) and its output in any it
//! gives (`--output-encoding`, a list, the preferred first). Text outputs
//! (JSON, JSON Lines) are printed; a binary one is written to
//! `--output-file`, or to stdout when that is not a terminal, never shown
//! raw on one.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::config::ConfigSource;
use crate::connector::Input;
use crate::context::Context;
use crate::encoding::{Encoding, negotiate};
use crate::registry::ConnectorType;

use super::payload_flags::{PayloadFlags, print_output};
use super::{EXIT_ACTION_ERROR, EXIT_USAGE, fail, start_instance};

/// The arguments of `call`.
#[derive(Debug, clap::Args)]
pub struct CallArgs {
    /// The action's name.
    pub action: String,
    /// The input: a JSON object (or text in --input-encoding), or `-` to
    /// read it from stdin. Default `{}`.
    #[arg(conflicts_with = "input_file")]
    pub input: Option<String>,
    #[command(flatten)]
    pub payload: PayloadFlags,
    /// Give up after this long, e.g. `30s`, `500ms`.
    #[arg(long, value_parser = crate::duration::parse)]
    pub timeout: Option<Duration>,
}

/// What `call` or `resolve` runs.
pub(super) enum Target<'a> {
    Action(&'a CallArgs),
    Operator(&'a str, &'a str),
}

/// Runs `call`.
pub(super) async fn call(ty: Arc<ConnectorType>, source: ConfigSource, args: CallArgs) -> ExitCode {
    // A binary answer for a terminal is refused before the action runs.
    let answer = ty
        .action_with_encodings(&args.action)
        .and_then(|(_, encodings)| negotiate(args.payload.accept(), encodings.output));
    if let Err(why) = args.payload.check_terminal(answer) {
        return fail(EXIT_USAGE, format_args!("action `{}`: {why}", args.action));
    }
    run(ty, source, Target::Action(&args), args.timeout).await
}

/// Runs `resolve`.
pub(super) async fn resolve(
    ty: Arc<ConnectorType>,
    source: ConfigSource,
    operator: &str,
    value: &str,
    timeout: Option<Duration>,
) -> ExitCode {
    run(ty, source, Target::Operator(operator, value), timeout).await
}

async fn run(
    ty: Arc<ConnectorType>,
    source: ConfigSource,
    target: Target<'_>,
    timeout: Option<Duration>,
) -> ExitCode {
    let input = match &target {
        Target::Action(args) => match args.payload.read_input(args.input.as_deref()) {
            Ok(Some(bytes)) => bytes,
            Ok(None) if args.payload.input_encoding == Encoding::Json => b"{}".to_vec(),
            Ok(None) => Vec::new(),
            Err(why) => return fail(EXIT_USAGE, format_args!("{why}")),
        },
        Target::Operator(..) => Vec::new(),
    };
    let instance = match start_instance(&ty, &source).await {
        Ok(i) => i,
        Err(code) => return code,
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let printer = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if let Ok(line) = serde_json::to_string(&event) {
                eprintln!("event: {line}");
            }
        }
    });
    let name = match &target {
        Target::Action(args) => args.action.as_str(),
        Target::Operator(name, _) => name,
    };
    let mut ctx = Context::builder(format!("cli-{}", std::process::id()), name).events(tx);
    if let Some(t) = timeout {
        ctx = ctx.timeout(t);
    }
    if let Target::Action(args) = &target {
        ctx = ctx.accept(args.payload.accept().iter().copied());
    }
    let ctx = ctx.build();
    let interrupt = ctx.cancellation().clone();
    let on_ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            interrupt.cancel();
        }
    });
    let result = match &target {
        Target::Action(args) => {
            let input = match args.payload.input_encoding {
                Encoding::Json => Input::Bytes(&input),
                encoding => Input::Encoded {
                    encoding,
                    bytes: &input,
                },
            };
            instance.invoke(&args.action, input, ctx).await
        }
        Target::Operator(operator, value) => instance.resolve(operator, value, ctx).await,
    };
    on_ctrl_c.abort();
    drop(instance);
    // Events emitted before the result are already queued; an abandoned
    // blocking action may still hold a sender, so do not wait for it to close.
    let mut printer = printer;
    if tokio::time::timeout(Duration::from_millis(200), &mut printer)
        .await
        .is_err()
    {
        printer.abort();
    }
    let flags = match &target {
        Target::Action(args) => Some(&args.payload),
        Target::Operator(..) => None,
    };
    match result {
        Ok(output) => {
            let shown = match flags {
                Some(flags) => flags.write_output(output.encoding(), output.bytes()),
                None => print_output(output.encoding(), output.bytes()),
            };
            match shown {
                Ok(()) => ExitCode::SUCCESS,
                Err(why) => fail(EXIT_USAGE, format_args!("{why}")),
            }
        }
        Err(err) => {
            eprintln!("error[{}]: {}", err.code(), err.message());
            if let Some(details) = err.details() {
                eprintln!("details: {details}");
            }
            ExitCode::from(EXIT_ACTION_ERROR)
        }
    }
}
