//! Property tests of the stdio transport's decoders of what the host writes:
//! the line reader (any bytes in any chunks), a line into a request, and
//! LibreFang's frames and params. No panic on any input, and every error says
//! what was wrong and where (a field, a frame, a position in the line; the
//! session prefixes the line number).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use proptest::prelude::*;
use serde_json::Value;
use tokio::io::{AsyncRead, ReadBuf};

use super::line_reader::{Line, LineReader};
use super::request::{Json, Request, parse, plain};
use crate::error::ErrorCode;
use crate::props::{config, json, key, mangled, text};

/// Input handed over in these chunks, one per read.
struct Chunks(VecDeque<Vec<u8>>);

impl AsyncRead for Chunks {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(mut chunk) = self.0.pop_front() {
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            if n < chunk.len() {
                self.0.push_front(chunk.split_off(n));
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// `bytes` cut at `cuts` into non-empty chunks.
fn chunked(bytes: &[u8], cuts: &[prop::sample::Index]) -> Chunks {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    at.extend([0, bytes.len()]);
    at.sort_unstable();
    at.dedup();
    Chunks(at.windows(2).map(|w| bytes[w[0]..w[1]].to_vec()).collect())
}

/// Every line the reader gives, to the end (it never waits on `Chunks`).
fn read_all(input: Chunks, limit: usize) -> Vec<Line> {
    let mut reader = LineReader::new(input, limit);
    let mut lines = Vec::new();
    while let Some(line) = reader
        .next()
        .now_or_never()
        .expect("in-memory input never waits")
        .expect("in-memory input never fails")
    {
        lines.push(line);
    }
    lines
}

/// What the contract says the lines of `input` are: split at `\n`, the
/// piece after the last `\n` a line only when not empty; longer than
/// `limit` (counting a `\r`) reported as too long; a `\r` before the `\n`
/// dropped; numbered from 1.
fn lines_of(input: &[u8], limit: usize) -> Vec<Line> {
    let mut pieces: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    if pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop();
    }
    (1..)
        .zip(pieces)
        .map(|(number, piece)| {
            if piece.len() > limit {
                Line::TooLong { number }
            } else {
                let bytes = piece.strip_suffix(b"\r").unwrap_or(piece).to_vec();
                Line::Data { number, bytes }
            }
        })
        .collect()
}

/// Bytes rich in line ends.
fn input_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            6 => any::<u8>(),
            2 => Just(b'\n'),
            1 => Just(b'\r'),
            2 => Just(b'x'),
        ],
        0..400,
    )
}

/// The keys of the frames a host sends the stdio transport.
const SPOKE_KEYS: &[&str] = &[
    "id",
    "action",
    "input",
    "deadline_ms",
    "metadata",
    "operator",
    "value",
];

/// Spoke's methods, and others.
const SPOKE_METHODS: &[&str] = &[
    "invoke",
    "invoke",
    "invoke",
    "resolve",
    "resolve",
    "cancel",
    "heartbeat",
    "ready_ack",
    "shutdown",
    "send",
    "nope",
];

/// What frames to make: their methods and the keys of their params.
#[derive(Clone, Copy)]
struct Protocol {
    methods: &'static [&'static str],
    keys: &'static [&'static str],
}

const SPOKE: Protocol = Protocol {
    methods: SPOKE_METHODS,
    keys: SPOKE_KEYS,
};

/// The text of a JSON object with these entries, repeated keys and all.
fn object_text(entries: &[(String, String)], spaced: bool) -> String {
    let sep = if spaced { " " } else { "" };
    let entries: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{}:{sep}{v}", Value::from(k.as_str())))
        .collect();
    format!("{{{sep}{}{sep}}}", entries.join(&format!(",{sep}")))
}

