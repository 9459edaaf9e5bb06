//! The payload flags of every `call` command (a connector binary's own, and
//! `spoke call` through a hub or NATS): the input's encoding and file, the
//! output encodings accepted and the file the output goes to; and how an
//! output is shown: JSON pretty-printed, JSON Lines as they are, binary
//! bytes to a file or a pipe, never raw on a terminal.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use crate::encoding::Encoding;

/// `--input-file`, `--input-encoding`, `--output-encoding`, `--output-file`.
///
/// ```
/// use clap::Parser;
/// use spoke::cli::payload_flags::PayloadFlags;
/// use spoke::Encoding;
///
/// #[derive(Parser)]
/// struct Call {
///     #[command(flatten)]
///     payload: PayloadFlags,
/// }
///
/// let call = Call::parse_from(["call", "--input-encoding", "msgpack", "--output-encoding", "arrow,json"]);
/// assert_eq!(call.payload.input_encoding, Encoding::Msgpack);
/// assert_eq!(call.payload.accept(), [Encoding::ArrowIpc, Encoding::Json]);
/// ```
#[derive(Debug, Clone, clap::Args)]
pub struct PayloadFlags {
    /// Read the input from this file (`-`: stdin), byte for byte.
    #[arg(long, value_name = "FILE")]
    pub input_file: Option<PathBuf>,
    /// How the input is encoded: json, msgpack, json_lines, raw_bytes,
    /// protobuf, arrow_ipc or parquet.
    #[arg(long, value_name = "ENCODING", default_value = "json", value_parser = parse_encoding)]
    pub input_encoding: Encoding,
    /// The output encodings you accept, the preferred first, e.g.
    /// `arrow_ipc,json`. Default: the action's preferred (its first).
    #[arg(long, value_name = "ENCODINGS", value_parser = parse_encodings)]
    pub output_encoding: Option<EncodingList>,
    /// Write the output to this file (replaced whole when the call
    /// succeeds) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output_file: Option<PathBuf>,
}

/// A parsed list of encodings (`--output-encoding`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodingList(pub Vec<Encoding>);

fn parse_encoding(text: &str) -> Result<Encoding, String> {
    Encoding::parse(text).map_err(|e| e.to_string())
}

fn parse_encodings(text: &str) -> Result<EncodingList, String> {
    Encoding::parse_list(text)
        .map(EncodingList)
        .map_err(|e| e.to_string())
}

impl PayloadFlags {
    /// The output encodings accepted, the preferred first (empty: the
    /// default).
    pub fn accept(&self) -> &[Encoding] {
        self.output_encoding.as_ref().map_or(&[], |l| &l.0)
    }

    /// The input's bytes: `--input-file` (`-`: stdin), else `text` (`-`:
    /// stdin); `None` when neither is given.
    pub fn read_input(&self, text: Option<&str>) -> Result<Option<Vec<u8>>, String> {
        let from_stdin = || {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map(|_| Some(bytes))
                .map_err(|e| format!("cannot read the input from stdin: {e}"))
        };
        match (&self.input_file, text) {
            (Some(path), _) if path.as_os_str() == "-" => from_stdin(),
            (Some(path), _) => std::fs::read(path)
                .map(Some)
                .map_err(|e| format!("cannot read the input file {}: {e}", path.display())),
            (None, Some("-")) => from_stdin(),
            (None, Some(text)) => Ok(Some(text.as_bytes().to_vec())),
            (None, None) => Ok(None),
        }
    }

    /// Refuses, before a call, an output that would be binary on a
    /// terminal: when `answer` (what the call will answer in, if known) or
    /// every encoding accepted is binary, there is no `--output-file` and
    /// stdout is a terminal.
    pub fn check_terminal(&self, answer: Option<Encoding>) -> Result<(), String> {
        let binary = match answer {
            Some(encoding) => !encoding.is_text(),
            None => !self.accept().is_empty() && self.accept().iter().all(|e| !e.is_text()),
        };
        if binary && self.output_file.is_none() && std::io::stdout().is_terminal() {
            let what = answer.map_or_else(
                || Encoding::join(self.accept(), "or"),
                |e| e.name().to_owned(),
            );
            return Err(format!(
                "the output will be {what}, which is binary: write it to a file (--output-file FILE) or pipe stdout"
            ));
        }
        Ok(())
    }

    /// Shows an output in `encoding`: to `--output-file` when given (saying
    /// so on stderr), else on stdout (see [`print_output`]).
    pub fn write_output(&self, encoding: Encoding, bytes: &[u8]) -> Result<(), String> {
        let Some(path) = &self.output_file else {
            return print_output(encoding, bytes);
        };
        super::replace_file::replace_file(path, bytes)
            .map_err(|e| format!("cannot write the output to {}: {e}", path.display()))?;
        eprintln!(
            "wrote {} bytes of {encoding} to {}",
            bytes.len(),
            path.display()
        );
        Ok(())
    }
}

/// Prints an output on stdout: JSON pretty-printed, JSON Lines as they
/// are, binary bytes as they are when stdout is not a terminal (an error
/// when it is). A closed pipe (`| head`) is not an error.
pub fn print_output(encoding: Encoding, bytes: &[u8]) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    let written = match encoding {
        Encoding::Json => match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(value) => serde_json::to_writer_pretty(&mut out, &value)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n")),
            Err(_) => out.write_all(bytes),
        },
        e if e.is_text() => out.write_all(bytes),
        binary => {
            if out.is_terminal() {
                return Err(format!(
                    "the output is {} bytes of {binary}, which is binary: not shown on a terminal; write it to a file (--output-file FILE) or pipe stdout",
                    bytes.len()
                ));
            }
            out.write_all(bytes)
        }
    };
    let _ = written.and_then(|()| out.flush());
    Ok(())
}
