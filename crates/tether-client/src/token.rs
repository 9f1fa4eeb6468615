//! What the client reads of a JWT: only when it expires, to refresh it in time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;

/// How long `token` has left, from its `exp` claim; None without one (or
/// for a token that is not a JWT: the server judges those).
pub(crate) fn lifetime(token: &str) -> Option<Duration> {
    let claims = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims.trim_end_matches('='))
        .ok()?;
    let exp = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()?
        .get("exp")?
        .as_u64()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(exp.saturating_sub(now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_expiry_of_a_jwt() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = format!(r#"{{"sub":"a","exp":{}}}"#, now + 60);
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims);
        let left = lifetime(&format!("e30.{body}.sig")).unwrap();
        assert!(left <= Duration::from_secs(60) && left >= Duration::from_secs(58));
        assert_eq!(lifetime("not a token"), None);
        assert_eq!(lifetime("e30.e30.sig"), None);
    }
}
