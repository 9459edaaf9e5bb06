//! How a payload is encoded on the wire, and how a call's encodings are
//! agreed: the caller names the encoding of its input and, in order of
//! preference, the encodings it accepts for the output; the action's types
//! say what it takes and produces (see [`crate::payload`]).
//!
//! The names are the snake_case ones Strike48's Matrix SDK uses (`json`,
//! `raw_bytes`, `json_lines`, `msgpack`, `protobuf`, `arrow_ipc`,
//! `parquet`); every text form (manifest, command line, stdio, errors) uses
//! them. [`Encoding::parse`] also takes a few aliases and MIME types.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One encoding of a payload.
///
/// ```
/// use spoke::Encoding;
/// assert_eq!(Encoding::parse("arrow").unwrap(), Encoding::ArrowIpc);
/// assert_eq!(Encoding::parse("application/msgpack").unwrap(), Encoding::Msgpack);
/// assert_eq!(Encoding::JsonLines.to_string(), "json_lines");
/// assert_eq!(Encoding::Parquet.mime(), "application/vnd.apache.parquet");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// UTF-8 JSON (the default of every call).
    Json,
    /// Bytes as they are, with no structure Spoke knows of.
    RawBytes,
    /// JSON Lines: one JSON value per line, each ended by `\n`.
    JsonLines,
    /// MessagePack, structs as maps of their field names.
    Msgpack,
    /// A Protocol Buffers message (the manifest names its type).
    Protobuf,
    /// The Arrow IPC stream format (`application/vnd.apache.arrow.stream`).
    ArrowIpc,
    /// A Parquet file.
    Parquet,
}

impl Encoding {
    /// Every encoding, in the order of their wire numbers.
    pub const ALL: [Encoding; 7] = [
        Encoding::Json,
        Encoding::RawBytes,
        Encoding::JsonLines,
        Encoding::Msgpack,
        Encoding::Protobuf,
        Encoding::ArrowIpc,
        Encoding::Parquet,
    ];

    /// Its name: `json`, `raw_bytes`, `json_lines`, `msgpack`, `protobuf`,
    /// `arrow_ipc` or `parquet`.
    pub const fn name(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::RawBytes => "raw_bytes",
            Encoding::JsonLines => "json_lines",
            Encoding::Msgpack => "msgpack",
            Encoding::Protobuf => "protobuf",
            Encoding::ArrowIpc => "arrow_ipc",
            Encoding::Parquet => "parquet",
        }
    }

    /// Its MIME type, for `Content-Type` and `Accept`.
    pub const fn mime(self) -> &'static str {
        match self {
            Encoding::Json => "application/json",
            Encoding::RawBytes => "application/octet-stream",
            Encoding::JsonLines => "application/jsonl",
            Encoding::Msgpack => "application/msgpack",
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::ArrowIpc => "application/vnd.apache.arrow.stream",
            Encoding::Parquet => "application/vnd.apache.parquet",
        }
    }

    /// Whether its payloads are text a terminal can show (JSON, JSON Lines).
    pub const fn is_text(self) -> bool {
        matches!(self, Encoding::Json | Encoding::JsonLines)
    }

    /// Reads a name (case-insensitive, `-` for `_`), an alias (`raw`,
    /// `bytes`, `jsonl`, `ndjson`, `proto`, `arrow`, `pq`, `mpk`) or a
    /// MIME type (parameters such as `; charset=utf-8` are ignored).
    pub fn parse(text: &str) -> Result<Encoding, UnknownEncoding> {
        let word = text
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .replace('-', "_");
        let found = match word.as_str() {
            "json" | "application/json" | "text/json" => Encoding::Json,
            "raw_bytes" | "raw" | "bytes" | "binary" | "application/octet_stream" => {
                Encoding::RawBytes
            }
            "json_lines"
            | "jsonl"
            | "ndjson"
            | "jsonlines"
            | "application/jsonl"
            | "application/x_ndjson"
            | "application/x_jsonlines"
            | "application/jsonlines" => Encoding::JsonLines,
            "msgpack"
            | "messagepack"
            | "mpk"
            | "application/msgpack"
            | "application/x_msgpack"
            | "application/vnd.msgpack" => Encoding::Msgpack,
            "protobuf"
            | "proto"
            | "application/x_protobuf"
            | "application/protobuf"
            | "application/vnd.google.protobuf" => Encoding::Protobuf,
            "arrow_ipc" | "arrow" | "ipc" | "application/vnd.apache.arrow.stream" => {
                Encoding::ArrowIpc
            }
            "parquet" | "pq" | "application/vnd.apache.parquet" | "application/x_parquet" => {
                Encoding::Parquet
            }
            _ => return Err(UnknownEncoding(text.to_owned())),
        };
        Ok(found)
    }

    /// Reads a comma-separated list of encodings (an `Accept` header, a
    /// `--output-encoding` flag), skipping empty items and repeats. `*/*`
    /// (or `*`) stands for any: alone, it is the empty list (the action's
    /// preferred); after others, every encoding not named yet follows them.
    ///
    /// ```
    /// use spoke::Encoding;
    /// let list = Encoding::parse_list("arrow, json").unwrap();
    /// assert_eq!(list, [Encoding::ArrowIpc, Encoding::Json]);
    /// assert_eq!(Encoding::parse_list("*/*").unwrap(), []);
    /// assert_eq!(Encoding::parse_list("msgpack, */*").unwrap().len(), Encoding::ALL.len());
    /// ```
    pub fn parse_list(text: &str) -> Result<Vec<Encoding>, UnknownEncoding> {
        let mut list = Vec::new();
        let mut any = false;
        for item in text.split(',') {
            let item = item.split(';').next().unwrap_or_default().trim();
            if item.is_empty() {
                continue;
            }
            if item == "*/*" || item == "*" {
                any = true;
                continue;
            }
            let encoding = Encoding::parse(item)?;
            if !list.contains(&encoding) {
                list.push(encoding);
            }
        }
        if any && !list.is_empty() {
            for encoding in Encoding::ALL {
                if !list.contains(&encoding) {
                    list.push(encoding);
                }
            }
        }
        Ok(list)
    }

    /// `"json, msgpack"`, `"json or msgpack"`: a list for a message.
    pub fn join(list: &[Encoding], last: &str) -> String {
        let names: Vec<&str> = list.iter().map(|e| e.name()).collect();
        match names.as_slice() {
            [] => "nothing".to_owned(),
            [one] => (*one).to_owned(),
            [rest @ .., end] => format!("{} {last} {end}", rest.join(", ")),
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Encoding {
    type Err = UnknownEncoding;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Encoding::parse(s)
    }
}

/// A name that is no encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not an encoding: use json, raw_bytes, json_lines, msgpack, protobuf, arrow_ipc or parquet"
)]
pub struct UnknownEncoding(pub String);

