//! The caller's gRPC deadline (`grpc-timeout`), as an instant our work must finish by.

use std::time::Duration;

use tokio::time::Instant;

/// Our answer must be on the wire before the caller gives up, and before tonic's own timeout
/// layer answers CANCELLED in our place; keep a small slice of the budget for that.
fn with_headroom(budget: Duration) -> Duration {
    budget.saturating_sub((budget / 20).min(Duration::from_millis(50)))
}

/// The instant by which this call must finish: the caller's deadline or `default`, whichever
/// comes first.
pub(crate) fn deadline(headers: &http::HeaderMap, default: Duration) -> Instant {
    let budget = headers
        .get("grpc-timeout")
        .and_then(|value| value.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map_or(default, |client| client.min(default));
    Instant::now() + with_headroom(budget)
}

/// `grpc-timeout`: at most 8 ASCII digits and a unit (H, M, S, m, u, n), per the gRPC spec.
fn parse_grpc_timeout(raw: &str) -> Option<Duration> {
    // ASCII first: splitting off the last byte of anything else could split a character.
    if !raw.is_ascii() {
        return None;
    }
    let (digits, unit) = raw.split_at(raw.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value * 3600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_units_parse_and_garbage_does_not() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for garbage in ["", "S", "5", "5s", "123456789S", "-5S", "5 S", "٥S"] {
            assert_eq!(parse_grpc_timeout(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn the_shorter_of_caller_and_default_wins() {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-timeout", "100m".parse().unwrap());
        let until = deadline(&headers, Duration::from_secs(15)) - Instant::now();
        assert!(
            until <= Duration::from_millis(100) && until >= Duration::from_millis(80),
            "{until:?}"
        );
        let until = deadline(&http::HeaderMap::new(), Duration::from_secs(2)) - Instant::now();
        assert!(
            until <= Duration::from_secs(2) && until >= Duration::from_millis(1900),
            "{until:?}"
        );
    }

    proptest::proptest! {
        /// Found by this property: a value ending in a multi-byte character made `split_at`
        /// panic (tonic's `to_str` only lets ASCII through today; the parser no longer relies
        /// on that).
        #[test]
        fn any_grpc_timeout_value_parses_or_is_ignored_without_panicking(raw in "\\PC{0,12}|[0-9]{1,10}[HMSmun]") {
            if let Some(parsed) = parse_grpc_timeout(&raw) {
                proptest::prop_assert!(raw.len() <= 9 && raw.is_ascii());
                proptest::prop_assert!(parsed <= Duration::from_secs(99_999_999 * 3600));
            }
        }
    }
}
