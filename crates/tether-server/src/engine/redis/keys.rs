//! Where a channel lives in Redis, and how a publication travels over
//! Redis pub/sub between nodes.
//!
//! Every key of a channel carries the channel in one `{hash tag}`, so they
//! land in one slot on Redis Cluster and one Lua script may touch them all.
//! `%`, `{` and `}` in a channel name are percent-escaped there, so a name
//! never ends the tag early.

/// The keys and the pub/sub topic of one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelKeys {
    /// A hash: `epoch` and the newest `offset`.
    pub meta: String,
    /// A stream of retained publications, entry id `OFFSET-0`.
    pub stream: String,
    /// The pub/sub topic the channel's publications, joins and leaves go out on.
    pub topic: String,
    /// A hash: client id to user id ('' for none), who is present.
    pub presence: String,
    /// A sorted set: client id by the time (ms) its presence expires.
    pub presence_expiry: String,
    /// The prefix of its idempotency keys' own keys.
    seen: String,
}

impl ChannelKeys {
    /// The keys of `channel` under `prefix`.
    pub fn new(prefix: &str, channel: &str) -> Self {
        let mut tag = String::with_capacity(channel.len() + 2);
        for c in channel.chars() {
            match c {
                '%' => tag.push_str("%25"),
                '{' => tag.push_str("%7B"),
                '}' => tag.push_str("%7D"),
                c => tag.push(c),
            }
        }
        let base = format!("{prefix}:{{{tag}}}");
        Self {
            meta: format!("{base}:meta"),
            stream: format!("{base}:history"),
            topic: format!("{base}:pub"),
            presence: format!("{base}:presence"),
            presence_expiry: format!("{base}:presence:expiry"),
            seen: format!("{base}:seen:"),
        }
    }

    /// The key that remembers idempotency key `key`.
    pub fn seen(&self, key: &str) -> String {
        format!("{}{key}", self.seen)
    }
}

/// What arrives on a channel's topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard<'a> {
    /// A publication (`OFFSET EPOCH KEYLEN KEY DATA`).
    Publication(Wire<'a>),
    /// A client joined (`J CLIENT [USER]`).
    Join {
        /// Its id.
        client: &'a str,
        /// Its user, if it authenticated.
        user: Option<&'a str>,
    },
    /// A client left (`L CLIENT [USER]`).
    Leave {
        /// Its id.
        client: &'a str,
        /// Its user, if it authenticated.
        user: Option<&'a str>,
    },
}

impl<'a> Heard<'a> {
    /// Reads a topic's message; None for anything else.
    pub fn decode(payload: &'a [u8]) -> Option<Self> {
        let presence = |rest: &'a [u8]| {
            let text = std::str::from_utf8(rest).ok()?;
            Some(match text.split_once(' ') {
                Some((client, user)) => (client, Some(user)),
                None => (text, None),
            })
        };
        match payload {
            [b'J', b' ', rest @ ..] => {
                presence(rest).map(|(client, user)| Heard::Join { client, user })
            }
            [b'L', b' ', rest @ ..] => {
                presence(rest).map(|(client, user)| Heard::Leave { client, user })
            }
            _ => Wire::decode(payload).map(Heard::Publication),
        }
    }
}

/// A publication as it arrives on a channel's topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wire<'a> {
    /// Its offset.
    pub offset: u64,
    /// The channel's epoch.
    pub epoch: &'a str,
    /// Its conflation key, if the publisher gave one.
    pub key: Option<&'a str>,
    /// The JSON data, verbatim.
    pub data: &'a str,
}

impl<'a> Wire<'a> {
    /// Reads `OFFSET EPOCH KEYLEN KEY DATA` (what publish.lua sends); None
    /// for anything else.
    pub fn decode(payload: &'a [u8]) -> Option<Self> {
        let text = std::str::from_utf8(payload).ok()?;
        let (offset, rest) = text.split_once(' ')?;
        let (epoch, rest) = rest.split_once(' ')?;
        let (length, rest) = rest.split_once(' ')?;
        let length: usize = length.parse().ok()?;
        let key = rest.get(..length)?;
        Some(Self {
            offset: offset.parse().ok()?,
            epoch,
            key: (length > 0).then_some(key),
            data: rest.get(length..)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channels_keys_share_one_hash_tag() {
        let keys = ChannelKeys::new("tether", "chat:lobby");
        assert_eq!(keys.meta, "tether:{chat:lobby}:meta");
        assert_eq!(keys.stream, "tether:{chat:lobby}:history");
        assert_eq!(keys.topic, "tether:{chat:lobby}:pub");
        assert_eq!(keys.seen("k1"), "tether:{chat:lobby}:seen:k1");
        // Braces in a name cannot end the tag early.
        assert_eq!(ChannelKeys::new("t", "a}b{%").meta, "t:{a%7Db%7B%25}:meta");
    }

    #[test]
    fn reads_what_publish_sends() {
        let wire = Wire::decode(b"42 ab12cd34 3 k:1{\"x\": [1, 2]}").unwrap();
        assert_eq!(
            wire,
            Wire {
                offset: 42,
                epoch: "ab12cd34",
                key: Some("k:1"),
                data: "{\"x\": [1, 2]}"
            }
        );
        let bare = Wire::decode(b"1 e 0 \"hi there\"").unwrap();
        assert_eq!((bare.key, bare.data), (None, "\"hi there\""));
        for bad in [
            &b"x e 0 1"[..],
            b"1 e",
            b"1 e 9 ab",
            b"1 e z 1",
            b"\xff 1 1 1",
        ] {
            assert_eq!(Wire::decode(bad), None);
        }
    }
}