/// The text of an object with each of `keys` present half the time,
/// a few other entries (a key repeated now and then), in any order.
fn object_of(
    keys: &'static [&'static str],
    value: BoxedStrategy<String>,
) -> impl Strategy<Value = String> {
    let present: Vec<_> = keys
        .iter()
        .map(|&k| prop::option::weighted(0.5, (Just(k.to_owned()), value.clone())))
        .collect();
    let others = prop::collection::vec((key(keys), value), 0..3);
    (present, others, any::<bool>())
        .prop_flat_map(|(present, others, spaced)| {
            let entries: Vec<_> = present.into_iter().flatten().chain(others).collect();
            (Just(entries).prop_shuffle(), Just(spaced))
        })
        .prop_map(|(entries, spaced)| object_text(&entries, spaced))
}

/// A value of a field: text most of the time (most fields are strings),
/// or any JSON.
fn field(keys: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-z0-9_]{1,8}".prop_map(|t| Value::from(t).to_string()),
        2 => text().prop_map(|t| Value::from(t).to_string()),
        2 => json(keys).prop_map(|v| v.to_string()),
    ]
    .boxed()
}

/// `params`: an object of the protocol's keys (whose values may be objects
/// of them too), or any JSON.
fn params(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    let value = prop_oneof![
        6 => field(keys),
        1 => object_of(keys, field(keys)),
    ];
    prop_oneof![
        6 => object_of(keys, value.boxed()),
        1 => json(keys).prop_map(|v| v.to_string()),
    ]
}

/// A frame's text: mostly a `method` of the protocol and `params`, and now
/// and then no `method`, a repeated one, one that is not a string, other
/// keys; in any order.
fn frame(protocol: Protocol) -> impl Strategy<Value = String> {
    let method = prop_oneof![
        15 => prop::sample::select(protocol.methods).prop_map(|m| Value::from(m).to_string()),
        1 => json(protocol.keys).prop_map(|v| v.to_string()),
    ]
    .boxed();
    let entry = |name: &'static str, value: BoxedStrategy<String>| {
        value.prop_map(move |v| (name.to_owned(), v))
    };
    let entries = (
        prop::option::weighted(0.95, entry("method", method.clone())),
        prop::option::weighted(0.9, entry("params", params(protocol.keys).boxed())),
        prop::collection::vec(
            prop_oneof![
                1 => entry("method", method),
                2 => entry("params", params(protocol.keys).boxed()),
                3 => (key(protocol.keys), json(protocol.keys).prop_map(|v| v.to_string())),
            ],
            0..2,
        ),
    );
    (entries, any::<bool>())
        .prop_flat_map(|((method, params, others), spaced)| {
            let entries: Vec<_> = method.into_iter().chain(params).chain(others).collect();
            (Just(entries).prop_shuffle(), Just(spaced))
        })
        .prop_map(|(entries, spaced)| object_text(&entries, spaced))
}

/// An `invoke` or a `resolve` with its params well-formed, mostly.
fn invocation() -> impl Strategy<Value = String> {
    let mostly = |good: BoxedStrategy<Value>| {
        prop_oneof![6 => good, 1 => json(SPOKE_KEYS)].prop_map(|v| v.to_string())
    };
    let name = || mostly("[a-z][a-z0-9_]{0,8}".prop_map(Value::from).boxed());
    let common = (
        mostly("[a-z0-9-]{1,8}".prop_map(Value::from).boxed()),
        prop::option::of(mostly(any::<u64>().prop_map(Value::from).boxed())),
        prop::option::of(mostly(
            prop::collection::btree_map("[a-z_]{1,6}", "[ -~]{0,6}", 0..3)
                .prop_map(|m| serde_json::json!(m))
                .boxed(),
        )),
    );
    let call = prop_oneof![
        (
            name(),
            prop::option::of(json(SPOKE_KEYS).prop_map(|v| v.to_string()))
        )
            .prop_map(|(action, input)| {
                let mut params = vec![("action".to_owned(), action)];
                params.extend(input.map(|i| ("input".to_owned(), i)));
                ("invoke", params)
            }),
        (name(), mostly(text().prop_map(Value::from).boxed())).prop_map(|(operator, value)| {
            (
                "resolve",
                vec![
                    ("operator".to_owned(), operator),
                    ("value".to_owned(), value),
                ],
            )
        }),
    ];
    (call, common)
        .prop_flat_map(|((method, mut params), (id, deadline, metadata))| {
            params.push(("id".to_owned(), id));
            params.extend(deadline.map(|d| ("deadline_ms".to_owned(), d)));
            params.extend(metadata.map(|m| ("metadata".to_owned(), m)));
            (Just(method), Just(params).prop_shuffle(), any::<bool>())
        })
        .prop_map(|(method, params, params_first)| {
            let method = ("method".to_owned(), Value::from(method).to_string());
            let params = ("params".to_owned(), object_text(&params, false));
            let frame = if params_first {
                [params, method]
            } else {
                [method, params]
            };
            object_text(&frame, false)
        })
}

