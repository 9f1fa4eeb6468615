//! Replies: `{"id": 1, "result": {...}}` or `{"id": 1, "error": {...}}`, and
//! the result of each operation.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::codes::ErrorCode;

/// The one reply to a request.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Reply<T> {
    /// The request's id (0 when the request had none).
    pub id: u64,
    /// Present on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<T>,
    /// Present on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl<T> Reply<T> {
    /// A reply carrying `outcome`.
    pub fn new(id: u64, outcome: Result<T, ErrorBody>) -> Self {
        match outcome {
            Ok(result) => Self {
                id,
                result: Some(result),
                error: None,
            },
            Err(error) => Self {
                id,
                result: None,
                error: Some(error),
            },
        }
    }

    /// The outcome it carries (a reply with neither is malformed: error 100).
    pub fn into_result(self) -> Result<T, ErrorBody> {
        match (self.result, self.error) {
            (_, Some(error)) => Err(error),
            (Some(result), None) => Ok(result),
            (None, None) => {
                Err(ErrorCode::BadRequest.body("a reply with neither result nor error"))
            }
        }
    }
}

/// The body of an error reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// A stable [`ErrorCode`] number.
    pub code: u16,
    /// Human-readable message.
    pub message: String,
}

impl ErrorBody {
    /// The HTTP status for this error (400 for a number this side does not know).
    pub fn http_status(&self) -> u16 {
        ErrorCode::from_number(self.code).map_or(400, ErrorCode::http_status)
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "error {}: {}", self.code, self.message)
    }
}

/// One publication as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Publication {
    /// Strictly increasing within the channel's epoch, starting at 1.
    pub offset: u64,
    /// The published JSON value, written out as it came in (never re-parsed).
    pub data: Box<RawValue>,
}

/// The result of `connect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Connected {
    /// This connection's client id, as presence shows it.
    pub client: String,
    /// The token's `sub`, when a token was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// The empty result (`ping`, `unsubscribe`, `POST /api/disconnect`): `{}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Empty {}

/// The result of `subscribe`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Subscribed {
    /// The channel's current epoch.
    pub epoch: Arc<str>,
    /// The channel's newest offset when the subscription began (0: nothing
    /// published yet): live publications follow with offsets above it, and
    /// `publications` holds the recovered ones up to it.
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Published {
    /// The offset the publication got (the original one for a repeated key).
    pub offset: u64,
    /// The channel's epoch.
    pub epoch: Arc<str>,
}

/// One entry of a presence list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PresenceEntry {
    /// The connection's client id.
    pub client: String,
    /// The user id from its token, if it authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// The result of `presence` (and `GET /api/presence/{channel}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PresenceList {
    /// Who is subscribed, sorted by client id.
    pub clients: Vec<PresenceEntry>,
}

/// The result of `history` (and `GET /api/history/{channel}`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct HistoryPage {
    /// The channel's epoch.
    pub epoch: Arc<str>,
    /// The channel's newest offset.
    pub offset: u64,
    /// Retained publications, oldest first.
    pub publications: Vec<Publication>,
}
