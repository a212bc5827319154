//! Resource quantities (`250m`, `64Mi`, `1e3`), read and written as Kubernetes does.
//!
//! A quantity keeps the text the user wrote, so that nothing stored changes shape; its
//! value is computed on demand, exactly, in nano-units (`1` is 10^9 nano-units).

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A resource amount as written in a manifest: `"500m"` of cpu, `"64Mi"` of memory.
///
/// On the wire it is a string; it also decodes from a JSON number, since YAML writes
/// `cpu: 1` and `cpu: 0.5` without quotes. The grammar is Kubernetes' own: a signed
/// decimal number followed by a decimal suffix (`n u m k M G T P E`), a binary suffix
/// (`Ki Mi Gi Ti Pi Ei`) or a decimal exponent (`1e3`, `1E-3`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Quantity(pub String);

/// Why a quantity could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantityError {
    /// The text is not a number followed by a suffix.
    Format,
    /// The number is followed by something that is not a known suffix.
    Suffix,
    /// The value does not fit in 128 bits of nano-units (about 1.7e29).
    TooLarge,
}

impl fmt::Display for QuantityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QuantityError::Format => {
                "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
            }
            QuantityError::Suffix => "unable to parse quantity's suffix",
            QuantityError::TooLarge => "quantity is too large",
        })
    }
}

impl std::error::Error for QuantityError {}

const NANOS_PER_UNIT: i128 = 1_000_000_000;
const DECIMAL_SUFFIXES: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];
const BINARY_SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

impl Quantity {
    /// Wraps the text of a quantity without checking it; [`Quantity::parse`] checks.
    pub fn new(text: impl Into<String>) -> Self {
        Quantity(text.into())
    }

    /// The quantity's text, as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The exact value in nano-units (`"1"` → 1_000_000_000, `"250m"` → 250_000_000).
    /// Precision finer than a nano-unit is rounded away from zero, as Kubernetes does.
    pub fn parse(&self) -> Result<i128, QuantityError> {
        parse_nanos(&self.0)
    }

    /// The value in thousandths, rounded up (away from zero): cpu `"250m"` → 250,
    /// `"1"` → 1000, `"0.5"` → 500. `None` if the quantity is invalid or out of range.
    pub fn to_millis(&self) -> Option<i64> {
        let nanos = self.parse().ok()?;
        i64::try_from(div_away_from_zero(nanos, 1_000_000)).ok()
    }

    /// The value in units, rounded up (away from zero): memory `"64Mi"` → 67108864,
    /// `"1G"` → 1000000000. `None` if the quantity is invalid or out of range.
    pub fn to_bytes(&self) -> Option<i64> {
        let nanos = self.parse().ok()?;
        i64::try_from(div_away_from_zero(nanos, NANOS_PER_UNIT)).ok()
    }

    /// The canonical quantity for an amount of thousandths: 250 → `"250m"`,
    /// 2000 → `"2"`, 1500 → `"1500m"`.
    pub fn from_millis(millis: i64) -> Self {
        if millis % 1000 != 0 {
            Quantity(format!("{millis}m"))
        } else {
            Quantity(with_suffix(
                i128::from(millis / 1000),
                1000,
                &DECIMAL_SUFFIXES,
            ))
        }
    }

    /// The canonical quantity for an amount of bytes: a binary suffix when the amount is
    /// a multiple of 1024 (67108864 → `"64Mi"`), a decimal one otherwise
    /// (1000000000 → `"1G"`, 1500 → `"1500"`).
    pub fn from_bytes(bytes: i64) -> Self {
        if bytes != 0 && bytes % 1024 == 0 {
            Quantity(with_suffix(i128::from(bytes), 1024, &BINARY_SUFFIXES))
        } else {
            Quantity(with_suffix(i128::from(bytes), 1000, &DECIMAL_SUFFIXES))
        }
    }
}

