//! The messages nodes send each other, one per pub/sub message: a line of
//! space-separated fields, then the payload's bytes as they are.
//!
//! - `Q FROM ID\n` + payload: a call from node `FROM`, numbered `ID` there.
//! - `R FROM ID SEQ LAST\n` + payload: part `SEQ` (from 0) of the answer to
//!   call `ID`, sent by node `FROM`; `LAST` is 1 on the final part.
//! - `C FROM ID\n`: node `FROM` no longer wants the answer to its call `ID`.

use bytes::{BufMut, Bytes, BytesMut};

/// One message between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A call, to be answered in parts.
    Call {
        /// The calling node.
        from: String,
        /// The call's number on the calling node.
        id: u64,
        /// What is asked.
        payload: Bytes,
    },
    /// A part of an answer.
    Part {
        /// The answering node.
        from: String,
        /// The call answered.
        id: u64,
        /// The part's place, from 0: a missing one breaks the answer.
        seq: u64,
        /// Whether it is the final part.
        last: bool,
        /// The part's bytes.
        payload: Bytes,
    },
    /// The caller gave up on a call.
    Cancel {
        /// The calling node.
        from: String,
        /// The call.
        id: u64,
    },
}

/// A message that is not one of these.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed mesh message: {0}")]
pub struct Malformed(&'static str);

/// Whether `node` can be a node id: 1 to 32 ASCII letters and digits (it
/// is part of session keys and Redis topics).
pub fn valid_node(node: &str) -> bool {
    (1..=32).contains(&node.len()) && node.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl Message {
    /// The message's bytes.
    pub fn encode(&self) -> Bytes {
        let (line, payload) = match self {
            Message::Call { from, id, payload } => (format!("Q {from} {id}\n"), Some(payload)),
            Message::Part {
                from,
                id,
                seq,
                last,
                payload,
            } => (
                format!("R {from} {id} {seq} {}\n", u8::from(*last)),
                Some(payload),
            ),
            Message::Cancel { from, id } => (format!("C {from} {id}\n"), None),
        };
        let size = line.len() + payload.map_or(0, Bytes::len);
        let mut out = BytesMut::with_capacity(size);
        out.put_slice(line.as_bytes());
        if let Some(payload) = payload {
            out.put_slice(payload);
        }
        out.freeze()
    }

    /// Reads a message (the payload shares `bytes`).
    pub fn decode(bytes: &Bytes) -> Result<Self, Malformed> {
        let end = bytes
            .iter()
            .take(128)
            .position(|b| *b == b'\n')
            .ok_or(Malformed("no header line"))?;
        let line = std::str::from_utf8(&bytes[..end]).map_err(|_| Malformed("header not UTF-8"))?;
        let payload = bytes.slice(end + 1..);
        let mut fields = line.split(' ');
        let kind = fields.next().ok_or(Malformed("no kind"))?;
        let from = fields
            .next()
            .filter(|node| valid_node(node))
            .ok_or(Malformed("bad node"))?
            .to_owned();
        let mut number = || -> Result<u64, Malformed> {
            fields
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or(Malformed("bad number"))
        };
        let id = number()?;
        let message = match kind {
            "Q" => Message::Call { from, id, payload },
            "R" => {
                let seq = number()?;
                let last = match number()? {
                    0 => false,
                    1 => true,
                    _ => return Err(Malformed("bad last flag")),
                };
                Message::Part {
                    from,
                    id,
                    seq,
                    last,
                    payload,
                }
            }
            "C" if payload.is_empty() => Message::Cancel { from, id },
            _ => return Err(Malformed("unknown kind")),
        };
        if fields.next().is_some() {
            return Err(Malformed("extra fields"));
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_reads_back_as_written() {
        let messages = [
            Message::Call {
                from: "a1b2c3".into(),
                id: 7,
                payload: Bytes::from_static(b"GET /x\n\nbody with\nnewlines"),
            },
            Message::Part {
                from: "ffffff".into(),
                id: 7,
                seq: 3,
                last: true,
                payload: Bytes::new(),
            },
            Message::Cancel {
                from: "a1b2c3".into(),
                id: u64::MAX,
            },
        ];
        for message in messages {
            assert_eq!(Message::decode(&message.encode()), Ok(message));
        }
    }

    #[test]
    fn malformed_messages_are_refused() {
        for bad in [
            &b""[..],
            b"Q a1 7",
            b"Q a-1 7\n",
            b"Q a1 x\n",
            b"R a1 7 0 2\n",
            b"R a1 7 0\n",
            b"C a1 7\npayload",
            b"X a1 7\n",
            b"Q a1 7 8\n",
            b"Q \xff 7\n",
        ] {
            assert!(
                Message::decode(&Bytes::copy_from_slice(bad)).is_err(),
                "{bad:?}"
            );
        }
        assert!(!valid_node(&"a".repeat(33)));
    }
}
