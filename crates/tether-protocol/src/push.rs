//! Server-initiated messages: they carry `push` instead of `id`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A position in a channel's stream: the offset of the last publication seen and
/// the epoch of the history it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StreamPosition {
    /// Offset of the last publication the client saw (0: none yet).
    pub offset: u64,
    /// The channel's epoch; it changes whenever the channel's history is lost.
    pub epoch: String,
}

/// A server-initiated message. Borrowed where the server writes one (each
/// publication is serialised once, from the data as it came in), owned where
/// a client reads one.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(tag = "push", rename_all = "snake_case")]
pub enum Push<'a> {
    /// A publication on a subscribed channel.
    Publication {
        /// Channel name.
        channel: Cow<'a, str>,
        /// Offset within the channel.
        offset: u64,
        /// The published JSON value.
        data: Cow<'a, RawValue>,
    },
    /// A client joined a channel with presence.
    Join {
        /// Channel name.
        channel: Cow<'a, str>,
        /// Who joined.
        client: Cow<'a, str>,
        /// Their user id, if they authenticated.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<Cow<'a, str>>,
    },
    /// A client left a channel with presence.
    Leave {
        /// Channel name.
        channel: Cow<'a, str>,
        /// Who left.
        client: Cow<'a, str>,
        /// Their user id, if they authenticated.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<Cow<'a, str>>,
    },
    /// The server is ending the session; a close follows.
    Disconnect {
        /// A [`DisconnectCode`](crate::DisconnectCode) number.
        code: u16,
        /// Human-readable reason.
        reason: Cow<'a, str>,
        /// Whether the client should reconnect.
        reconnect: bool,
        /// Wait this long before reconnecting (spreads a server restart's
        /// reconnections over a window).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reconnect_after_ms: Option<u64>,
        /// For a slow consumer (4001): per subscribed channel, the position of
        /// the last publication written to this connection before it was cut
        /// off. Subscribing again with it as `recover` resumes without loss.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        positions: BTreeMap<Cow<'a, str>, StreamPosition>,
    },
}

/// Every field any push may carry, for [`Push`]'s `Deserialize`: serde's
/// tagged enums buffer their input, which `RawValue` cannot survive.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WirePush {
    push: String,
    channel: Option<String>,
    offset: Option<u64>,
    data: Option<Box<RawValue>>,
    client: Option<String>,
    user: Option<String>,
    code: Option<u16>,
    reason: Option<String>,
    reconnect: Option<bool>,
    reconnect_after_ms: Option<u64>,
    #[serde(default)]
    positions: BTreeMap<String, StreamPosition>,
}

impl<'de> Deserialize<'de> for Push<'static> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let wire = WirePush::deserialize(deserializer)?;
        let missing = |field: &'static str| D::Error::missing_field(field);
        let channel = || {
            wire.channel
                .clone()
                .map(Cow::Owned)
                .ok_or(missing("channel"))
        };
        let client = || wire.client.clone().map(Cow::Owned).ok_or(missing("client"));
        Ok(match wire.push.as_str() {
            "publication" => Push::Publication {
                channel: channel()?,
                offset: wire.offset.ok_or(missing("offset"))?,
                data: Cow::Owned(wire.data.ok_or(missing("data"))?),
            },
            "join" => Push::Join {
                channel: channel()?,
                client: client()?,
                user: wire.user.map(Cow::Owned),
            },
            "leave" => Push::Leave {
                channel: channel()?,
                client: client()?,
                user: wire.user.map(Cow::Owned),
            },
            "disconnect" => Push::Disconnect {
                code: wire.code.ok_or(missing("code"))?,
                reason: Cow::Owned(wire.reason.ok_or(missing("reason"))?),
                reconnect: wire.reconnect.ok_or(missing("reconnect"))?,
                reconnect_after_ms: wire.reconnect_after_ms,
                positions: wire
                    .positions
                    .into_iter()
                    .map(|(channel, at)| (Cow::Owned(channel), at))
                    .collect(),
            },
            other => {
                return Err(D::Error::unknown_variant(
                    other,
                    &["publication", "join", "leave", "disconnect"],
                ))
            }
        })
    }
}

impl Push<'_> {
    /// The push as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("pushes serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_pushes_with_their_tag_and_reads_them_back() {
        let data = RawValue::from_string("{\"x\":1}".into()).unwrap();
        let push = Push::Publication {
            channel: "c".into(),
            offset: 3,
            data: Cow::Borrowed(&data),
        };
        let text = push.to_json();
        assert_eq!(
            text,
            r#"{"push":"publication","channel":"c","offset":3,"data":{"x":1}}"#
        );
        match serde_json::from_str::<Push>(&text).unwrap() {
            Push::Publication {
                channel,
                offset,
                data,
            } => assert_eq!((&*channel, offset, data.get()), ("c", 3, r#"{"x":1}"#)),
            other => panic!("{other:?}"),
        }
        let bye = r#"{"push":"disconnect","code":4001,"reason":"slow consumer","reconnect":true,"positions":{"a":{"offset":2,"epoch":"e"}}}"#;
        let parsed: Push = serde_json::from_str(bye).unwrap();
        assert_eq!(parsed.to_json(), bye);
    }
}
