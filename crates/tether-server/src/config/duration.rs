//! How durations are written in the configuration, everywhere (file,
//! environment, flags): a number with a unit, `"25s"`, `"1.5s"`, `"500ms"`,
//! `"2m"`, `"1h"`. A bare number, `25` or `"25"`, is read as seconds.
//! Negative, infinite and unreadable values are refused.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Units a duration may carry, in the order they are tried, with their
/// length in seconds.
const UNITS: [(&str, f64); 4] = [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)];

/// Longest duration accepted, so that the arithmetic on it cannot overflow.
const MAX_SECONDS: f64 = 1e12;

/// Reads `"25s"`, `"500ms"`, `"2m"`, `"1h"` or a bare number of seconds.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = UNITS
        .iter()
        .find_map(|(unit, scale)| {
            text.strip_suffix(unit)
                .map(str::trim_end)
                .filter(|rest| rest.ends_with(|c: char| c.is_ascii_digit() || c == '.'))
                .map(|rest| (rest, *scale))
        })
        .unwrap_or((text, 1.0));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (write \"25s\", \"500ms\", \"2m\")"))?;
    seconds(value * scale)
}

/// A number of seconds, checked.
fn seconds(value: f64) -> Result<Duration, String> {
    if (0.0..MAX_SECONDS).contains(&value) {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(format!("{value} s is not a duration of 0 or more"))
    }
}

/// Writes a duration the way [`parse`] reads it: milliseconds below a
/// second or when not whole seconds, seconds otherwise.
pub fn display(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else if duration.subsec_nanos() % 1_000_000 == 0 {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{}s", duration.as_secs_f64())
    }
}

/// What a duration may be given as.
#[derive(Deserialize)]
#[serde(untagged)]
enum Written {
    Seconds(f64),
    Text(String),
}

/// Serde's `with` for a [`Duration`].
pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&display(*duration))
}

/// Serde's `with` for a [`Duration`].
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    match Written::deserialize(deserializer)? {
        Written::Seconds(value) => seconds(value),
        Written::Text(text) => parse(&text),
    }
    .map_err(serde::de::Error::custom)
}

/// Serde's `with` for an age limit, where `"0s"` means none (`None`).
pub mod limit {
    use super::*;

    /// `None` is written `"0s"`.
    pub fn serialize<S: Serializer>(
        limit: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        super::serialize(&limit.unwrap_or(Duration::ZERO), serializer)
    }

    /// `"0s"` (or `0`) reads as `None`.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        let duration = super::deserialize(deserializer)?;
        Ok((!duration.is_zero()).then_some(duration))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_units_and_bare_seconds() {
        assert_eq!(parse("25s"), Ok(Duration::from_secs(25)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse(" 3 s "), Ok(Duration::from_secs(3)));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for bad in [
            "-5s", "-1", "ten", "5 weeks", "", "s", "inf", "NaN", "1e300s",
        ] {
            assert!(parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn writes_what_it_reads() {
        for duration in [
            Duration::ZERO,
            Duration::from_secs(25),
            Duration::from_millis(1500),
            Duration::from_millis(5),
            Duration::from_secs(600),
        ] {
            assert_eq!(parse(&display(duration)), Ok(duration), "{duration:?}");
        }
        assert_eq!(display(Duration::from_secs(25)), "25s");
        assert_eq!(display(Duration::from_millis(1500)), "1500ms");
    }
}
