//! Server-Sent Events: `GET /connection/sse` streams a resumable session's
//! messages as `text/event-stream`, which a browser's native `EventSource`
//! reads and reconnects by itself.
//!
//! - The query carries the first commands: `token` (a `connect`) and
//!   `subscribe` (channels, comma-separated); they get request ids 1, 2, …
//!   in that order. Later requests go as POSTs ([`super::commands`]).
//! - The stream opens with a `session` event (the session's key and client
//!   id); then each message is one event whose `id:` is `KEY-SEQ`, and a
//!   comment line every `http.sse_heartbeat` keeps idle proxies from cutting it.
//! - A reconnect carrying `Last-Event-ID` (or `?last_event_id=`) resumes
//!   the session after that message, with nothing lost or repeated. If the
//!   session has expired, a new one starts and each channel's subscribe reply
//!   says `recovered: false`: the client refetches what it shows.

use std::convert::Infallible;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::commands::{self, error, refused};
use super::Peer;
use crate::protocol::http::SessionOpened;
use crate::protocol::{Command, ErrorCode, Request, StreamPosition};
use crate::session::lifecycle;
use crate::session::log::{CursorError, Read};
use crate::session::resumable::{Attachment, Resumable};
use crate::session::state::AppState;

/// The transport's name in metrics and logs.
pub const NAME: &str = "sse";

/// The query of `GET /connection/sse`.
#[derive(Debug, Default, Deserialize)]
pub struct OpenQuery {
    /// A token to connect with.
    token: Option<String>,
    /// Channels to subscribe to, comma-separated.
    subscribe: Option<String>,
    /// For clients that cannot set `Last-Event-ID` themselves.
    last_event_id: Option<String>,
}

/// Splits an event id into the session key and the sequence number.
pub(crate) fn parse_event_id(id: &str) -> Option<(&str, u64)> {
    let (key, seq) = id.trim().rsplit_once('-')?;
    Some((key, seq.parse().ok()?))
}

/// `GET /connection/sse`.
pub async fn open(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    query: Result<Query<OpenQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(refusal) = lifecycle::check_origin(&state, &headers) {
        return refused(refusal);
    }
    let Ok(Query(query)) = query else {
        return error(ErrorCode::BadRequest.body("malformed query string"));
    };
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or(query.last_event_id.as_deref());
    // A reconnect: the session goes on after what the browser last got.
    let mut lost = false;
    if let Some(id) = last_event_id {
        match parse_event_id(id).and_then(|(key, seq)| {
            let found = commands::find(&state, key, Some(NAME)).ok()?;
            Some((found, seq))
        }) {
            Some((resumable, seq)) => match resume(&state, resumable, seq) {
                Ok(response) => return response,
                Err(CursorError::Future { .. }) => {
                    return error(ErrorCode::BadCursor.body(format!(
                        "Last-Event-ID {id:?} is ahead of what this session sent"
                    )))
                }
                // The replay window has passed it: a new session, as if
                // this one had expired.
                Err(CursorError::Gone { .. }) => lost = true,
            },
            None => lost = true,
        }
    }
    let channels: Vec<&str> = query
        .subscribe
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .filter(|channel| !channel.is_empty())
        .collect();
    if channels.len() > state.config.max_subscriptions {
        return error(ErrorCode::TooManySubscriptions.body(format!(
            "at most {} subscriptions",
            state.config.max_subscriptions
        )));
    }
    let guard = match lifecycle::admit(&state, &headers, peer.map(|peer| peer.ip())) {
        Ok(guard) => guard,
        Err(refusal) => return refused(refusal),
    };
    let resumable = commands::open_session(&state, NAME, guard, peer);
    {
        let mut session = resumable.session().await;
        if let Some(session) = session.as_mut() {
            let mut id = 0;
            if let Some(token) = query.token {
                id += 1;
                let command = Command::Connect { token: Some(token) };
                session.handle(Request { id, command }).await;
            }
            for channel in channels {
                id += 1;
                // An expired session's positions are gone with it.
                let recover = lost.then(|| StreamPosition {
                    offset: 0,
                    epoch: String::new(),
                });
                let command = Command::Subscribe {
                    channel: channel.to_owned(),
                    recover,
                };
                session.handle(Request { id, command }).await;
            }
        }
    }
    let attachment = resumable.attach();
    stream(&state, resumable, 0, attachment)
}

