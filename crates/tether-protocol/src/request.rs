//! Client requests: `{"id": 1, "op": "subscribe", "channel": "chat:lobby"}`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::codes::ErrorCode;
use crate::push::StreamPosition;
use crate::reply::ErrorBody;

/// A client request: an `id` chosen by the client, echoed in the reply, and
/// what to do.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Request {
    /// Chosen by the client; echoed in the reply.
    pub id: u64,
    /// What to do (its `op` and fields sit beside `id`).
    #[serde(flatten)]
    pub command: Command,
}

/// The operations a client can ask for, tagged by `op`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Authenticates the session with a token; optional while anonymous
    /// access is on, where it only reports the client id.
    Connect {
        /// A JWT (HS256, RS256 or ES256).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    /// Subscribes to a channel, optionally recovering from a position.
    Subscribe {
        /// Channel name, `namespace:name` or `name`.
        channel: String,
        /// Where the client left off; missed publications come in the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recover: Option<StreamPosition>,
    },
    /// Leaves a channel.
    Unsubscribe {
        /// Channel name.
        channel: String,
    },
    /// Publishes JSON data to a channel.
    Publish {
        /// Channel name.
        channel: String,
        /// Any JSON value, kept verbatim.
        data: Box<RawValue>,
        /// A retried publish with the same key (within the dedup window) is
        /// acknowledged with the original offset and not delivered again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
        /// What the publication is about, for `latest-per-key` namespaces: a
        /// subscriber whose queue is full gets only the newest per key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// Who is subscribed to a channel.
    Presence {
        /// Channel name.
        channel: String,
    },
    /// Recent publications of a channel.
    History {
        /// Channel name.
        channel: String,
        /// At most this many, newest last (default: all retained).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    /// Liveness check; the reply is empty.
    Ping,
}

/// Every field any request may carry; [`Request::parse`] checks which belong.
/// (serde's tagged enums buffer their input, which `RawValue` cannot survive.)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRequest {
    id: Option<u64>,
    op: Option<String>,
    channel: Option<String>,
    recover: Option<StreamPosition>,
    data: Option<Box<RawValue>>,
    idempotency_key: Option<String>,
    key: Option<String>,
    token: Option<String>,
    limit: Option<usize>,
}

/// A request that could not be parsed: the id to answer (0 if none) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The request's id, when it had one.
    pub id: u64,
    /// The error to send back.
    pub error: ErrorBody,
}

impl Request {
    /// A request with `id`.
    pub fn new(id: u64, command: Command) -> Self {
        Self { id, command }
    }

    /// Parses one request (a WebSocket text frame, say).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let wire: WireRequest = serde_json::from_str(text).map_err(|e| {
            // Salvage the id so the error reply reaches the right request.
            let id = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| v.get("id").and_then(|id| id.as_u64()))
                .unwrap_or(0);
            ParseError {
                id,
                error: ErrorCode::BadRequest.body(e),
            }
        })?;
        let id = wire.id.ok_or(ParseError {
            id: 0,
            error: ErrorCode::BadRequest.body("missing id"),
        })?;
        let fail = |code: ErrorCode, message: String| ParseError {
            id,
            error: code.body(message),
        };
        let op = wire
            .op
            .ok_or_else(|| fail(ErrorCode::BadRequest, "missing op".into()))?;
        let channel = || {
            wire.channel
                .clone()
                .ok_or_else(|| fail(ErrorCode::BadRequest, format!("{op} needs a channel")))
        };
        let command = match op.as_str() {
            "connect" => Command::Connect { token: wire.token },
            "subscribe" => Command::Subscribe {
                channel: channel()?,
                recover: wire.recover,
            },
            "unsubscribe" => Command::Unsubscribe {
                channel: channel()?,
            },
            "publish" => Command::Publish {
                channel: channel()?,
                data: wire
                    .data
                    .ok_or_else(|| fail(ErrorCode::BadRequest, "publish needs data".into()))?,
                idempotency_key: wire.idempotency_key,
                key: wire.key,
            },
            "presence" => Command::Presence {
                channel: channel()?,
            },
            "history" => Command::History {
                channel: channel()?,
                limit: wire.limit,
            },
            "ping" => Command::Ping,
            other => return Err(fail(ErrorCode::UnknownOp, format!("unknown op {other:?}"))),
        };
        Ok(Self { id, command })
    }

    /// The request as JSON text, as a client sends it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("requests serialise")
    }

    /// The channel the request acts on, if it names one.
    pub fn channel(&self) -> Option<&str> {
        match &self.command {
            Command::Subscribe { channel, .. }
            | Command::Unsubscribe { channel }
            | Command::Publish { channel, .. }
            | Command::Presence { channel }
            | Command::History { channel, .. } => Some(channel),
            Command::Connect { .. } | Command::Ping => None,
        }
    }
}

