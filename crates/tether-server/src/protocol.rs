//! The pub/sub wire protocol: JSON over WebSocket text frames. This module is the
//! one source that the server, the CLI, docs/PROTOCOL.md and the JS client follow.
//!
//! Every client request carries an `id` and gets exactly one reply with that id,
//! holding `result` or `error`. Server-initiated messages carry `push` instead.

use std::collections::BTreeMap;
use std::sync::Arc;

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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Publication {
    /// Strictly increasing within the channel's epoch, starting at 1.
    pub offset: u64,
    /// The published JSON value, written out as it came in (never re-parsed).
    pub data: Box<RawValue>,
}

/// The result of `connect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connected {
    /// This connection's client id, as presence shows it.
    pub client: String,
    /// The token's `sub`, when a token was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// The empty result (`ping`, `unsubscribe`, `POST /api/disconnect`): `{}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// The result of `subscribe`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subscribed {
    /// The channel's current epoch.
    pub epoch: Arc<str>,
    /// The channel's newest offset when the subscription started: live
    /// publications follow with offsets above it (and `publications` holds the
    /// recovered ones up to it).
    pub offset: u64,
    /// Whether every missed publication is in `publications` (only when the
    /// client asked to recover). `false`: reload state, history no longer covers
    /// the gap or the epoch changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// Missed publications, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publications: Vec<Publication>,
}

/// The result of a publish (client `publish` and `POST /api/publish`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The offset the publication got (the original one for a repeated key).
    pub offset: u64,
    /// The channel's epoch.
    pub epoch: Arc<str>,
}

/// One entry of a presence list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceEntry {
    /// The connection's client id.
    pub client: String,
    /// The user id from its token, if it authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// The result of `presence` (and `GET /api/presence/{channel}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceList {
    /// Who is subscribed, sorted by client id.
    pub clients: Vec<PresenceEntry>,
}

/// The result of `history` (and `GET /api/history/{channel}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryPage {
    /// The channel's epoch.
    pub epoch: Arc<str>,
    /// The channel's newest offset.
    pub offset: u64,
    /// Retained publications, oldest first.
    pub publications: Vec<Publication>,
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
    /// Every code, in order.
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownOp,
        ErrorCode::BadChannel,
        ErrorCode::PermissionDenied,
        ErrorCode::AlreadySubscribed,
        ErrorCode::NotSubscribed,
        ErrorCode::TooManySubscriptions,
        ErrorCode::NotAvailable,
        ErrorCode::MessageTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::BinaryNotSupported,
        ErrorCode::Unauthorized,
    ];

    /// The error body with the default message for this code.
    pub fn body(self, detail: impl std::fmt::Display) -> ErrorBody {
        ErrorBody {
            code: self as u16,
            message: detail.to_string(),
        }
    }

    /// The code with this number, if there is one.
    pub fn from_number(number: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|code| *code as u16 == number)
    }

    /// The HTTP status the HTTP API answers this error with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::PermissionDenied => 403,
            ErrorCode::NotAvailable => 404,
            ErrorCode::MessageTooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unauthorized => 401,
            _ => 400,
        }
    }
}

impl ErrorBody {
    /// The HTTP status for this error (400 for a number this server does not know).
    pub fn http_status(&self) -> u16 {
        ErrorCode::from_number(self.code).map_or(400, ErrorCode::http_status)
    }
}

/// An HTTP API error answer: `{"error": {"code": 100, "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong.
    pub error: ErrorBody,
}

/// One channel's outcome in `POST /api/broadcast`: `offset` and `epoch`, or
/// `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastResult {
    /// The channel.
    pub channel: String,
    /// The publication's offset, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The channel's epoch, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Arc<str>>,
    /// Why this channel failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// The answer to `POST /api/broadcast`: one result per channel, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastResults {
    /// Per channel.
    pub results: Vec<BroadcastResult>,
}

/// One channel in `GET /api/channels`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    /// Its name.
    pub name: String,
    /// How many connections are subscribed.
    pub subscribers: usize,
}

/// The answer to `GET /api/channels`: channels with subscribers, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelList {
    /// The channels.
    pub channels: Vec<ChannelInfo>,
}

/// Why the server closes a connection. Sent in a `disconnect` push, then as
/// the WebSocket close code ([`DisconnectCode::close_code`]: the same number,
/// but for shutdown and the rate limit, which use the standard codes).
/// 4000–4499: reconnect is advised; 4500–4999: do not reconnect as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum DisconnectCode {
    /// 4000: the server is shutting down or restarting (close code 1001).
    Shutdown = 4000,
    /// 4001: the client could not keep up; it should reconnect and recover.
    SlowConsumer = 4001,
    /// 4002: no pong or message within the heartbeat timeout.
    NoPong = 4002,
    /// 4500: reserved for repeated protocol violations (not sent today:
    /// WebSocket-level violations close with 1002, 1007 or 1009 alone).
    BadProtocol = 4500,
    /// 4501: disconnected through the HTTP API (`POST /api/disconnect`).
    Kicked = 4501,
    /// 4502: the client went on past a whole burst of error-109 refusals
    /// (close code 1008, policy violation).
    RateLimited = 4502,
}

impl DisconnectCode {
    /// Whether a client should reconnect after this.
    pub fn reconnect(self) -> bool {
        (self as u16) < 4500
    }

    /// The WebSocket close code that ends the connection.
    pub fn close_code(self) -> u16 {
        match self {
            DisconnectCode::Shutdown => 1001,
            DisconnectCode::RateLimited => 1008,
            other => other as u16,
        }
    }

    /// The reason sent in the push and the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            DisconnectCode::Shutdown => "server shutting down",
            DisconnectCode::SlowConsumer => "slow consumer",
            DisconnectCode::NoPong => "no pong",
            DisconnectCode::BadProtocol => "protocol violations",
            DisconnectCode::Kicked => "disconnected by the server",
            DisconnectCode::RateLimited => "rate limit exceeded",
        }
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
    fn measures_nesting_without_recursing_and_ignores_brackets_in_strings() {
        assert_eq!(nesting_depth("1"), 0);
        assert_eq!(nesting_depth(r#"{"a":[1,{"b":[]}]}"#), 4);
        assert_eq!(nesting_depth(r#"["[[[{", "\\\"]]]"]"#), 1);
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(nesting_depth(&deep), 100_000);
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
