//! Negotiating permessage-deflate parameters (RFC 7692 §5, §7.1).

use super::{DeflateConfig, Deflater, Inflater};
use crate::error::HandshakeError;
use crate::handshake::headers::parse_extensions;

/// The extension token.
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// What one endpoint agreed to: how it compresses and how it inflates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Window for outgoing messages; `None` when the peer asked for a window zlib
    /// cannot produce (2^8), in which case messages go out uncompressed, as the RFC
    /// allows for any message.
    pub compress_window_bits: Option<u8>,
    /// Reset the compressor after each message.
    pub compress_no_context_takeover: bool,
    /// Window the peer compresses with.
    pub inflate_window_bits: u8,
    /// The peer resets its compressor after each message.
    pub inflate_no_context_takeover: bool,
    /// Compression level from the configuration.
    pub level: u32,
    /// Messages below this many bytes are sent uncompressed.
    pub threshold: usize,
}

impl Negotiated {
    /// The compressor for outgoing messages, if any will be compressed.
    pub fn deflater(&self) -> Option<Deflater> {
        self.compress_window_bits
            .map(|bits| Deflater::new(self.level, bits, self.compress_no_context_takeover))
    }

    /// The inflater for incoming messages.
    pub fn inflater(&self) -> Inflater {
        Inflater::new(self.inflate_window_bits, self.inflate_no_context_takeover)
    }
}

/// Parsed parameters of one offer or answer; `None` fields were absent.
#[derive(Default)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value (allowed in a client's offer only).
    client_max_window_bits: Option<Option<u8>>,
}