/// `value` divided by `base` as often as it goes evenly (up to the largest suffix), with
/// the suffix of that power.
fn with_suffix(mut value: i128, base: i128, suffixes: &[&str]) -> String {
    let mut power = 0;
    while value != 0 && value % base == 0 && power + 1 < suffixes.len() {
        value /= base;
        power += 1;
    }
    format!("{value}{}", suffixes[power])
}

/// `n / d` for positive `d`, rounded away from zero.
fn div_away_from_zero(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d == 0 {
        q
    } else if n > 0 {
        q + 1
    } else {
        q - 1
    }
}

fn parse_nanos(text: &str) -> Result<i128, QuantityError> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let negative = match bytes.first() {
        Some(b'-') => {
            i = 1;
            true
        }
        Some(b'+') => {
            i = 1;
            false
        }
        _ => false,
    };
    let digits_end = |from: usize| {
        from + bytes[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let int_end = digits_end(i);
    let int_digits = &text[i..int_end];
    i = int_end;
    let mut frac_digits = "";
    if bytes.get(i) == Some(&b'.') {
        let frac_end = digits_end(i + 1);
        frac_digits = &text[i + 1..frac_end];
        i = frac_end;
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return Err(QuantityError::Format);
    }

    // The value is mantissa × 10^-(fraction digits) × 2^pow2 × 10^pow10.
    let frac_digits = frac_digits.trim_end_matches('0');
    let mut mantissa: i128 = 0;
    for digit in int_digits
        .trim_start_matches('0')
        .bytes()
        .chain(frac_digits.bytes())
    {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(i128::from(digit - b'0')))
            .ok_or(QuantityError::TooLarge)?;
    }
    let (pow10, pow2): (i64, u32) = match &text[i..] {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        suffix => (parse_exponent(suffix)?, 0),
    };

    let scaled = mantissa
        .checked_mul(1i128 << pow2)
        .ok_or(QuantityError::TooLarge)?;
    let exponent = pow10 + 9 - frac_digits.len() as i64;
    let nanos = if scaled == 0 {
        0
    } else if exponent >= 0 {
        let factor = u32::try_from(exponent)
            .ok()
            .and_then(|e| 10i128.checked_pow(e))
            .ok_or(QuantityError::TooLarge)?;
        scaled.checked_mul(factor).ok_or(QuantityError::TooLarge)?
    } else {
        match u32::try_from(-exponent)
            .ok()
            .and_then(|e| 10i128.checked_pow(e))
        {
            Some(divisor) => div_away_from_zero(scaled, divisor),
            // Smaller than a nano-unit: rounds up to one.
            None => 1,
        }
    };
    Ok(if negative { -nanos } else { nanos })
}

/// The exponent of `1e3` / `1E-3`: `e` or `E`, an optional sign, digits.
fn parse_exponent(suffix: &str) -> Result<i64, QuantityError> {
    let rest = suffix
        .strip_prefix(['e', 'E'])
        .ok_or(QuantityError::Suffix)?;
    let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(QuantityError::Suffix);
    }
    let negative = rest.starts_with('-');
    let significant = digits.trim_start_matches('0');
    // Beyond a few dozen the value overflows or rounds to one nano-unit anyway.
    if significant.len() > 6 {
        return if negative {
            Ok(-1_000_000)
        } else {
            Err(QuantityError::TooLarge)
        };
    }
    let magnitude: i64 = significant.parse().unwrap_or(0);
    Ok(if negative { -magnitude } else { magnitude })
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Quantity {
    fn from(text: &str) -> Self {
        Quantity(text.to_string())
    }
}

impl From<String> for Quantity {
    fn from(text: String) -> Self {
        Quantity(text)
    }
}

