//! The pub/sub wire protocol: JSON over WebSocket text frames. This module is the
//! one source that the server, the CLI, docs/PROTOCOL.md and the JS client follow.
//!
//! Every client request carries an `id` and gets exactly one reply with that id,
//! holding `result` or `error`. Server-initiated messages carry `push` instead.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A position in a channel's stream: the offset of the last publication seen and
/// the epoch of the history it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    /// Offset of the last publication the client saw (0: none yet).
    pub offset: u64,
    /// The channel's epoch; it changes whenever the channel's history is lost.
    pub epoch: String,
}

/// A client request: `{"id": 1, "op": "subscribe", "channel": "chat:lobby"}`.
#[derive(Debug)]
pub struct Request {
    /// Chosen by the client; echoed in the reply.
    pub id: u64,
    /// What to do.
    pub command: Command,
}

/// The operations a client can ask for.
#[derive(Debug)]
pub enum Command {
    /// Start the session (must come first once auth lands; optional for anonymous use).
    Connect {
        /// Reserved for authentication.
        token: Option<String>,
    },
    /// Subscribe to a channel, optionally recovering from a position.
    Subscribe {
        /// Channel name, `namespace:name` or `name`.
        channel: String,
        /// Where the client left off; missed publications come in the reply.
        recover: Option<StreamPosition>,
    },
    /// Leave a channel.
    Unsubscribe {
        /// Channel name.
        channel: String,
    },
    /// Publish JSON data to a channel.
    Publish {
        /// Channel name.
        channel: String,
        /// Any JSON value, kept verbatim.
        data: Box<RawValue>,
        /// A retried publish with the same key (within the dedup window) is
        /// acknowledged with the original offset and not delivered again.
        idempotency_key: Option<String>,
        /// What the publication is about, for `latest-per-key` namespaces:
        /// a slow subscriber gets only the newest queued publication per key.
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
    /// Parses one text frame.
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
}

/// One publication as clients see it.
#[derive(Debug, Clone, Serialize)]
pub struct Publication {
    /// Strictly increasing within the channel's epoch, starting at 1.
    pub offset: u64,
    /// The published JSON value.
    pub data: Box<RawValue>,
}

/// Server-initiated messages.
#[derive(Debug, Serialize)]
#[serde(tag = "push", rename_all = "snake_case")]
pub enum Push<'a> {
    /// A publication on a subscribed channel.
    Publication {
        /// Channel name.
        channel: &'a str,
        /// Offset within the channel.
        offset: u64,
        /// The published JSON value.
        data: &'a RawValue,
    },
    /// A client joined a channel with presence.
    Join {
        /// Channel name.
        channel: &'a str,
        /// Who joined.
        client: &'a str,
        /// Their user id, if they authenticated.
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<&'a str>,
    },
    /// A client left a channel with presence.
    Leave {
        /// Channel name.
        channel: &'a str,
        /// Who left.
        client: &'a str,
        /// Their user id, if they authenticated.
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<&'a str>,
    },
    /// The server is about to close the connection.
    Disconnect {
        /// A [`DisconnectCode`] number.
        code: u16,
        /// Human-readable reason.
        reason: &'a str,
        /// Whether the client should reconnect.
        reconnect: bool,
        /// Wait this long before reconnecting (spreads a server restart's
        /// reconnections over a window).
        #[serde(skip_serializing_if = "Option::is_none")]
        reconnect_after_ms: Option<u64>,
        /// For a slow consumer (4001): per subscribed channel, the position of
        /// the last publication written to this connection before it was cut
        /// off. Subscribing again with it as `recover` resumes without loss.
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        positions: BTreeMap<&'a str, StreamPosition>,
    },
}

/// A reply: `{"id": 1, "result": {...}}` or `{"id": 1, "error": {...}}`.
#[derive(Debug, Serialize)]
pub struct Reply<T: Serialize> {
    /// The request's id (0 when the request had none).
    pub id: u64,
    /// Present on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<T>,
    /// Present on failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// The body of an error reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable [`ErrorCode`] number.
    pub code: u16,
    /// Human-readable message.
    pub message: String,
}

/// Request errors. Numbers are stable: 100–199 are the client's fault and the
/// connection stays up; they never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    /// 100: the frame is not valid JSON or not a known request shape.
    BadRequest = 100,
    /// 101: the `op` is not one the server knows.
    UnknownOp = 101,
    /// 102: the channel name is empty, too long or has forbidden characters.
    BadChannel = 102,
    /// 103: the operation is not allowed (permissions, or clients may not publish).
    PermissionDenied = 103,
    /// 104: already subscribed to this channel.
    AlreadySubscribed = 104,
    /// 105: not subscribed to this channel.
    NotSubscribed = 105,
    /// 106: the connection has as many subscriptions as allowed.
    TooManySubscriptions = 106,
    /// 107: the feature is turned off for this namespace (history, presence).
    NotAvailable = 107,
    /// 108: the published data is larger than allowed.
    MessageTooLarge = 108,
    /// 109: too many requests; slow down.
    RateLimited = 109,
    /// 110: binary frames are not part of the protocol.
    BinaryNotSupported = 110,
    /// 111: a token is required, or the one given is malformed, expired or
    /// wrongly signed.
    Unauthorized = 111,
}

impl ErrorCode {
    /// The error body with the default message for this code.
    pub fn body(self, detail: impl std::fmt::Display) -> ErrorBody {
        ErrorBody {
            code: self as u16,
            message: detail.to_string(),
        }
    }
}

/// Why the server closes a connection. Sent in a `disconnect` push and as the
/// close reason; the number is also the WebSocket close code (4000–4999 range).
/// 4000–4499: reconnect is advised; 4500–4999: do not reconnect as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum DisconnectCode {
    /// 4000: the server is shutting down or restarting.
    Shutdown = 4000,
    /// 4001: the client could not keep up; it should reconnect and recover.
    SlowConsumer = 4001,
    /// 4002: no pong or message within the heartbeat timeout.
    NoPong = 4002,
    /// 4500: the client broke the protocol repeatedly.
    BadProtocol = 4500,
    /// 4501: disconnected through the HTTP API (`POST /api/disconnect`).
    Kicked = 4501,
}

impl DisconnectCode {
    /// Whether a client should reconnect after this.
    pub fn reconnect(self) -> bool {
        (self as u16) < 4500
    }
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
    fn serialises_pushes_with_their_tag() {
        let data = RawValue::from_string("{\"x\":1}".into()).unwrap();
        let push = Push::Publication {
            channel: "c",
            offset: 3,
            data: &data,
        };
        assert_eq!(
            serde_json::to_string(&push).unwrap(),
            r#"{"push":"publication","channel":"c","offset":3,"data":{"x":1}}"#
        );
    }
}
