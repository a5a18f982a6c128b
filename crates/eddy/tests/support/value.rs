//! Decodes binary result values of any type into the text sqllogictest
//! compares, the way PostgreSQL prints them in text format.

use postgres_types::{FromSql, Type};

/// A result value as text (None for NULL).
pub struct Value(pub Option<String>);

type Error = Box<dyn std::error::Error + Sync + Send>;

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Error> {
        let text = match *ty {
            Type::BOOL => if raw.first() == Some(&1) { "t" } else { "f" }.to_string(),
            Type::INT2 => i16::from_sql(ty, raw)?.to_string(),
            Type::INT4 => i32::from_sql(ty, raw)?.to_string(),
            Type::INT8 => i64::from_sql(ty, raw)?.to_string(),
            Type::OID => u32::from_sql(ty, raw)?.to_string(),
            Type::FLOAT4 => float(f32::from_sql(ty, raw)? as f64, 6),
            Type::FLOAT8 => float(f64::from_sql(ty, raw)?, 15),
            Type::NUMERIC => numeric(raw)?,
            Type::DATE => date(i32::from_sql(&Type::INT4, raw)?),
            Type::TIMESTAMP => timestamp(i64::from_sql(&Type::INT8, raw)?),
            Type::TIMESTAMPTZ => format!("{}+00", timestamp(i64::from_sql(&Type::INT8, raw)?)),
            Type::INTERVAL => interval(raw)?,
            Type::BYTEA => {
                let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
                format!("\\x{hex}")
            }
            _ => String::from_utf8(raw.to_vec())?,
        };
        Ok(Value(Some(text)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Error> {
        Ok(Value(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// PostgreSQL's float output: shortest round-trip digits, in scientific
/// notation (two-digit exponent) below 1e-4 or from 10^15 (float4: 10^6).
fn float(value: f64, digits: i32) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let (plain, scientific) = if digits == 6 {
        (format!("{}", value as f32), format!("{:e}", value as f32))
    } else {
        (format!("{value}"), format!("{value:e}"))
    };
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if value == 0.0 || (-4..digits).contains(&exponent) {
        plain
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

fn read_i16(raw: &[u8], at: usize) -> Result<i16, Error> {
    Ok(i16::from_be_bytes(
        raw.get(at..at + 2).ok_or("short numeric")?.try_into()?,
    ))
}

/// PostgreSQL's binary NUMERIC: digit count, weight, sign, display scale,
/// then base-10000 digits.
fn numeric(raw: &[u8]) -> Result<String, Error> {
    let ndigits = read_i16(raw, 0)? as usize;
    let weight = read_i16(raw, 2)? as i32;
    let sign = read_i16(raw, 4)? as u16;
    let scale = read_i16(raw, 6)? as usize;
    if sign == 0xC000 {
        return Ok("NaN".into());
    }
    let digits: Vec<i16> = (0..ndigits)
        .map(|i| read_i16(raw, 8 + 2 * i))
        .collect::<Result<_, _>>()?;
    let mut integer = String::new();
    for position in 0..=weight.max(0) {
        let digit = if position <= weight {
            digits.get(position as usize).copied().unwrap_or(0)
        } else {
            0
        };
        if integer.is_empty() {
            if weight >= 0 {
                integer.push_str(&digit.to_string());
            }
        } else {
            integer.push_str(&format!("{digit:04}"));
        }
    }
    if integer.is_empty() {
        integer.push('0');
    }
    let mut fraction = String::new();
    let mut position = weight + 1;
    while fraction.len() < scale {
        let digit = if position >= 0 {
            digits.get(position as usize).copied().unwrap_or(0)
        } else {
            0
        };
        fraction.push_str(&format!("{digit:04}"));
        position += 1;
    }
    fraction.truncate(scale);
    let sign = if sign == 0x4000 { "-" } else { "" };
    Ok(if scale > 0 {
        format!("{sign}{integer}.{fraction}")
    } else {
        format!("{sign}{integer}")
    })
}

const UNIX_TO_POSTGRES_DAYS: i64 = 10_957;

fn civil(days_since_unix: i64) -> (i64, u32, u32) {
    // Howard Hinnant's days-to-civil algorithm.
    let z = days_since_unix + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn date(days: i32) -> String {
    let (y, m, d) = civil(days as i64 + UNIX_TO_POSTGRES_DAYS);
    format!("{y:04}-{m:02}-{d:02}")
}

fn timestamp(micros: i64) -> String {
    let days = micros.div_euclid(86_400_000_000);
    let rest = micros.rem_euclid(86_400_000_000);
    let (y, m, d) = civil(days + UNIX_TO_POSTGRES_DAYS);
    let (h, rest) = (rest / 3_600_000_000, rest % 3_600_000_000);
    let (min, rest) = (rest / 60_000_000, rest % 60_000_000);
    let (s, us) = (rest / 1_000_000, rest % 1_000_000);
    let mut text = format!("{y:04}-{m:02}-{d:02} {h:02}:{min:02}:{s:02}");
    if us > 0 {
        let fraction = format!("{us:06}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    text
}

fn interval(raw: &[u8]) -> Result<String, Error> {
    let micros = i64::from_be_bytes(raw.get(0..8).ok_or("short interval")?.try_into()?);
    let days = i32::from_be_bytes(raw.get(8..12).ok_or("short interval")?.try_into()?);
    let months = i32::from_be_bytes(raw.get(12..16).ok_or("short interval")?.try_into()?);
    let mut parts = Vec::new();
    let (years, months) = (months / 12, months % 12);
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n.abs() == 1 { "" } else { "s" });
    if years != 0 {
        parts.push(plural(years as i64, "year"));
    }
    if months != 0 {
        parts.push(plural(months as i64, "mon"));
    }
    if days != 0 {
        parts.push(plural(days as i64, "day"));
    }
    if micros != 0 || parts.is_empty() {
        let sign = if micros < 0 { "-" } else { "" };
        let micros = micros.abs();
        let (h, rest) = (micros / 3_600_000_000, micros % 3_600_000_000);
        let (m, rest) = (rest / 60_000_000, rest % 60_000_000);
        let (s, us) = (rest / 1_000_000, rest % 1_000_000);
        let mut time = format!("{sign}{h:02}:{m:02}:{s:02}");
        if us > 0 {
            time.push_str(format!(".{us:06}").trim_end_matches('0'));
        }
        parts.push(time);
    }
    Ok(parts.join(" "))
}
