//! Authentication: JWTs (HS256, RS256, ES256) presented in `connect`, with `exp`,
//! `sub` and optional channel claims.

use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::protocol::{ErrorBody, ErrorCode};

/// How clients authenticate: the keys that verify their tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AuthConfig {
    /// Whether clients without a token may subscribe and publish. Unset:
    /// allowed only when no key is set (see [`AuthConfig::anonymous`]).
    /// Default: unset.
    #[schemars(extend("x-alias" = "allow-anonymous"))]
    pub anonymous: Option<bool>,
    /// Shared secret for HS256 client tokens. Default: none.
    #[schemars(extend("x-alias" = "jwt-hmac-secret"))]
    pub hmac_secret: Option<String>,
    /// PEM file with the RSA public key for RS256 client tokens, read at
    /// start. Default: none.
    #[schemars(extend("x-alias" = "jwt-rsa-public-key"))]
    pub rsa_public_key_file: Option<PathBuf>,
    /// PEM file with the P-256 public key for ES256 client tokens, read at
    /// start. Default: none.
    #[schemars(extend("x-alias" = "jwt-ec-public-key"))]
    pub ec_public_key_file: Option<PathBuf>,
    /// The RS256 key itself, for code that holds it in memory rather than in
    /// a file (not a setting of the file). Default: none.
    #[serde(skip)]
    #[schemars(skip)]
    pub rsa_public_key_pem: Option<String>,
    /// The ES256 key itself, for code that holds it in memory.
    /// Default: none.
    #[serde(skip)]
    #[schemars(skip)]
    pub ec_public_key_pem: Option<String>,
}

impl AuthConfig {
    /// Sets [`AuthConfig::hmac_secret`].
    pub fn hmac_secret(mut self, secret: impl Into<String>) -> Self {
        self.hmac_secret = Some(secret.into());
        self
    }

    /// Sets [`AuthConfig::rsa_public_key_pem`].
    pub fn rsa_public_key_pem(mut self, pem: impl Into<String>) -> Self {
        self.rsa_public_key_pem = Some(pem.into());
        self
    }

    /// Sets [`AuthConfig::ec_public_key_pem`].
    pub fn ec_public_key_pem(mut self, pem: impl Into<String>) -> Self {
        self.ec_public_key_pem = Some(pem.into());
        self
    }

    /// Sets [`AuthConfig::anonymous`].
    pub fn allow_anonymous(mut self, allowed: bool) -> Self {
        self.anonymous = Some(allowed);
        self
    }

    /// Whether anonymous clients are allowed: as configured, else only when no
    /// verification key is set.
    pub fn anonymous(&self) -> bool {
        self.anonymous.unwrap_or(
            self.hmac_secret.is_none()
                && self.rsa_public_key_pem.is_none()
                && self.rsa_public_key_file.is_none()
                && self.ec_public_key_pem.is_none()
                && self.ec_public_key_file.is_none(),
        )
    }
}

/// A key that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Its file could not be read.
    #[error("auth.{setting} = {path}: {source}")]
    Read {
        /// The setting that names the file.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It is not a key of its kind.
    #[error("invalid {algorithm} key: {source}")]
    Invalid {
        /// RS256 or ES256.
        algorithm: &'static str,
        /// Why.
        #[source]
        source: jsonwebtoken::errors::Error,
    },
}

/// The PEM text of a key: given in memory, or read from its file.
fn pem(
    setting: &'static str,
    text: &Option<String>,
    file: &Option<PathBuf>,
) -> Result<Option<String>, KeyError> {
    if let Some(text) = text {
        return Ok(Some(text.clone()));
    }
    file.as_ref()
        .map(|path| {
            std::fs::read_to_string(path).map_err(|source| KeyError::Read {
                setting,
                path: path.clone(),
                source,
            })
        })
        .transpose()
}

/// Claims tether reads; others are ignored.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[allow(dead_code)]
    exp: u64,
    #[serde(default)]
    channels: Option<Vec<String>>,
}

/// Who a connection belongs to, once it presented a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub`.
    pub user: String,
    /// Channels the token allows (`None`: any); a trailing `*` matches a prefix,
    /// e.g. `chat:*`.
    pub channels: Option<Vec<String>>,
}

impl Identity {
    /// Whether this identity may use `channel`.
    pub fn allows(&self, channel: &str) -> bool {
        match &self.channels {
            None => true,
            Some(patterns) => patterns.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => channel.starts_with(prefix),
                None => p == channel,
            }),
        }
    }
}