/// A line: a frame, one mangled, any bytes, or blank.
fn line() -> impl Strategy<Value = Vec<u8>> {
    let frame = || prop_oneof![frame(SPOKE), invocation()].prop_map(String::into_bytes);
    prop_oneof![
        4 => frame(),
        4 => mangled(frame()),
        1 => "[ \t\r]{0,3}".prop_map(String::into_bytes),
    ]
}

/// A line error that says what was wrong: about a named field or method
/// (in backticks), the JSON syntax at a position, or the line not being an
/// object.
fn assert_clear(error: &str) -> Result<(), TestCaseError> {
    let named = error.contains('`');
    let syntax = error.starts_with("not valid JSON: ") && error.contains(" column ");
    let shape = error.starts_with("expected a JSON object, got ");
    prop_assert!(named || syntax || shape, "unclear: {:?}", error);
    prop_assert!(!error.contains('\n'), "one line: {:?}", error);
    Ok(())
}

/// A request with the JSON text it found in the line parsed into a `Value`
/// and written back, as the plain parse has it, so the two compare.
fn normal(request: Request, line: &[u8]) -> Request {
    crate::stdio::request::tests::map_json(request, |json| match json {
        Json::In(range) => {
            let value: Value = serde_json::from_slice(&line[range]).expect("JSON text");
            Json::Copy(value.to_string())
        }
        other => other,
    })
}

proptest! {
    #![proptest_config(config())]

    /// Any bytes, cut anywhere, any limit: the lines the contract says, no
    /// error, no panic.
    #[test]
    fn the_line_reader_reads_the_lines_the_contract_says(
        input in input_bytes(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        limit in prop_oneof![0usize..48, Just(usize::MAX)],
    ) {
        prop_assert_eq!(read_all(chunked(&input, &cuts), limit), lines_of(&input, limit));
    }

    /// Frames split at arbitrary chunk boundaries decode as they do whole.
    #[test]
    fn frames_in_chunks_decode_as_whole(
        frames in prop::collection::vec(prop_oneof![frame(SPOKE), invocation()], 1..6),
        crlf in any::<bool>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..16),
    ) {
        let input = frames.join(if crlf { "\r\n" } else { "\n" });
        let lines = read_all(chunked(input.as_bytes(), &cuts), usize::MAX);
        prop_assert_eq!(lines.len(), frames.len());
        for ((line, frame), number) in lines.into_iter().zip(&frames).zip(1..) {
            let Line::Data { number: n, bytes } = line else {
                return Err(TestCaseError::fail("no line is too long"));
            };
            prop_assert_eq!(n, number);
            prop_assert_eq!(parse(&bytes), parse(frame.as_bytes()));
        }
    }

    /// Any line: a request, nothing (blank), or an error that says what
    /// was wrong; an invocation refused for its params is refused with
    /// `invalid_input` naming the param.
    #[test]
    fn any_line_is_a_request_or_a_clear_error(line in line()) {
        match parse(&line) {
            Ok(None) => prop_assert!(line.trim_ascii().is_empty()),
            Ok(Some(Request::Reject { id, error })) => {
                prop_assert!(!id.is_empty());
                prop_assert_eq!(error.code(), ErrorCode::InvalidInput);
                prop_assert!(error.message().contains('`'), "{}", error);
            }
            Ok(Some(Request::Start { id, call, .. })) => {
                prop_assert!(!id.is_empty() && !call.name().is_empty());
            }
            Ok(Some(_)) => {}
            Err(error) => assert_clear(&error)?,
        }
    }

    /// The one pass that keeps JSON text and the plain parse through a
    /// `Value` agree on every frame: the same request, or the same error.
    #[test]
    fn one_pass_and_plain_parsing_agree(frame in prop_oneof![frame(SPOKE), invocation()]) {
        let line = frame.as_bytes();
        let one_pass = parse(line).map(|r| r.map(|r| normal(r, line)));
        let plain = plain(line).map(|r| Some(normal(r, line)));
        prop_assert_eq!(one_pass, plain);
    }
}

