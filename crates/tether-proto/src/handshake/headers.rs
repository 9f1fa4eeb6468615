//! Header value grammar shared by both handshake sides: comma-separated token
//! lists and the `Sec-WebSocket-Extensions` syntax (RFC 6455 §9.1).

/// Whether a comma-separated header value contains `token`, compared ignoring
/// ASCII case (`Connection: keep-alive, Upgrade`).
pub fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// One extension offer or answer: a name and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionOffer {
    /// Extension token, e.g. `permessage-deflate`, lower-cased.
    pub name: String,
    /// Parameters in order, names lower-cased; values unquoted.
    pub params: Vec<(String, Option<String>)>,
}

/// Parses a `Sec-WebSocket-Extensions` value into its offers, in order of preference.
/// Returns `None` on a syntax error.
pub fn parse_extensions(value: &str) -> Option<Vec<ExtensionOffer>> {
    let mut offers = Vec::new();
    for item in value.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let name = parts.next()?;
        if name.is_empty() {
            // Tolerate empty list elements ("a, , b"), as RFC 7230's list rule does.
            if item.trim().is_empty() {
                continue;
            }
            return None;
        }
        if !is_token(name) {
            return None;
        }
        let mut params = Vec::new();
        for param in parts {
            let (key, value) = match param.split_once('=') {
                Some((k, v)) => (k.trim(), Some(unquote(v.trim())?)),
                None => (param, None),
            };
            if !is_token(key) {
                return None;
            }
            params.push((key.to_ascii_lowercase(), value));
        }
        offers.push(ExtensionOffer {
            name: name.to_ascii_lowercase(),
            params,
        });
    }
    Some(offers)
}

fn unquote(value: &str) -> Option<String> {
    let inner = match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => value,
    };
    is_token(inner).then(|| inner.to_owned())
}

/// RFC 7230 `token`: visible ASCII except separators.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tokens_ignoring_case_and_spaces() {
        assert!(has_token(b"keep-alive, Upgrade", "upgrade"));
        assert!(has_token(b"UPGRADE", "upgrade"));
        assert!(!has_token(b"keep-alive, upgraded", "upgrade"));
    }

    #[test]
    fn parses_several_offers_with_parameters() {
        let offers =
            parse_extensions("permessage-deflate; client_max_window_bits; server_max_window_bits=\"10\", permessage-deflate")
                .unwrap();
        assert_eq!(offers.len(), 2);
        assert_eq!(offers[0].name, "permessage-deflate");
        assert_eq!(
            offers[0].params,
            vec![
                ("client_max_window_bits".into(), None),
                ("server_max_window_bits".into(), Some("10".into()))
            ]
        );
        assert!(offers[1].params.is_empty());
    }

    #[test]
    fn rejects_malformed_extension_syntax() {
        assert_eq!(
            parse_extensions("permessage-deflate; a=\"unterminated"),
            None
        );
        assert_eq!(parse_extensions("; a"), None);
        assert_eq!(parse_extensions("bad name"), None);
    }
}