/// The encodings an action takes and gives, the preferred first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionEncodings {
    /// Those its input may come in.
    pub input: &'static [Encoding],
    /// Those it can answer in.
    pub output: &'static [Encoding],
}

/// The `invalid_input` of an input in `given`, which `action` does not
/// take (it takes `taken`): `details.input_encoding` and
/// `details.supported`.
///
/// ```
/// use spoke::Encoding::*;
/// let e = spoke::encoding::input_refused("stats", Parquet, &[Json, Msgpack]);
/// assert_eq!(e.message(), "action `stats` takes json or msgpack input, not parquet");
/// ```
pub fn input_refused(action: &str, given: Encoding, taken: &[Encoding]) -> crate::ActionError {
    crate::ActionError::invalid_input(format!(
        "action `{action}` takes {} input, not {given}",
        Encoding::join(taken, "or")
    ))
    .with_details(serde_json::json!({ "input_encoding": given, "supported": taken }))
}

/// The output encoding of a call: the first of the caller's `accept` list
/// that the action produces; with no list, the action's preferred (its
/// first: JSON for a serde type). `None` when the caller's list names none
/// of them.
///
/// ```
/// use spoke::Encoding::*;
/// use spoke::encoding::negotiate;
/// assert_eq!(negotiate(&[], &[Json, Msgpack]), Some(Json));
/// assert_eq!(negotiate(&[ArrowIpc, Msgpack], &[Json, Msgpack]), Some(Msgpack));
/// assert_eq!(negotiate(&[], &[JsonLines, Json]), Some(JsonLines));
/// assert_eq!(negotiate(&[Json], &[RawBytes]), None);
/// ```
pub fn negotiate(accept: &[Encoding], produced: &[Encoding]) -> Option<Encoding> {
    if accept.is_empty() {
        return produced.first().copied();
    }
    accept.iter().copied().find(|e| produced.contains(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_and_mime_reads_back_as_itself() {
        for (i, e) in Encoding::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i, "ALL is in declaration order");
        }
        for e in Encoding::ALL {
            assert_eq!(Encoding::parse(e.name()), Ok(e));
            assert_eq!(Encoding::parse(e.mime()), Ok(e));
            assert_eq!(Encoding::parse(&e.name().to_uppercase()), Ok(e));
            let json = serde_json::to_value(e).unwrap();
            assert_eq!(json, e.name());
            assert_eq!(serde_json::from_value::<Encoding>(json).unwrap(), e);
        }
        assert_eq!(Encoding::parse("Arrow-IPC"), Ok(Encoding::ArrowIpc));
        assert_eq!(
            Encoding::parse("application/json; charset=utf-8"),
            Ok(Encoding::Json)
        );
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let e = Encoding::parse("yaml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "`yaml` is not an encoding: use json, raw_bytes, json_lines, msgpack, protobuf, arrow_ipc or parquet"
        );
        assert!(Encoding::parse_list("json, yaml").is_err());
    }

    #[test]
    fn lists_read_in_order_without_repeats() {
        assert_eq!(
            Encoding::parse_list("msgpack,json;q=0.5, msgpack").unwrap(),
            [Encoding::Msgpack, Encoding::Json]
        );
        assert_eq!(Encoding::parse_list("").unwrap(), []);
        assert_eq!(
            Encoding::join(&[Encoding::Json, Encoding::Msgpack], "or"),
            "json or msgpack"
        );
        assert_eq!(
            Encoding::join(
                &[Encoding::Json, Encoding::Msgpack, Encoding::Parquet],
                "or"
            ),
            "json, msgpack or parquet"
        );
    }

    #[test]
    fn the_callers_order_wins() {
        use Encoding::*;
        assert_eq!(negotiate(&[Msgpack, Json], &[Json, Msgpack]), Some(Msgpack));
        assert_eq!(negotiate(&[], &[JsonLines, Json]), Some(JsonLines));
        assert_eq!(negotiate(&[], &[ArrowIpc, Parquet]), Some(ArrowIpc));
        assert_eq!(negotiate(&[Parquet], &[Json]), None);
    }
}
