//! Parsing of option values that are not plain numbers: dates, timestamps, decimals and
//! durations. Each parser returns a reason on failure; the caller names the option.

use chrono::{NaiveDate, NaiveDateTime};

/// Days since the epoch of `YYYY-MM-DD`, or a plain integer number of days.
pub(crate) fn parse_date_days(value: &str) -> Result<i64, String> {
    if let Ok(days) = value.parse::<i64>() {
        return Ok(days);
    }
    let date = NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map_err(|_| "expected a date as YYYY-MM-DD or a number of days".to_string())?;
    Ok(date.signed_duration_since(epoch_date()).num_days())
}

/// Microseconds since the epoch of `YYYY-MM-DD[ HH:MM:SS[.ffffff]]` (or with `T`), or a plain
/// integer number of microseconds.
pub(crate) fn parse_timestamp_micros(value: &str) -> Result<i64, String> {
    if let Ok(micros) = value.parse::<i64>() {
        return Ok(micros);
    }
    let reason = || {
        "expected a timestamp as YYYY-MM-DD[ HH:MM:SS[.ffffff]] or a number of microseconds"
            .to_string()
    };
    let normalized = value.replacen('T', " ", 1);
    let timestamp = if normalized.contains(' ') {
        NaiveDateTime::parse_from_str(&normalized, "%Y-%m-%d %H:%M:%S%.f").map_err(|_| reason())?
    } else {
        NaiveDate::parse_from_str(&normalized, "%Y-%m-%d")
            .map_err(|_| reason())?
            .and_hms_opt(0, 0, 0)
            .ok_or_else(reason)?
    };
    Ok(timestamp.and_utc().timestamp_micros())
}

/// A duration as `<integer><unit>` parts, optionally separated by spaces, e.g. `1h 30min`,
/// `10s`, `2 days`, in microseconds. Units: `us`, `ms`, `s`/`sec`/`second(s)`,
/// `m`/`min`/`minute(s)`, `h`/`hour(s)`, `d`/`day(s)`.
pub(crate) fn parse_duration_micros(value: &str) -> Result<i64, String> {
    let reason = || "expected a duration such as 10s, 30min, 1h 30m or 2 days".to_string();
    let mut rest = value.trim();
    if rest.is_empty() {
        return Err(reason());
    }
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(reason());
        }
        let amount: i64 = rest[..digits].parse().map_err(|_| reason())?;
        rest = rest[digits..].trim_start();
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..letters] {
            "us" => 1,
            "ms" => 1_000,
            "s" | "sec" | "secs" | "second" | "seconds" => 1_000_000,
            "m" | "min" | "mins" | "minute" | "minutes" => 60_000_000,
            "h" | "hour" | "hours" => 3_600_000_000,
            "d" | "day" | "days" => 86_400_000_000,
            _ => return Err(reason()),
        };
        rest = rest[letters..].trim_start();
        total = amount
            .checked_mul(unit)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(|| "duration is too long".to_string())?;
    }
    Ok(total)
}

/// A decimal literal (`-12.5`, `3`) as an integer scaled by `10^scale`. More fractional digits
/// than `scale` is an error rather than a silent rounding.
pub(crate) fn parse_decimal(value: &str, scale: i8) -> Result<i128, String> {
    let reason = || format!("expected a decimal number with at most {scale} decimal places");
    let (negative, digits) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value.strip_prefix('+').unwrap_or(value)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let scale_digits = usize::try_from(scale.max(0)).unwrap_or(0);
    let valid = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !valid(whole) || !valid(fraction) {
        return Err(reason());
    }
    if fraction.len() > scale_digits {
        return Err(reason());
    }
    let mut scaled: i128 = 0;
    let padded = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(scale_digits);
    for digit in whole.bytes().chain(padded) {
        scaled = scaled
            .checked_mul(10)
            .and_then(|s| s.checked_add(i128::from(digit - b'0')))
            .ok_or_else(|| "number is too large".to_string())?;
    }
    Ok(if negative { -scaled } else { scaled })
}

fn epoch_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_date_days("1970-01-02"), Ok(1));
        assert_eq!(parse_date_days("-3"), Ok(-3));
        assert!(parse_date_days("2024-13-01").is_err());
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp_micros("1970-01-01 00:00:01"), Ok(1_000_000));
        assert_eq!(parse_timestamp_micros("1970-01-01T00:00:00.5"), Ok(500_000));
        assert_eq!(parse_timestamp_micros("1970-01-02"), Ok(86_400_000_000));
        assert_eq!(parse_timestamp_micros("42"), Ok(42));
        assert!(parse_timestamp_micros("yesterday").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_micros("10s"), Ok(10_000_000));
        assert_eq!(parse_duration_micros("1h 30min"), Ok(5_400_000_000));
        assert_eq!(parse_duration_micros("2 days"), Ok(172_800_000_000));
        assert!(parse_duration_micros("10").is_err());
        assert!(parse_duration_micros("10 fortnights").is_err());
        assert!(parse_duration_micros("").is_err());
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal("12.5", 2), Ok(1250));
        assert_eq!(parse_decimal("-3", 2), Ok(-300));
        assert_eq!(parse_decimal(".25", 2), Ok(25));
        assert!(parse_decimal("1.234", 2).is_err());
        assert!(parse_decimal("1e3", 2).is_err());
        assert!(parse_decimal("-", 2).is_err());
    }
}
