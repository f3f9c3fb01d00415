//! Exact money: parsing amounts from JSON text and scaling minor units.
//!
//! Balances stay `rust_decimal::Decimal` from the byte they are parsed until
//! they become a float in `metrics.rs`. JSON numbers are read from their raw
//! text (serde_json's `raw_value`), never through `f64`.
//!
//! Everything here runs on upstream text, so nothing may panic: arithmetic
//! is checked (the lint below rejects a bare `+`), and a value `Decimal`
//! cannot hold exactly is an [`AmountError`], never a rounding.
#![deny(clippy::arithmetic_side_effects)]

use rust_decimal::Decimal;
use serde::de::{Deserializer, Error as _};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Why an amount could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AmountError {
    #[error("expected a number or decimal string, found {0}")]
    NotANumber(&'static str),
    #[error("number {0:?} is not an exact decimal within 28 significant digits")]
    OutOfRange(String),
    #[error("unknown currency {0:?}: no ISO 4217 minor-unit exponent (set one in `currency_exponents`)")]
    UnknownCurrency(String),
}

/// Parses the raw JSON text of a value (a number, or a string holding a
/// decimal such as `"1000.00"` or `"-3.20"`) into an exact decimal.
pub fn parse_json_amount(raw: &str) -> Result<Decimal, AmountError> {
    let raw = raw.trim();
    let text = match raw.as_bytes().first() {
        Some(b'"') => {
            let s: String = serde_json::from_str(raw).map_err(|_| AmountError::NotANumber("a malformed string"))?;
            return parse_decimal_text(s.trim());
        }
        Some(b'-' | b'0'..=b'9') => raw,
        Some(b'n') => return Err(AmountError::NotANumber("null")),
        Some(b't' | b'f') => return Err(AmountError::NotANumber("a boolean")),
        Some(b'{') => return Err(AmountError::NotANumber("an object")),
        Some(b'[') => return Err(AmountError::NotANumber("an array")),
        _ => return Err(AmountError::NotANumber("nothing")),
    };
    parse_decimal_text(text)
}

/// Parses decimal text strictly: optional sign, digits, optional fraction and
/// exponent. Rejects `1_000`, `NaN`, `Infinity`, empty strings and anything
/// `Decimal` would have to round (more than 28–29 significant digits, a
/// scale above 28, a magnitude above 7.9228…e28). `-0` reads as `0`.
pub fn parse_decimal_text(text: &str) -> Result<Decimal, AmountError> {
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, text.get(1..).unwrap_or("")),
        Some(b'+') => (false, text.get(1..).unwrap_or("")),
        _ => (false, text),
    };
    // 'e' and '.' are ASCII, so these splits are on char boundaries.
    let (mantissa, exponent) = match body.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (body, None),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let well_formed = !int_part.is_empty()
        && digits_ok(int_part)
        && frac_part.is_none_or(|f| !f.is_empty() && digits_ok(f))
        && exponent.is_none_or(|e| {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && digits_ok(e)
        });
    if !well_formed {
        return Err(AmountError::NotANumber(if text.is_empty() { "an empty string" } else { "a non-numeric string" }));
    }
    let out_of_range = || AmountError::OutOfRange(text.chars().take(40).collect());
    let mut value = match exponent {
        None => Decimal::from_str_exact(text).map_err(|_| out_of_range())?,
        Some(e) => scientific(int_part, frac_part.unwrap_or(""), e).ok_or_else(out_of_range)?,
    };
    if value.is_zero() {
        // `-0` is zero: no negative zero reaches a gauge.
        value.set_sign_positive(true);
    } else if negative && exponent.is_some() {
        value.set_sign_negative(true);
    }
    Ok(value)
}

/// The exact value of `int.frac × 10^exp` (digits already checked), normalised
/// (`1.50e1` is `15`); `None` when `Decimal` cannot hold it exactly.
/// (`Decimal::from_scientific` parses its mantissa with `from_str`, which
/// silently rounds past 28 digits, so it is not used.)
fn scientific(int_part: &str, frac_part: &str, exp: &str) -> Option<Decimal> {
    let digits = format!("{int_part}{frac_part}");
    let significant = digits.trim_start_matches('0');
    let trimmed = significant.trim_end_matches('0');
    if trimmed.is_empty() {
        return Some(Decimal::ZERO);
    }
    // Anything past 4 exponent digits is out of range for a non-zero value.
    let exp_negative = exp.starts_with('-');
    let exp_digits = exp.trim_start_matches(['-', '+']).trim_start_matches('0');
    if exp_digits.len() > 4 {
        return None;
    }
    let exp_abs = i64::from(exp_digits.parse::<u32>().unwrap_or(0));
    let exp = if exp_negative { exp_abs.checked_neg()? } else { exp_abs };
    // value = trimmed × 10^power
    let dropped_zeros = i64::try_from(significant.len().checked_sub(trimmed.len())?).ok()?;
    let frac_len = i64::try_from(frac_part.len()).ok()?;
    let power = exp.checked_sub(frac_len)?.checked_add(dropped_zeros)?;
    let mantissa: i128 = if trimmed.len() <= 29 { trimmed.parse().ok()? } else { return None };
    if power >= 0 {
        // Each step multiplies by ten; a non-zero mantissa overflows within 29 steps.
        let mut value = Decimal::try_from_i128_with_scale(mantissa, 0).ok()?;
        for _ in 0..power {
            value = value.checked_mul(Decimal::TEN)?;
        }
        Some(value)
    } else {
        let scale = u32::try_from(power.checked_neg()?).ok()?;
        Decimal::try_from_i128_with_scale(mantissa, scale).ok()
    }
}

