//! `tether config example`: a commented file with every setting at its
//! default, kept naming what docs/CONFIG.md describes.

use crate::config::{self, ServerConfig};

/// A commented configuration file with every setting at its default, as
/// `tether config example` prints it.
pub fn example() -> String {
    let d = ServerConfig::default();
    format!(
        r#"# tether serve configuration. Every setting is optional; shown at its default.
# Precedence: defaults < this file (--config) < TETHER_* environment < flags.

# Address to listen on.
listen = "{listen}"

# Messages queued per connection before it is closed as a slow consumer (4001).
outbound_queue = {queue}
# Payload bytes queued per connection (replies); past it the connection's
# requests wait (0: no bound).
max_queued_bytes = {queued_bytes}
# Channels one connection may subscribe to.
max_subscriptions = {subs}
# How long publish idempotency keys are remembered, seconds.
idempotency_window_secs = {idem}
# Longest channel name, bytes.
max_channel_name = {name}
# Largest published data, bytes of JSON.
max_publish_size = {publish}
# Deepest nesting of arrays and objects in published data (deeper: error 100).
max_data_depth = {depth}
# Largest HTTP API request body, bytes (larger: 413).
max_api_body = {api_body}
# Browser origins allowed to connect; empty allows all. Others get 403.
allowed_origins = []
# Key for /api/* (Authorization: apikey KEY); unset leaves the API open.
# api_key = "change-me"

# Requests per second per connection (token bucket) and the burst above it.
rate_limit = {rate}
rate_burst = {burst}

# Connections at once, and from one IP (0: no limit).
max_connections = {max_conn}
max_connections_per_ip = {per_ip}

# Bytes all connections together may hold for messages being read or inflated;
# past it a connection stops being read, and after buffer_wait_secs is closed
# with 1013. Unset: a quarter of the machine's memory (or of the control
# group's limit); 0: no bound.
# max_buffered_bytes = 268435456
buffer_wait_secs = {buffer_wait}

# On SIGTERM/SIGINT: time to flush queues, and the window clients spread their
# reconnections over.
shutdown_timeout_secs = {shutdown}
reconnect_window_secs = {window}

# Options of every channel, unless its namespace (the part before ':') says otherwise.
[channels]
history_size = {history}
# Seconds a publication stays in history (0: until newer ones push it out).
history_ttl_secs = {ttl}
presence = true
# Who may subscribe (and read presence and history), and which clients may
# publish: "anyone" (anonymous too, when allowed), "authenticated" (a valid
# token), "granted" (the token's channels claim lists the channel), "nobody"
# (for publish: only the HTTP API).
subscribe = "anyone"
publish = "anyone"
# A full subscriber queue: "disconnect" (4001, the client recovers from history),
# "drop-oldest", or "latest-per-key" (conflation by the publish key).
slow_consumer = "disconnect"

# Per-namespace overrides, e.g. channels "scores:*":
# [namespaces.scores]
# history_size = 1000
# publish = "nobody"
# subscribe = "authenticated"

[auth]
# JWT verification keys; with any of them set, anonymous access is off by default.
# hmac_secret = "..."
# rsa_public_key_file = "/etc/tether/rs256.pem"
# ec_public_key_file = "/etc/tether/es256.pem"
# anonymous = false

# The WebSocket transport (/connection/websocket).
[websocket]
# Largest message (and frame), bytes; a larger one closes with 1009. For a
# compressed message this counts the inflated bytes.
max_message_size = {message}
# Accept permessage-deflate from clients that offer it.
compression = true
# Heartbeat: ping every ping_interval_secs; silent past pong_timeout_secs more:
# disconnect 4002.
ping_interval_secs = {ping}
pong_timeout_secs = {pong}
# Seconds to wait for the peer's close frame once ours is sent, and for a
# client's opening handshake.
close_timeout_secs = {close}
handshake_timeout_secs = {handshake}

# The HTTP fallbacks: Server-Sent Events (/connection/sse) and long-polling
# (/connection/longpoll), whose sessions outlive each request.
[http]
# A session with no stream or poll attached for this long ends, seconds.
session_ttl_secs = {session_ttl}
# Comment line on an idle SSE stream, seconds (under proxies' idle cut).
sse_heartbeat_secs = {heartbeat}
# How long a poll waits for messages, seconds (below nginx's 60 s).
poll_timeout_secs = {poll}
# Most bytes of messages per poll answer or SSE write.
max_poll_bytes = {poll_bytes}
# Largest command body POSTed to a session, bytes (larger: 413).
max_command_body = {command_body}
# End an SSE stream after this many bytes (EventSource resumes; 0: never),
# for proxies that hold a response until it ends.
max_stream_bytes = {stream_bytes}

# Where the state a cluster would share lives: offsets and epochs, history,
# idempotency keys, presence.
[engine]
# "memory": this process (the only engine so far).
kind = "{engine}"
# How often expired history and idempotency keys and unused channels are
# forgotten, seconds.
sweep_interval_secs = {sweep}
"#,
        listen = d.listen,
        queue = d.outbound_queue,
        queued_bytes = d.max_queued_bytes,
        subs = d.max_subscriptions,
        idem = d.idempotency_window.as_secs_f64(),
        name = d.max_channel_name,
        publish = d.max_publish_size,
        depth = d.max_data_depth,
        api_body = d.max_api_body,
        message = d.websocket.connection.protocol.max_message_size,
        ping = d.websocket.ping_interval.as_secs_f64(),
        pong = d.websocket.pong_timeout.as_secs_f64(),
        close = d.websocket.connection.close_timeout.as_secs_f64(),
        handshake = d.websocket.connection.handshake_timeout.as_secs_f64(),
        rate = d.rate_limit,
        burst = d.rate_burst,
        max_conn = d.max_connections,
        per_ip = d.max_connections_per_ip,
        buffer_wait = d.buffer_wait.as_secs_f64(),
        shutdown = d.shutdown_timeout.as_secs_f64(),
        window = d.reconnect_window.as_secs_f64(),
        history = config::DEFAULT_HISTORY_SIZE,
        ttl = config::DEFAULT_HISTORY_TTL.as_secs_f64(),
        session_ttl = d.http.session_ttl.as_secs_f64(),
        heartbeat = d.http.sse_heartbeat.as_secs_f64(),
        poll = d.http.poll_timeout.as_secs_f64(),
        poll_bytes = d.http.max_poll_bytes,
        command_body = d.http.max_command_body,
        stream_bytes = d.http.max_stream_bytes,
        engine = d.engine.kind.as_str(),
        sweep = d.engine.sweep_interval.as_secs_f64(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::FileConfig;

    #[test]
    fn the_example_parses_to_the_defaults() {
        let mut config = ServerConfig::default();
        FileConfig::parse(&example(), "example")
            .unwrap()
            .apply(&mut config)
            .unwrap();
        let defaults = ServerConfig::default();
        assert_eq!(config.listen, defaults.listen);
        assert_eq!(config.default_namespace, defaults.default_namespace);
        assert_eq!(
            config.websocket.ping_interval,
            defaults.websocket.ping_interval
        );
        assert_eq!(
            config.websocket.connection.close_timeout,
            defaults.websocket.connection.close_timeout
        );
        assert_eq!(config.rate_limit, defaults.rate_limit);
        assert_eq!(
            config.max_connections_per_ip,
            defaults.max_connections_per_ip
        );
        assert_eq!(
            config.websocket.connection.protocol,
            defaults.websocket.connection.protocol
        );
        assert!(config.auth.anonymous());
        assert_eq!(config.engine.kind, defaults.engine.kind);
        assert_eq!(config.engine.sweep_interval, defaults.engine.sweep_interval);
    }

    #[test]
    fn docs_config_md_describes_every_setting_of_the_example() {
        let docs = include_str!("../../../../docs/CONFIG.md");
        for line in example().lines() {
            let line = line.trim_start_matches("# ");
            let Some((key, _)) = line.split_once(" = ") else {
                continue;
            };
            if key.contains(' ') || key.starts_with('[') {
                continue;
            }
            // The file spells durations `_secs` and key files `_file`;
            // docs/CONFIG.md names the option (`ping_interval`, `rsa_public_key_pem`).
            let option = key.trim_end_matches("_secs").trim_end_matches("_file");
            let named = docs.contains(&format!("`{option}`"))
                || docs.contains(&format!(".{option}`"))
                || docs.contains(&format!(".{option}_pem`"));
            assert!(named, "docs/CONFIG.md does not describe `{key}`");
        }
    }

    /// The first number in a CONFIG.md default cell, in the file's unit
    /// (bytes for `KiB`/`MiB`, seconds for `s`), or a bare word (`true`).
    fn documented_value(cell: &str) -> Option<String> {
        let cell = cell.replace('`', "");
        let mut words = cell.split_whitespace();
        let first = words.next()?;
        let Ok(number) = first.parse::<f64>() else {
            return Some(first.to_owned());
        };
        let scale = match words.next() {
            Some("KiB") => 1024.0,
            Some("MiB") => 1024.0 * 1024.0,
            _ => 1.0,
        };
        Some(format!("{}", number * scale))
    }

    #[test]
    fn docs_config_md_gives_the_defaults_in_code() {
        let docs = include_str!("../../../../docs/CONFIG.md");
        // The server's table (the library's settings follow in a section of their own).
        let server = docs.split_once("## Server").expect("a server section").1;
        let docs = server.split("\n## ").next().unwrap_or(server);
        let mut checked = 0;
        for line in example().lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once(" = ") else {
                continue;
            };
            let value = value.trim_matches('"');
            let option = key.trim_end_matches("_secs");
            let row = docs.lines().find(|row| {
                let first = row.split('|').nth(1).unwrap_or_default().trim();
                first == format!("`{option}`") || first.ends_with(&format!(".{option}`"))
            });
            let Some(row) = row else { continue };
            let cell = row.split('|').nth(3).unwrap_or_default();
            let Some(documented) = documented_value(cell) else {
                continue;
            };
            let in_code = value
                .parse::<f64>()
                .map_or(value.to_owned(), |n| format!("{n}"));
            // Numbers and switches are compared; lists, addresses and
            // "none" are described in words.
            let comparable =
                in_code.parse::<f64>().is_ok() || in_code == "true" || in_code == "false";
            if !comparable {
                continue;
            }
            assert_eq!(
                documented, in_code,
                "docs/CONFIG.md gives another default for `{key}`: {row}"
            );
            checked += 1;
        }
        assert!(checked >= 20, "only {checked} defaults checked");
    }
}