/// Attaches a new stream to `resumable` after message `seq`.
fn resume(state: &AppState, resumable: Arc<Resumable>, seq: u64) -> Result<Response, CursorError> {
    let attachment = resumable.attach();
    resumable.log().check(seq)?;
    Ok(stream(state, resumable, seq, attachment))
}

/// Where one stream is.
struct Streaming {
    resumable: Arc<Resumable>,
    attachment: Attachment,
    /// The last message written.
    cursor: u64,
    /// The `session` event, before anything else.
    opening: Option<Bytes>,
    /// The session's last message was written.
    done: bool,
    heartbeat: Duration,
    max_bytes: usize,
    /// Bytes this stream may still write before it ends (`None`: no limit).
    budget: Option<usize>,
}

fn stream(
    state: &AppState,
    resumable: Arc<Resumable>,
    cursor: u64,
    attachment: Attachment,
) -> Response {
    let opened = SessionOpened {
        session: resumable.key().to_owned(),
        client: resumable.client().to_owned(),
    };
    let opening = format!(
        "event: session\ndata: {}\n\n",
        serde_json::to_string(&opened).expect("protocol types serialise")
    );
    let streaming = Streaming {
        resumable,
        attachment,
        cursor,
        opening: Some(opening.into()),
        done: false,
        heartbeat: state.config.http.sse_heartbeat,
        max_bytes: state.config.http.max_poll_bytes,
        budget: Some(state.config.http.max_stream_bytes).filter(|bytes| *bytes > 0),
    };
    let body = Body::from_stream(futures_util::stream::unfold(streaming, next_chunk));
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    // nginx would otherwise buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The stream's next write: the opening event, the messages that came, or a
/// heartbeat comment; none once the session's last message went out, a newer
/// stream took over, or the session ended.
async fn next_chunk(mut s: Streaming) -> Option<(Result<Bytes, Infallible>, Streaming)> {
    if let Some(opening) = s.opening.take() {
        return Some((Ok(opening), s));
    }
    if s.done {
        return None;
    }
    loop {
        let log = s.resumable.log();
        let read = log.read(s.cursor, s.max_bytes, false).ok()?;
        if !read.messages.is_empty() {
            s.cursor = read.cursor;
            s.done = read.ended;
            let chunk = events(s.resumable.key(), &read);
            if let Some(budget) = &mut s.budget {
                // Past its budget the stream ends after this write; the
                // browser comes back with Last-Event-ID.
                *budget = budget.saturating_sub(chunk.len());
                s.done |= *budget == 0;
            }
            return Some((Ok(chunk), s));
        }
        if read.ended {
            return None;
        }
        tokio::select! {
            () = log.wait_after(s.cursor) => {}
            () = tokio::time::sleep(s.heartbeat) => {
                return Some((Ok(Bytes::from_static(b":\n\n")), s));
            }
            () = s.attachment.superseded() => return None,
        }
    }
}

/// The messages of `read` as events. A message's own line breaks (JSON
/// whitespace a client published) become further `data:` lines, which the
/// browser joins with `\n`: the same JSON.
fn events(key: &str, read: &Read) -> Bytes {
    let size: usize = read.messages.iter().map(|(_, m)| m.len() + 64).sum();
    let mut out = Vec::with_capacity(size);
    for (seq, message) in &read.messages {
        // Written in place: no string per event.
        let _ = writeln!(out, "id: {key}-{seq}");
        for line in message.split(|b| *b == b'\n' || *b == b'\r') {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out.push(b'\n');
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_name_the_session_and_the_message() {
        assert_eq!(parse_event_id("abc-12"), Some(("abc", 12)));
        assert_eq!(parse_event_id("abc"), None);
        assert_eq!(parse_event_id("abc-x"), None);
    }

    #[test]
    fn a_message_with_line_breaks_spans_data_lines() {
        let read = Read {
            messages: vec![(7, Bytes::from_static(b"{\"a\":\r\n1}"))],
            cursor: 7,
            ended: false,
        };
        let text = events("k", &read);
        assert_eq!(&text[..], b"id: k-7\ndata: {\"a\":\ndata: \ndata: 1}\n\n");
    }
}