/// Serde adapter: deserialize an exact amount from a JSON number or decimal
/// string. Only valid with serde_json deserializers (it reads raw text).
pub fn exact<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    let raw: Box<RawValue> = Deserialize::deserialize(d)?;
    parse_json_amount(raw.get()).map_err(D::Error::custom)
}

/// Like [`exact`], for optional fields (`null` or absent mean `None`).
pub fn exact_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    let raw: Option<Box<RawValue>> = Deserialize::deserialize(d)?;
    match raw {
        None => Ok(None),
        Some(r) if r.get() == "null" => Ok(None),
        Some(r) => parse_json_amount(r.get()).map(Some).map_err(D::Error::custom),
    }
}

/// ISO 4217 minor-unit exponents. Currencies absent here are not guessed.
const ISO_4217_EXPONENTS: &[(&str, u32)] = &[
    // zero-decimal currencies
    ("BIF", 0),
    ("CLP", 0),
    ("DJF", 0),
    ("GNF", 0),
    ("ISK", 0),
    ("JPY", 0),
    ("KMF", 0),
    ("KRW", 0),
    ("PYG", 0),
    ("RWF", 0),
    ("UGX", 0),
    ("UYI", 0),
    ("VND", 0),
    ("VUV", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("XPF", 0),
    // three-decimal currencies
    ("BHD", 3),
    ("IQD", 3),
    ("JOD", 3),
    ("KWD", 3),
    ("LYD", 3),
    ("OMR", 3),
    ("TND", 3),
    // four-decimal
    ("CLF", 4),
    ("UYW", 4),
    // two-decimal currencies
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("ANG", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHF", 2),
    ("CNY", 2),
    ("COP", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IRR", 2),
    ("JMD", 2),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KPW", 2),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("USD", 2),
    ("UZS", 2),
    ("VES", 2),
    ("WST", 2),
    ("XCD", 2),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWL", 2),
];

/// The ISO 4217 minor-unit exponent of `currency` (upper case), with
/// per-supplier `overrides` taking precedence.
pub fn exponent_of(currency: &str, overrides: &std::collections::BTreeMap<String, u32>) -> Result<u32, AmountError> {
    if let Some(e) = overrides.get(currency) {
        return Ok(*e);
    }
    ISO_4217_EXPONENTS
        .iter()
        .find(|(code, _)| *code == currency)
        .map(|(_, e)| *e)
        .ok_or_else(|| AmountError::UnknownCurrency(currency.chars().take(12).collect()))
}

/// Converts an amount in minor units (cents) to major units (dollars), exactly.
pub fn minor_to_major(minor: Decimal, currency: &str, overrides: &std::collections::BTreeMap<String, u32>) -> Result<Decimal, AmountError> {
    let exponent = exponent_of(currency, overrides)?;
    let out_of_range = || AmountError::OutOfRange(minor.to_string());
    let mut major = minor;
    major.set_scale(major.scale().checked_add(exponent).ok_or_else(out_of_range)?).map_err(|_| out_of_range())?;
    Ok(major)
}

/// Normalises a currency code: trimmed, upper case. Rejects anything that is
/// not 3 ASCII letters, so a garbage key never becomes a label value.
pub fn currency_code(raw: &str) -> Option<String> {
    let code = raw.trim().to_ascii_uppercase();
    (code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    #[test]
    fn numbers_keep_their_exact_text() {
        assert_eq!(parse_json_amount("284.50").unwrap().to_string(), "284.50");
        assert_eq!(parse_json_amount("12345678901234567.89").unwrap(), d("12345678901234567.89"));
        assert_eq!(parse_json_amount("-3.20").unwrap(), d("-3.20"));
        assert_eq!(parse_json_amount("\"1000.00\"").unwrap(), d("1000.00"));
        assert_eq!(parse_json_amount("\" -3.20 \"").unwrap(), d("-3.20"));
        assert_eq!(parse_json_amount("5e3").unwrap(), d("5000"));
        assert_eq!(parse_json_amount("1.5E-2").unwrap(), d("0.015"));
    }

    #[test]
    fn non_numbers_are_named() {
        assert_eq!(parse_json_amount("null"), Err(AmountError::NotANumber("null")));
        assert_eq!(parse_json_amount("true"), Err(AmountError::NotANumber("a boolean")));
        assert_eq!(parse_json_amount("{}"), Err(AmountError::NotANumber("an object")));
        assert_eq!(parse_json_amount("\"NaN\""), Err(AmountError::NotANumber("a non-numeric string")));
        assert_eq!(parse_json_amount("\"1_000.5\""), Err(AmountError::NotANumber("a non-numeric string")));
        assert_eq!(parse_json_amount("\"\""), Err(AmountError::NotANumber("an empty string")));
        assert_eq!(parse_json_amount("\"Infinity\""), Err(AmountError::NotANumber("a non-numeric string")));
    }

    #[test]
    fn out_of_range_is_an_error_not_a_rounding() {
        assert!(matches!(parse_json_amount("1e400"), Err(AmountError::OutOfRange(_))));
        assert!(matches!(parse_json_amount("123456789012345678901234567890.5"), Err(AmountError::OutOfRange(_))));
    }

    /// Issue 12: amounts at and past the edge of `Decimal`'s range. Each is
    /// either its exact value or an `OutOfRange` error, never a rounding or a panic.
    #[test]
    fn edge_amounts_are_exact_or_out_of_range() {
        let max = "79228162514264337593543950335";
        assert_eq!(parse_json_amount(max).unwrap(), Decimal::MAX);
        assert_eq!(parse_json_amount(&format!("-{max}")).unwrap(), Decimal::MIN);
        assert_eq!(parse_json_amount("7.9228162514264337593543950335e28").unwrap(), Decimal::MAX);
        assert_eq!(parse_json_amount("-7.9228162514264337593543950335e28").unwrap(), Decimal::MIN);
        assert_eq!(parse_json_amount("7e28").unwrap(), d("70000000000000000000000000000"));
        assert_eq!(parse_json_amount("-1e28").unwrap(), d("-10000000000000000000000000000"));
        for text in [
            "79228162514264337593543950336",
            "-79228162514264337593543950336",
            "7.9228162514264337593543950336e28",
            "7.92281625142643375935439503351e28",
            // 30 significant digits: `from_scientific` used to round these silently.
            "1.00000000000000000000000000001e0",
            "1.00000000000000000000000000001",
            "1e30",
            "-1e30",
            "1e-30",
            "1e29",
            "1e99999",
            "1e-99999",
            "\"1e-29\"",
        ] {
            assert!(matches!(parse_json_amount(text), Err(AmountError::OutOfRange(_))), "{text}: {:?}", parse_json_amount(text));
        }
        assert_eq!(parse_json_amount("1e28").unwrap(), d("10000000000000000000000000000"));
        assert_eq!(parse_json_amount("1e-28").unwrap(), d("0.0000000000000000000000000001"));
        assert_eq!(parse_json_amount("100e-29").unwrap(), d("0.000000000000000000000000001"));
        assert_eq!(parse_json_amount("-1.5e1").unwrap(), d("-15"));
        assert_eq!(parse_json_amount("1.50e1").unwrap().to_string(), "15");
        assert_eq!(parse_json_amount("0.000e99999").unwrap(), Decimal::ZERO);
        assert_eq!(parse_json_amount("1E+3").unwrap(), d("1000"));
    }

    #[test]
    fn negative_zero_is_zero() {
        for text in ["-0", "-0.00", "-0e5", "\"-0\"", "-0.0e-3"] {
            let v = parse_json_amount(text).unwrap();
            assert!(v.is_zero() && v.is_sign_positive(), "{text}: {v:?}");
            assert!(!v.to_string().starts_with('-'), "{text}: {v}");
        }
    }

    #[test]
    fn minor_units_past_the_scale_limit_are_out_of_range() {
        let none = BTreeMap::new();
        let tiny = d("0.0000000000000000000000000001");
        assert!(matches!(minor_to_major(tiny, "USD", &none), Err(AmountError::OutOfRange(_))));
        let overrides = BTreeMap::from([("USD".to_string(), u32::MAX)]);
        assert!(matches!(minor_to_major(d("1.5"), "USD", &overrides), Err(AmountError::OutOfRange(_))));
    }

    #[test]
    fn minor_units_scale_by_iso_exponent() {
        let none = BTreeMap::new();
        assert_eq!(minor_to_major(d("1050"), "USD", &none).unwrap(), d("10.50"));
        assert_eq!(minor_to_major(d("1500000"), "INR", &none).unwrap(), d("15000"));
        assert_eq!(minor_to_major(d("4676"), "XOF", &none).unwrap(), d("4676"));
        assert_eq!(minor_to_major(d("1234"), "KWD", &none).unwrap(), d("1.234"));
        let overrides = BTreeMap::from([("ISK".to_string(), 2)]);
        assert_eq!(minor_to_major(d("500"), "ISK", &overrides).unwrap(), d("5.00"));
        assert_eq!(minor_to_major(d("1"), "ZZZ", &none), Err(AmountError::UnknownCurrency("ZZZ".into())));
    }

    #[test]
    fn currency_codes_are_normalised() {
        assert_eq!(currency_code("usd").as_deref(), Some("USD"));
        assert_eq!(currency_code("khr ").as_deref(), Some("KHR"));
        assert_eq!(currency_code("US"), None);
        assert_eq!(currency_code("U\"D"), None);
    }
}