mod librefang {
    use proptest::prelude::*;
    use serde::Deserialize;
    use serde::de::DeserializeOwned;
    use serde_json::Value;

    use super::{Protocol, field, frame, object_of};
    use crate::connector::Input;
    use crate::decode::decode;
    use crate::error::ErrorCode;
    use crate::props::{config, json, mangled, text};
    use crate::stdio::librefang::{
        Command, Content, InteractiveParams, LibreFangEvent, SendParams, StreamEndParams,
    };

    /// The keys of LibreFang's params.
    const KEYS: &[&str] = &[
        "channel_id",
        "text",
        "content",
        "thread_id",
        "user",
        "platform_id",
        "display_name",
        "librefang_user",
        "message_id",
        "reaction",
        "message",
        "buttons",
        "label",
        "stream_id",
        "user_id",
        "user_name",
        "is_typing",
        "qr_code",
        "status",
    ];

    /// LibreFang's methods, commands and events, and others.
    const METHODS: &[&str] = &[
        "send",
        "typing",
        "reaction",
        "interactive",
        "stream_start",
        "stream_delta",
        "stream_end",
        "ready_ack",
        "heartbeat",
        "shutdown",
        "ready",
        "message",
        "qr_ready",
        "qr_status",
        "error",
        "invoke",
    ];

    const LIBREFANG: Protocol = Protocol {
        methods: METHODS,
        keys: KEYS,
    };

    /// `{"FileData": ...}` of any shape: bytes, numbers out of range,
    /// other keys.
    fn file_data() -> impl Strategy<Value = Value> {
        (
            prop::collection::vec(
                prop_oneof![
                    8 => any::<u8>().prop_map(Value::from),
                    1 => json(KEYS),
                ],
                0..8,
            ),
            prop::option::of(text()),
            prop::collection::btree_map("[a-z_]{1,9}", json(KEYS), 0..2),
        )
            .prop_map(|(data, filename, other)| {
                let mut file: serde_json::Map<String, Value> = other.into_iter().collect();
                file.insert("data".into(), Value::Array(data));
                if let Some(name) = filename {
                    file.insert("filename".into(), name.into());
                }
                serde_json::json!({ "FileData": file })
            })
    }

    fn content() -> impl Strategy<Value = Value> {
        prop_oneof![
            text().prop_map(|t| serde_json::json!({ "Text": t })),
            file_data(),
            json(KEYS),
        ]
    }

    /// The string `method` of a frame (the last one, which counts), and
    /// whether its `params` are an object.
    fn method_of(frame: &[u8]) -> Option<(String, bool)> {
        // The frame is decoded before what trails it is found wrong.
        let mut values = serde_json::Deserializer::from_slice(frame).into_iter::<Value>();
        let value = values.next()?.ok()?;
        let method = value.get("method")?.as_str()?.to_owned();
        Some((method, value.get("params").is_some_and(Value::is_object)))
    }

    /// A frame decoded as `T`: or an error that names the frame's method
    /// (and the path of a bad field in its params), or the `method` it
    /// lacks, or says where in the text the JSON is broken.
    fn assert_decodes<T: DeserializeOwned>(frame: &[u8]) -> Result<Option<T>, TestCaseError> {
        let error = match serde_json::from_slice::<T>(frame) {
            Ok(t) => return Ok(Some(t)),
            Err(e) => e,
        };
        let message = error.to_string();
        prop_assert!(
            !message.contains("FrameIn"),
            "an internal name: {}",
            message
        );
        match method_of(frame) {
            Some((method, object)) if error.is_data() => {
                prop_assert!(message.contains(&format!("`{method}`")), "{}", message);
                let about_params = message.strip_prefix(&format!("`{method}` params: "));
                if let (Some(about_params), true) = (about_params, object) {
                    prop_assert!(
                        about_params.starts_with("at ")
                            || about_params.starts_with("missing field `"),
                        "which field? {}",
                        message
                    );
                }
            }
            _ if error.is_data() => {
                prop_assert!(message.contains("`method`"), "{}", message);
            }
            _ => prop_assert!(message.contains(" column "), "{}", message),
        }
        Ok(None)
    }

