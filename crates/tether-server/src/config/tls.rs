//! TLS for `tether serve`: `[tls]`.

use serde::{Deserialize, Serialize};

/// TLS: with a certificate and its key the server speaks only `https://`
/// and `wss://`, HTTP/2 or HTTP/1.1 as the client's ALPN chooses (a
/// WebSocket over either: RFC 8441 on HTTP/2); without, plain HTTP/1.1
/// (and h2c if asked). HTTP/2's limits are `[http2]`'s.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsConfig {
    /// PEM certificate chain (the server's first), read at start and again
    /// when it or `key_file` changes or on SIGHUP (a bad new pair is
    /// refused and the old one kept; no connection is dropped). The server
    /// does not start with only one of the two. Default: unset (no TLS).
    #[schemars(extend("x-alias" = "tls-cert"))]
    pub cert_file: Option<String>,
    /// PEM private key of `cert_file`. Default: unset.
    #[schemars(extend("x-alias" = "tls-key"))]
    pub key_file: Option<String>,
    /// Without a certificate: also speak HTTP/2 in the clear to clients that
    /// start with it (h2c with prior knowledge), for a TLS-terminating proxy
    /// in front that talks HTTP/2 to its upstreams. Default: `false`.
    #[schemars(extend("x-alias" = "h2c"))]
    pub h2c: bool,
}

impl TlsConfig {
    /// TLS with the certificate chain and key in these PEM files.
    pub fn files(cert_file: impl Into<String>, key_file: impl Into<String>) -> Self {
        Self {
            cert_file: Some(cert_file.into()),
            key_file: Some(key_file.into()),
            h2c: false,
        }
    }

    /// Whether TLS is on.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }
}