/// Kubernetes' schema of a quantity: a string, or a number as YAML writes `cpu: 1`.
#[cfg(feature = "schema")]
impl schemars::JsonSchema for Quantity {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Quantity".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "quantity",
            "x-kubernetes-int-or-string": true,
        })
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct QuantityVisitor;

        impl Visitor<'_> for QuantityVisitor {
            type Value = Quantity;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity: a string such as \"250m\" or \"64Mi\", or a number")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Quantity, E> {
                Ok(Quantity(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
                if v.is_finite() {
                    Ok(Quantity(v.to_string()))
                } else {
                    Err(E::invalid_value(de::Unexpected::Float(v), &self))
                }
            }
        }

        deserializer.deserialize_any(QuantityVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nanos(text: &str) -> Result<i128, QuantityError> {
        Quantity::from(text).parse()
    }

    #[test]
    fn decimal_suffixes_scale_by_powers_of_ten() {
        assert_eq!(nanos("1n"), Ok(1));
        assert_eq!(nanos("1u"), Ok(1_000));
        assert_eq!(nanos("250m"), Ok(250_000_000));
        assert_eq!(nanos("1"), Ok(1_000_000_000));
        assert_eq!(nanos("2k"), Ok(2_000 * NANOS_PER_UNIT));
        assert_eq!(nanos("1M"), Ok(1_000_000 * NANOS_PER_UNIT));
        assert_eq!(nanos("1G"), Ok(1_000_000_000 * NANOS_PER_UNIT));
        assert_eq!(nanos("1T"), Ok(10i128.pow(12) * NANOS_PER_UNIT));
        assert_eq!(nanos("1P"), Ok(10i128.pow(15) * NANOS_PER_UNIT));
        assert_eq!(nanos("1E"), Ok(10i128.pow(18) * NANOS_PER_UNIT));
    }

    #[test]
    fn binary_suffixes_scale_by_powers_of_1024() {
        assert_eq!(Quantity::from("1Ki").to_bytes(), Some(1024));
        assert_eq!(Quantity::from("64Mi").to_bytes(), Some(67_108_864));
        assert_eq!(Quantity::from("1Gi").to_bytes(), Some(1 << 30));
        assert_eq!(Quantity::from("1Ti").to_bytes(), Some(1 << 40));
        assert_eq!(Quantity::from("1Pi").to_bytes(), Some(1 << 50));
        assert_eq!(Quantity::from("1Ei").to_bytes(), Some(1 << 60));
        assert_eq!(Quantity::from("1.5Gi").to_bytes(), Some(3 << 29));
    }

    #[test]
    fn exponents_and_fractions_are_exact() {
        assert_eq!(nanos("1e3"), Ok(1_000 * NANOS_PER_UNIT));
        assert_eq!(nanos("1E-3"), Ok(1_000_000));
        assert_eq!(nanos("1e+3"), Ok(1_000 * NANOS_PER_UNIT));
        assert_eq!(nanos("0.5"), Ok(500_000_000));
        assert_eq!(nanos(".5"), Ok(500_000_000));
        assert_eq!(nanos("5."), Ok(5 * NANOS_PER_UNIT));
        assert_eq!(
            nanos("0.1000000000000000000000000000000000000000"),
            Ok(100_000_000)
        );
        assert_eq!(nanos("+1"), Ok(NANOS_PER_UNIT));
        assert_eq!(nanos("-250m"), Ok(-250_000_000));
        assert_eq!(nanos("0"), Ok(0));
        assert_eq!(nanos("0Mi"), Ok(0));
    }

    #[test]
    fn finer_than_a_nano_unit_rounds_up() {
        assert_eq!(nanos("0.1n"), Ok(1));
        assert_eq!(nanos("1e-30"), Ok(1));
        assert_eq!(nanos("-0.1n"), Ok(-1));
    }

    #[test]
    fn malformed_quantities_are_rejected() {
        assert_eq!(nanos(""), Err(QuantityError::Format));
        assert_eq!(nanos("m"), Err(QuantityError::Format));
        assert_eq!(nanos("-"), Err(QuantityError::Format));
        assert_eq!(nanos("."), Err(QuantityError::Format));
        assert_eq!(nanos(" 1"), Err(QuantityError::Format));
        assert_eq!(nanos("1 "), Err(QuantityError::Suffix));
        assert_eq!(nanos("1K"), Err(QuantityError::Suffix));
        assert_eq!(nanos("1ki"), Err(QuantityError::Suffix));
        assert_eq!(nanos("1e"), Err(QuantityError::Suffix));
        assert_eq!(nanos("1e1.5"), Err(QuantityError::Suffix));
        assert_eq!(nanos("1.2.3"), Err(QuantityError::Suffix));
        assert_eq!(nanos("1Mii"), Err(QuantityError::Suffix));
        assert_eq!(nanos("1e40"), Err(QuantityError::TooLarge));
        assert_eq!(nanos("1e9999999999"), Err(QuantityError::TooLarge));
        assert_eq!(
            nanos("99999999999999999999999999999999999999999"),
            Err(QuantityError::TooLarge)
        );
    }

    #[test]
    fn millis_round_up() {
        assert_eq!(Quantity::from("250m").to_millis(), Some(250));
        assert_eq!(Quantity::from("1").to_millis(), Some(1000));
        assert_eq!(Quantity::from("0.5").to_millis(), Some(500));
        assert_eq!(Quantity::from("1u").to_millis(), Some(1));
        assert_eq!(Quantity::from("0.0001").to_millis(), Some(1));
        assert_eq!(Quantity::from("-1u").to_millis(), Some(-1));
        assert_eq!(Quantity::from("nonsense").to_millis(), None);
        assert_eq!(
            Quantity::from("1E").to_millis(),
            None,
            "10^21 millis do not fit in i64"
        );
    }

    #[test]
    fn bytes_round_up() {
        assert_eq!(Quantity::from("1G").to_bytes(), Some(1_000_000_000));
        assert_eq!(Quantity::from("1500m").to_bytes(), Some(2));
        assert_eq!(Quantity::from("128974848").to_bytes(), Some(128_974_848));
        assert_eq!(Quantity::from("129e6").to_bytes(), Some(129_000_000));
        assert_eq!(Quantity::from("123Mi").to_bytes(), Some(128_974_848));
    }

    #[test]
    fn constructors_write_canonical_text() {
        assert_eq!(Quantity::from_millis(250).0, "250m");
        assert_eq!(Quantity::from_millis(2000).0, "2");
        assert_eq!(Quantity::from_millis(1500).0, "1500m");
        assert_eq!(Quantity::from_millis(0).0, "0");
        assert_eq!(Quantity::from_millis(-250).0, "-250m");
        assert_eq!(Quantity::from_millis(3_000_000).0, "3k");
        assert_eq!(Quantity::from_bytes(67_108_864).0, "64Mi");
        assert_eq!(Quantity::from_bytes(1024).0, "1Ki");
        assert_eq!(Quantity::from_bytes(1_000_000_000).0, "1G");
        assert_eq!(Quantity::from_bytes(1500).0, "1500");
        assert_eq!(Quantity::from_bytes(0).0, "0");
        for millis in [1, 999, 1000, 1001, 123_456_000, -7] {
            assert_eq!(Quantity::from_millis(millis).to_millis(), Some(millis));
        }
        for bytes in [1, 1023, 1024, 1025, 3 << 30, 5_000_000] {
            assert_eq!(Quantity::from_bytes(bytes).to_bytes(), Some(bytes));
        }
    }

    #[test]
    fn decodes_strings_and_numbers_and_encodes_strings() {
        let q: Quantity = serde_json::from_str("\"64Mi\"").unwrap();
        assert_eq!(q.0, "64Mi");
        let q: Quantity = serde_json::from_str("1").unwrap();
        assert_eq!(q.0, "1");
        assert_eq!(q.to_millis(), Some(1000));
        let q: Quantity = serde_json::from_str("0.5").unwrap();
        assert_eq!(q.to_millis(), Some(500));
        assert_eq!(serde_json::to_string(&q).unwrap(), "\"0.5\"");
        assert!(serde_json::from_str::<Quantity>("true").is_err());
        assert!(serde_json::from_str::<Quantity>("null").is_err());
    }
}
