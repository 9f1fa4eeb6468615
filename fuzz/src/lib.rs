//! Fuzz entry points, one per input surface a peer controls: `tether-proto`'s
//! here, `tether serve`'s requests and HTTP bodies in [`server`].
//! Each takes arbitrary bytes and must neither panic nor allocate past the
//! configured limits. The libFuzzer targets in `fuzz_targets/` and the corpus
//! replayer (`src/bin/replay.rs`) both call these.

pub mod server;

use tether_proto::deflate::{Deflater, Inflater};
use tether_proto::handshake::{
    parse_request, parse_response, validate_request, validate_response, ClientRequest,
};
use tether_proto::{Config, Decoder, Message, Role};

/// Limits small enough that the fuzzer explores them.
fn config() -> Config {
    Config::default()
        .max_frame_size(64 << 10)
        .max_message_size(256 << 10)
        .max_fragments(64)
}

fn decode(role: Role, data: &[u8]) {
    // The first byte picks how the input is cut into reads and whether deflate is on.
    let Some((&knobs, data)) = data.split_first() else {
        return;
    };
    let inflater = (knobs & 1 == 1).then(|| Inflater::new(9 + (knobs >> 1) % 7, knobs & 0x80 != 0));
    let mut decoder = Decoder::new(role, config(), inflater);
    let step = 1 + (knobs as usize >> 4);
    for (index, chunk) in data.chunks(step).enumerate() {
        // Both ways bytes arrive: appended, and handed over as a buffer.
        if index % 2 == 0 {
            decoder.receive(chunk);
        } else {
            decoder.receive_bytes(bytes::BytesMut::from(chunk));
        }
        loop {
            match decoder.poll() {
                Ok(Some(Message::Text(text))) => {
                    assert!(std::str::from_utf8(text.as_bytes()).is_ok())
                }
                Ok(Some(message)) => assert!(message.len() <= 256 << 10),
                Ok(None) => break,
                Err(e) => {
                    let _ = e.close_code();
                    return;
                }
            }
        }
    }
}

/// Frames as a server reads them (masked, from a client).
pub fn decode_frames_server(data: &[u8]) {
    decode(Role::Server, data);
}

/// Frames as a client reads them (unmasked, from a server).
pub fn decode_frames_client(data: &[u8]) {
    decode(Role::Client, data);
}

/// An opening-handshake request as a server parses and validates it.
pub fn parse_request_bytes(data: &[u8]) {
    if let Ok(Some((request, len))) = parse_request(data, 4096) {
        assert!(len <= data.len());
        if let Ok(offer) = validate_request(&request) {
            let _ = tether_proto::handshake::accept_response(
                &offer,
                offer.protocols.first().map(String::as_str),
                &Default::default(),
            );
        }
    }
}

/// A handshake response as a client parses and validates it.
pub fn parse_response_bytes(data: &[u8]) {
    if let Ok(Some((response, _))) = parse_response(data, 4096) {
        let request = ClientRequest {
            key: "dGhlIHNhbXBsZSBub25jZQ==".into(),
            protocols: vec!["chat".into()],
            ..Default::default()
        };
        let _ = validate_response(&response, &request);
    }
}

/// Raw deflate data as an inflater reads it, with a small output limit; whatever
/// inflates must round-trip through the deflater.
pub fn inflate(data: &[u8]) {
    let mut inflater = Inflater::new(15, false);
    let mut out = bytes::BytesMut::new();
    if inflater.inflate(data, &mut out, 64 << 10).is_err()
        || inflater.finish(&mut out, 64 << 10).is_err()
    {
        return;
    }
    let mut deflater = Deflater::new(1, 15, true);
    let mut wire = bytes::BytesMut::new();
    deflater
        .compress(&out, &mut wire)
        .expect("compressing inflated data");
    let mut check = Inflater::new(15, true);
    let mut again = bytes::BytesMut::new();
    check
        .inflate(&wire, &mut again, 64 << 10)
        .expect("round trip inflates");
    check.finish(&mut again, 64 << 10).expect("round trip ends");
    assert_eq!(out, again);
}

/// A fuzz entry point.
pub type Target = fn(&[u8]);

/// Every target by name, for the replayer.
pub const TARGETS: &[(&str, Target)] = &[
    ("decode_frames_server", decode_frames_server),
    ("decode_frames_client", decode_frames_client),
    ("parse_request", parse_request_bytes),
    ("parse_response", parse_response_bytes),
    ("inflate", inflate),
    ("session_requests", server::session_requests),
    ("api_requests", server::api_requests),
];
