//! The HTTP API's bodies: what back ends send to `/api/*` and get back.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::reply::ErrorBody;

/// Body of `POST /api/publish`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    /// Channel name.
    pub channel: String,
    /// Any JSON value.
    pub data: Box<RawValue>,
    /// Deduplicates retries within the idempotency window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Conflation key for `latest-per-key` namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Body of `POST /api/broadcast`: the same data to many channels.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BroadcastBody {
    /// Channel names.
    pub channels: Vec<String>,
    /// Any JSON value.
    pub data: Box<RawValue>,
}

/// Body of `POST /api/disconnect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DisconnectBody {
    /// The client id (from `connect` or presence).
    pub client: String,
}

/// Query of `GET /api/history/{channel}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HistoryQuery {
    /// At most this many, newest last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// An HTTP API error answer: `{"error": {"code": 100, "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApiError {
    /// What went wrong.
    pub error: ErrorBody,
}

/// One channel's outcome in `POST /api/broadcast`: `offset` and `epoch`, or
/// `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BroadcastResults {
    /// Per channel.
    pub results: Vec<BroadcastResult>,
}

/// One channel in `GET /api/channels`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChannelInfo {
    /// Its name.
    pub name: String,
    /// How many connections are subscribed.
    pub subscribers: usize,
}

/// The answer to `GET /api/channels`: channels with subscribers, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChannelList {
    /// The channels.
    pub channels: Vec<ChannelInfo>,
}