/// Verifies tokens against the configured keys.
pub struct Verifier {
    keys: Vec<(Algorithm, DecodingKey)>,
    anonymous: bool,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algorithms: Vec<_> = self.keys.iter().map(|(a, _)| a).collect();
        f.debug_struct("Verifier")
            .field("algorithms", &algorithms)
            .field("anonymous", &self.anonymous)
            .finish()
    }
}

impl Verifier {
    /// Loads the keys of `config`.
    pub fn new(config: &AuthConfig) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        if let Some(secret) = &config.hmac_secret {
            keys.push((
                Algorithm::HS256,
                DecodingKey::from_secret(secret.as_bytes()),
            ));
        }
        // The public-key algorithms: each key given in memory or by its file.
        type Decode = fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>;
        let public: [(Algorithm, &str, &'static str, _, _, Decode); 2] = [
            (
                Algorithm::RS256,
                "RS256",
                "rsa_public_key_file",
                &config.rsa_public_key_pem,
                &config.rsa_public_key_file,
                DecodingKey::from_rsa_pem,
            ),
            (
                Algorithm::ES256,
                "ES256",
                "ec_public_key_file",
                &config.ec_public_key_pem,
                &config.ec_public_key_file,
                DecodingKey::from_ec_pem,
            ),
        ];
        for (algorithm, name, setting, text, file, decode) in public {
            if let Some(pem) = pem(setting, text, file)? {
                let key = decode(pem.as_bytes()).map_err(|source| KeyError::Invalid {
                    algorithm: name,
                    source,
                })?;
                keys.push((algorithm, key));
            }
        }
        Ok(Self {
            keys,
            anonymous: config.anonymous(),
        })
    }

    /// Whether clients without a token may subscribe and publish.
    pub fn anonymous(&self) -> bool {
        self.anonymous
    }

    /// Checks signature, algorithm and expiry; returns the identity.
    pub fn verify(&self, token: &str) -> Result<Identity, ErrorBody> {
        let unauthorized = |why: String| ErrorCode::Unauthorized.body(why);
        let header =
            decode_header(token).map_err(|e| unauthorized(format!("malformed token: {e}")))?;
        let Some((algorithm, key)) = self.keys.iter().find(|(a, _)| *a == header.alg) else {
            return Err(unauthorized(format!(
                "tokens signed with {:?} are not accepted",
                header.alg
            )));
        };
        let mut validation = Validation::new(*algorithm);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = decode::<Claims>(token, key, &validation)
            .map_err(|e| unauthorized(format!("invalid token: {e}")))?;
        Ok(Identity {
            user: data.claims.sub,
            channels: data.claims.channels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_channel_patterns() {
        let identity = Identity {
            user: "u".into(),
            channels: Some(vec!["chat:*".into(), "news".into()]),
        };
        assert!(identity.allows("chat:lobby"));
        assert!(identity.allows("news"));
        assert!(!identity.allows("newsroom"));
        assert!(!identity.allows("scores:1"));
    }

    #[test]
    fn allows_anonymous_only_without_keys_unless_told() {
        assert!(AuthConfig::default().anonymous());
        let keyed = AuthConfig::default().hmac_secret("s");
        assert!(!keyed.anonymous());
        assert!(keyed.allow_anonymous(true).anonymous());
    }

    #[test]
    fn public_keys_come_from_memory_or_their_file_and_bad_ones_are_named() {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let path = std::env::temp_dir().join(format!("tether-es256-{}.pem", std::process::id()));
        std::fs::write(&path, pair.public_key_pem()).unwrap();
        let from_file = AuthConfig {
            ec_public_key_file: Some(path.clone()),
            ..AuthConfig::default()
        };
        let verifier = Verifier::new(&from_file).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(verifier.keys.len(), 1);
        assert!(!verifier.anonymous(), "a key turns anonymous access off");
        let missing = AuthConfig {
            rsa_public_key_file: Some(path.clone()),
            ..AuthConfig::default()
        };
        let error = Verifier::new(&missing).unwrap_err();
        assert!(
            matches!(
                &error,
                KeyError::Read {
                    setting: "rsa_public_key_file",
                    ..
                }
            ),
            "{error}"
        );
        let garbage = AuthConfig::default().rsa_public_key_pem("not a key");
        let error = Verifier::new(&garbage).unwrap_err();
        assert!(
            matches!(
                &error,
                KeyError::Invalid {
                    algorithm: "RS256",
                    ..
                }
            ),
            "{error}"
        );
    }
}