/// How deeply `[` and `{` nest in a JSON text, which must be valid JSON (as
/// a parsed [`RawValue`] is): a scan that never recurses, so it is safe on
/// any depth.
pub fn nesting_depth(json: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for byte in json.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_subscribe_with_recovery() {
        let req = Request::parse(
            r#"{"id":7,"op":"subscribe","channel":"chat:lobby","recover":{"offset":5,"epoch":"e1"}}"#,
        )
        .unwrap();
        assert_eq!(req.id, 7);
        match req.command {
            Command::Subscribe { channel, recover } => {
                assert_eq!(channel, "chat:lobby");
                assert_eq!(
                    recover,
                    Some(StreamPosition {
                        offset: 5,
                        epoch: "e1".into()
                    })
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keeps_published_data_verbatim() {
        let req =
            Request::parse(r#"{"id":1,"op":"publish","channel":"c","data":{"b":[1, 2]}}"#).unwrap();
        match req.command {
            Command::Publish { data, .. } => assert_eq!(data.get(), r#"{"b":[1, 2]}"#),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn answers_bad_requests_with_their_id_and_code() {
        let err = Request::parse(r#"{"id":3,"op":"explode"}"#).unwrap_err();
        assert_eq!((err.id, err.error.code), (3, ErrorCode::UnknownOp as u16));
        let err = Request::parse(r#"{"id":4,"op":"subscribe"}"#).unwrap_err();
        assert_eq!((err.id, err.error.code), (4, ErrorCode::BadRequest as u16));
        let err = Request::parse(r#"{"id":5,"op":"ping","surprise":1}"#).unwrap_err();
        assert_eq!((err.id, err.error.code), (5, ErrorCode::BadRequest as u16));
        let err = Request::parse("not json").unwrap_err();
        assert_eq!((err.id, err.error.code), (0, ErrorCode::BadRequest as u16));
    }

    #[test]
    fn every_command_serialises_to_what_parse_reads_back() {
        let data = || RawValue::from_string(r#"{"x":[1,2]}"#.into()).unwrap();
        let commands = [
            Command::Connect { token: None },
            Command::Connect {
                token: Some("t".into()),
            },
            Command::Subscribe {
                channel: "a:b".into(),
                recover: Some(StreamPosition {
                    offset: 3,
                    epoch: "e".into(),
                }),
            },
            Command::Unsubscribe {
                channel: "a:b".into(),
            },
            Command::Publish {
                channel: "c".into(),
                data: data(),
                idempotency_key: Some("k1".into()),
                key: Some("EURUSD".into()),
            },
            Command::Presence {
                channel: "c".into(),
            },
            Command::History {
                channel: "c".into(),
                limit: Some(5),
            },
            Command::Ping,
        ];
        for (id, command) in commands.into_iter().enumerate() {
            let request = Request::new(id as u64, command);
            let text = request.to_json();
            let parsed = Request::parse(&text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            assert_eq!(parsed.to_json(), text);
        }
        let publish = Request::new(
            9,
            Command::Publish {
                channel: "c".into(),
                data: data(),
                idempotency_key: None,
                key: None,
            },
        );
        assert_eq!(
            publish.to_json(),
            r#"{"id":9,"op":"publish","channel":"c","data":{"x":[1,2]}}"#
        );
    }

    #[test]
    fn measures_nesting_without_recursing_and_ignores_brackets_in_strings() {
        assert_eq!(nesting_depth("1"), 0);
        assert_eq!(nesting_depth(r#"{"a":[1,{"b":[]}]}"#), 4);
        assert_eq!(nesting_depth(r#"["[[[{", "\\\"]]]"]"#), 1);
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(nesting_depth(&deep), 100_000);
    }
}