fn parse_bits(value: &str) -> Option<u8> {
    // RFC 7692 §7.1.2: 1*DIGIT in 8..15, with no leading zero.
    if value.starts_with('0') || value.len() > 2 {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

fn parse_params(params: &[(String, Option<String>)]) -> Option<Params> {
    let mut p = Params::default();
    let mut seen: Vec<&str> = Vec::new();
    for (key, value) in params {
        if seen.contains(&key.as_str()) {
            return None;
        }
        seen.push(key);
        match (key.as_str(), value.as_deref()) {
            ("server_no_context_takeover", None) => p.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => p.client_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => p.server_max_window_bits = Some(parse_bits(v)?),
            ("client_max_window_bits", None) => p.client_max_window_bits = Some(None),
            ("client_max_window_bits", Some(v)) => {
                p.client_max_window_bits = Some(Some(parse_bits(v)?))
            }
            _ => return None,
        }
    }
    Some(p)
}

/// Server side: picks the first acceptable permessage-deflate offer from a
/// `Sec-WebSocket-Extensions` request value. Returns the agreement and the response
/// header value, or `None` to go on without compression.
pub fn server_negotiate(config: &DeflateConfig, header: &str) -> Option<(Negotiated, String)> {
    if !config.enabled {
        return None;
    }
    let offers = parse_extensions(header)?;
    offers
        .iter()
        .filter(|offer| offer.name == PERMESSAGE_DEFLATE)
        .find_map(|offer| accept_offer(config, &parse_params(&offer.params)?))
}

fn accept_offer(config: &DeflateConfig, offer: &Params) -> Option<(Negotiated, String)> {
    let mut response = String::from(PERMESSAGE_DEFLATE);
    let server_nct = offer.server_no_context_takeover || config.server_no_context_takeover;
    if server_nct {
        response.push_str("; server_no_context_takeover");
    }
    let compress_bits = offer
        .server_max_window_bits
        .unwrap_or(15)
        .min(config.server_max_window_bits);
    if offer.server_max_window_bits.is_some() {
        response.push_str(&format!("; server_max_window_bits={compress_bits}"));
    }
    // Taking the client's hint binds it, and lets us free the inflater between messages.
    let client_nct = offer.client_no_context_takeover || config.client_no_context_takeover;
    if client_nct {
        response.push_str("; client_no_context_takeover");
    }
    let inflate_bits = match offer.client_max_window_bits {
        Some(offered) => {
            let bits = offered.unwrap_or(15).min(config.client_max_window_bits);
            if offered.is_some() || bits < 15 {
                response.push_str(&format!("; client_max_window_bits={bits}"));
            }
            bits
        }
        // The client cannot limit its window: inflate with the full one.
        None => 15,
    };
    let negotiated = Negotiated {
        compress_window_bits: (compress_bits >= 9).then_some(compress_bits),
        compress_no_context_takeover: server_nct,
        inflate_window_bits: inflate_bits,
        inflate_no_context_takeover: client_nct,
        level: config.level,
        threshold: config.threshold,
    };
    Some((negotiated, response))
}

/// Client side: the `Sec-WebSocket-Extensions` value to offer, or `None` when
/// compression is off.
pub fn client_offer(config: &DeflateConfig) -> Option<String> {
    if !config.enabled {
        return None;
    }
    let mut offer = String::from(PERMESSAGE_DEFLATE);
    if config.server_no_context_takeover {
        offer.push_str("; server_no_context_takeover");
    }
    if config.client_no_context_takeover {
        offer.push_str("; client_no_context_takeover");
    }
    if config.server_max_window_bits < 15 {
        offer.push_str(&format!(
            "; server_max_window_bits={}",
            config.server_max_window_bits
        ));
    }
    match config.client_max_window_bits {
        15 => offer.push_str("; client_max_window_bits"),
        bits => offer.push_str(&format!("; client_max_window_bits={bits}")),
    }
    Some(offer)
}

/// Client side: validates the server's answer to [`client_offer`]. Anything the
/// offer did not allow fails the handshake (RFC 7692 §5.1).
pub fn client_accept(config: &DeflateConfig, header: &str) -> Result<Negotiated, HandshakeError> {
    let bad = || HandshakeError::UnexpectedExtension(header.to_owned());
    let offers = parse_extensions(header).ok_or_else(bad)?;
    let [answer] = offers.as_slice() else {
        return Err(bad());
    };
    if answer.name != PERMESSAGE_DEFLATE || !config.enabled {
        return Err(bad());
    }
    let params = parse_params(&answer.params).ok_or_else(bad)?;
    let inflate_bits = match params.server_max_window_bits {
        Some(bits)
            if config.server_max_window_bits < 15 && bits > config.server_max_window_bits =>
        {
            return Err(bad())
        }
        Some(bits) => bits,
        None if config.server_max_window_bits < 15 => config.server_max_window_bits,
        None => 15,
    };
    let compress_bits = match params.client_max_window_bits {
        Some(None) => return Err(bad()),
        Some(Some(bits)) => bits.min(config.client_max_window_bits),
        None => config.client_max_window_bits,
    };
    Ok(Negotiated {
        compress_window_bits: (compress_bits >= 9).then_some(compress_bits),
        compress_no_context_takeover: params.client_no_context_takeover
            || config.client_no_context_takeover,
        inflate_window_bits: inflate_bits,
        inflate_no_context_takeover: params.server_no_context_takeover,
        level: config.level,
        threshold: config.threshold,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Context takeover allowed both ways, so responses carry only what was asked.
    fn takeover() -> DeflateConfig {
        DeflateConfig::default()
            .server_no_context_takeover(false)
            .client_no_context_takeover(false)
    }

    fn server(header: &str) -> Option<(Negotiated, String)> {
        server_negotiate(&takeover(), header)
    }

    #[test]
    fn defaults_ask_for_no_context_takeover_both_ways() {
        let (n, response) = server_negotiate(
            &DeflateConfig::default(),
            "permessage-deflate; client_max_window_bits",
        )
        .unwrap();
        assert_eq!(
            response,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert!(n.compress_no_context_takeover && n.inflate_no_context_takeover);
        assert_eq!(
            client_offer(&DeflateConfig::default()).unwrap(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits"
        );
    }

    #[test]
    fn accepts_a_plain_offer() {
        let (n, response) = server("permessage-deflate").unwrap();
        assert_eq!(response, "permessage-deflate");
        assert_eq!(
            (n.compress_window_bits, n.inflate_window_bits),
            (Some(15), 15)
        );
        assert!(!n.compress_no_context_takeover && !n.inflate_no_context_takeover);
    }

    #[test]
    fn honours_requested_server_parameters() {
        let (n, response) =
            server("permessage-deflate; server_no_context_takeover; server_max_window_bits=10")
                .unwrap();
        assert_eq!(
            response,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10"
        );
        assert_eq!(n.compress_window_bits, Some(10));
        assert!(n.compress_no_context_takeover);
    }

    #[test]
    fn limits_the_client_window_when_configured() {
        let config = takeover()
            .client_max_window_bits(11)
            .client_no_context_takeover(true);
        let (n, response) =
            server_negotiate(&config, "permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(
            response,
            "permessage-deflate; client_no_context_takeover; client_max_window_bits=11"
        );
        assert_eq!(n.inflate_window_bits, 11);
        assert!(n.inflate_no_context_takeover);
    }

    #[test]
    fn answers_client_window_value_and_hint() {
        let (n, response) =
            server("permessage-deflate; client_no_context_takeover; client_max_window_bits=9")
                .unwrap();
        assert_eq!(
            response,
            "permessage-deflate; client_no_context_takeover; client_max_window_bits=9"
        );
        assert_eq!(n.inflate_window_bits, 9);
    }

    #[test]
    fn falls_back_to_the_next_offer() {
        // RFC 7692 §5: the first offer has an unknown parameter, the second is fine.
        let (_, response) =
            server("permessage-deflate; foo=1, permessage-deflate; server_max_window_bits=12")
                .unwrap();
        assert_eq!(response, "permessage-deflate; server_max_window_bits=12");
    }

    #[test]
    fn declines_invalid_offers() {
        for header in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(server(header), None, "{header}");
        }
    }

    #[test]
    fn sends_uncompressed_when_asked_for_an_8_bit_window() {
        let (n, response) = server("permessage-deflate; server_max_window_bits=8").unwrap();
        assert_eq!(response, "permessage-deflate; server_max_window_bits=8");
        assert_eq!(n.compress_window_bits, None);
    }

    #[test]
    fn declines_when_disabled() {
        assert_eq!(
            server_negotiate(&DeflateConfig::disabled(), "permessage-deflate"),
            None
        );
    }

    #[test]
    fn client_offers_and_accepts_parameters() {
        let config = takeover();
        assert_eq!(
            client_offer(&config).unwrap(),
            "permessage-deflate; client_max_window_bits"
        );
        let n = client_accept(
            &config,
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
        )
        .unwrap();
        assert_eq!(n.compress_window_bits, Some(10));
        assert!(n.inflate_no_context_takeover);
        assert!(!n.compress_no_context_takeover);
    }

    #[test]
    fn client_rejects_answers_it_did_not_allow() {
        let config = takeover().server_max_window_bits(10);
        for answer in [
            "permessage-deflate; server_max_window_bits=12",
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; unknown",
            "permessage-deflate, permessage-deflate",
            "other-extension",
        ] {
            assert!(client_accept(&config, answer).is_err(), "{answer}");
        }
    }
}