    proptest! {
        #![proptest_config(config())]

        /// Any frame, or one mangled: a command or an event (the same as
        /// from the frame's `Value`), or an error that names the frame's
        /// method and the bad field (or the `method` it lacks, or where the
        /// JSON breaks); what decodes is written back as the same frame.
        #[test]
        fn frames_decode_or_name_their_method(
            frame in prop_oneof![
                frame(LIBREFANG).prop_map(String::into_bytes),
                mangled(frame(LIBREFANG).prop_map(String::into_bytes)),
            ],
        ) {
            // From text as from the frame's `Value`.
            let value = serde_json::from_slice::<Value>(&frame).ok();
            let via_value = |v: &Value| serde_json::from_value::<Command>(v.clone()).ok();
            prop_assert_eq!(
                serde_json::from_slice::<Command>(&frame).ok(),
                value.as_ref().and_then(via_value)
            );
            if let Some(command) = assert_decodes::<Command>(&frame)? {
                let again: Command = serde_json::from_value(serde_json::to_value(&command).unwrap()).unwrap();
                prop_assert_eq!(again, command);
            }
            if let Some(event) = assert_decodes::<LibreFangEvent>(&frame)? {
                let again: LibreFangEvent = serde_json::from_value(event.to_frame()).unwrap();
                prop_assert_eq!(again, event);
            }
        }

        /// Any content: read alike from text and from a `Value`, and what
        /// is read is written back as itself.
        #[test]
        fn content_reads_alike_and_writes_back(value in content()) {
            let from_text = serde_json::from_str::<Content>(&value.to_string());
            let from_value = Content::deserialize(&value);
            match (from_text, from_value) {
                (Ok(a), Ok(b)) => {
                    prop_assert_eq!(&a, &b);
                    let again: Content = serde_json::from_value(serde_json::to_value(&a).unwrap()).unwrap();
                    prop_assert_eq!(again, a);
                }
                (Err(a), Err(b)) => {
                    prop_assert!(!a.to_string().is_empty() && !b.to_string().is_empty());
                }
                (a, b) => prop_assert!(false, "{value}: {a:?} from text, {b:?} from a value"),
            }
        }

        /// Any params of a LibreFang command, as the stdio transport decodes
        /// them (straight from the line into the action's input): the
        /// params, or `invalid_input` at the path of the bad field.
        #[test]
        fn command_params_decode_or_fail_at_a_path(
            params in object_of(KEYS, prop_oneof![
                4 => field(KEYS),
                1 => content().prop_map(|c| c.to_string()),
                1 => object_of(KEYS, field(KEYS)),
                1 => prop::collection::vec(prop::collection::vec(object_of(KEYS, field(KEYS)), 0..3), 0..3)
                    .prop_map(|rows| format!("[{}]", rows.iter().map(|r| format!("[{}]", r.join(","))).collect::<Vec<_>>().join(","))),
            ].boxed()),
        ) {
            let input = || Input::Bytes(params.as_bytes());
            let errors = [
                decode::<SendParams>(input()).err(),
                decode::<InteractiveParams>(input()).err(),
                decode::<StreamEndParams>(input()).err(),
            ];
            for e in errors.into_iter().flatten() {
                prop_assert_eq!(e.code(), ErrorCode::InvalidInput);
                let path = e.details().and_then(|d| d["path"].as_str()).unwrap_or_default();
                prop_assert!(path.starts_with('$'), "{}", e);
                prop_assert!(e.message().starts_with(&format!("{path}: ")), "{}", e);
            }
        }
    }
}
