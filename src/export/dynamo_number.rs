//! DynamoDB numbers: which texts DynamoDB stores exactly, their size, and floats written
//! as numbers DynamoDB keeps.

/// Most significant digits of a DynamoDB number.
pub(crate) const MAX_DIGITS: usize = 38;
/// Largest decimal exponent (scientific notation) of a DynamoDB number: up to
/// 9.9999999999999999999999999999999999999E+125.
pub(crate) const MAX_EXP: i64 = 125;
/// Smallest decimal exponent of a non-zero DynamoDB number: down to 1E-130.
pub(crate) const MIN_EXP: i64 = -130;

/// A number text as DynamoDB sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NumberInfo {
    /// Negative (never for zero).
    pub negative: bool,
    /// Significant digits (leading and trailing zeros trimmed); 0 for zero.
    pub digits: usize,
    /// The exponent in scientific notation (`1.5E3` -> 3); 0 for zero.
    pub exponent: i64,
}

impl NumberInfo {
    /// The size DynamoDB counts for this number: one byte per two significant digits,
    /// plus one.
    pub fn size(&self) -> usize {
        self.digits.div_ceil(2) + 1
    }
}

fn digits_end(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && s[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// Parse `s` as a DynamoDB number: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, at
/// most 38 significant digits, zero or a magnitude in 1E-130 ..= 9.99..9E+125, and not a
/// negative zero (DynamoDB would store it as 0 and lose the sign). `None` when DynamoDB
/// would refuse the text or not return the same value.
pub(crate) fn parse(s: &[u8]) -> Option<NumberInfo> {
    let negative = s.first() == Some(&b'-');
    let int_start = usize::from(negative);
    let int_end = digits_end(s, int_start);
    let int = &s[int_start..int_end];
    if int.is_empty() || (int.len() > 1 && int[0] == b'0') {
        return None;
    }
    let mut i = int_end;
    let mut frac: &[u8] = &[];
    if s.get(i) == Some(&b'.') {
        let end = digits_end(s, i + 1);
        if end == i + 1 {
            return None;
        }
        frac = &s[i + 1..end];
        i = end;
    }
    let mut exp: i64 = 0;
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        let exp_negative = match s.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let end = digits_end(s, i);
        if end == i {
            return None;
        }
        for &d in &s[i..end] {
            // Saturates far beyond any exponent that could pass the range check.
            exp = (exp * 10 + i64::from(d - b'0')).min(1 << 40);
        }
        if exp_negative {
            exp = -exp;
        }
        i = end;
    }
    if i != s.len() {
        return None;
    }
    let digit_at = |k: usize| {
        if k < int.len() {
            int[k]
        } else {
            frac[k - int.len()]
        }
    };
    let total = int.len() + frac.len();
    let Some(first) = (0..total).find(|&k| digit_at(k) != b'0') else {
        // Zero: any form of it is the number 0, but "-0" would come back as "0".
        return (!negative).then_some(NumberInfo {
            negative: false,
            digits: 0,
            exponent: 0,
        });
    };
    let last = (first..total).rev().find(|&k| digit_at(k) != b'0')?;
    let digits = last - first + 1;
    if digits > MAX_DIGITS {
        return None;
    }
    let position = i64::try_from(int.len()).ok()? - 1 - i64::try_from(first).ok()?;
    let exponent = position.saturating_add(exp);
    if !(MIN_EXP..=MAX_EXP).contains(&exponent) {
        return None;
    }
    Some(NumberInfo {
        negative,
        digits,
        exponent,
    })
}

/// Whether DynamoDB stores the text `s` exactly as a number (see [`parse`]).
pub(crate) fn is_number(s: &[u8]) -> bool {
    parse(s).is_some()
}

/// A key that is equal for two texts of the same number (`1.5`, `1.50`, `15e-1`), for
/// finding duplicates in a number set. `None` when `s` is not a DynamoDB number.
pub(crate) fn value_key(s: &[u8]) -> Option<Vec<u8>> {
    let info = parse(s)?;
    let mut key = Vec::with_capacity(info.digits + 9);
    key.push(u8::from(info.negative));
    key.extend_from_slice(&info.exponent.to_le_bytes());
    key.extend(
        s.iter()
            .take_while(|&&c| c != b'e' && c != b'E')
            .filter(|c| c.is_ascii_digit())
            .skip_while(|&&c| c == b'0')
            .take(info.digits),
    );
    Some(key)
}

/// A float as text: the shortest decimal that reads back as the same float, in plain
/// notation from 1e-7 to 1e21 and in scientific notation (`1e300`) outside. Zero (either
/// sign) is `0`.
fn float_text(x: f64, plain: impl FnOnce() -> String, sci: impl FnOnce() -> String) -> String {
    if x == 0.0 {
        "0".to_owned()
    } else if (1e-7..1e21).contains(&x.abs()) {
        plain()
    } else {
        sci()
    }
}

/// How a float is written in DynamoDB: `Ok(number text)` when DynamoDB keeps it exactly
/// (the shortest round-trip decimal, within DynamoDB's range), else `Err(text)` for an
/// `S`: `inf`, `-inf`, `nan`, or the decimal text of a finite float out of DynamoDB's
/// range (e.g. `1e300`, `5e-324`).
pub(crate) fn f64_number(x: f64) -> Result<String, String> {
    if x.is_nan() {
        return Err("nan".to_owned());
    }
    if x.is_infinite() {
        return Err(if x > 0.0 { "inf" } else { "-inf" }.to_owned());
    }
    let text = float_text(x, || format!("{x}"), || format!("{x:e}"));
    if is_number(text.as_bytes()) {
        Ok(text)
    } else {
        Err(text)
    }
}

/// [`f64_number`] for an `f32`: the shortest decimal that reads back as the same `f32`.
pub(crate) fn f32_number(x: f32) -> Result<String, String> {
    if x.is_nan() {
        return Err("nan".to_owned());
    }
    if x.is_infinite() {
        return Err(if x > 0.0 { "inf" } else { "-inf" }.to_owned());
    }
    let text = float_text(f64::from(x), || format!("{x}"), || format!("{x:e}"));
    if is_number(text.as_bytes()) {
        Ok(text)
    } else {
        Err(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> bool {
        is_number(s.as_bytes())
    }

    #[test]
    fn the_edge_list() {
        let d38 = "12345678901234567890123456789012345678";
        let d39 = "123456789012345678901234567890123456789";
        assert!(n(d38));
        assert!(!n(d39));
        // Trailing zeros are not significant: 39 digits of which 38 significant.
        assert!(n("12345678901234567890123456789012345678000"));
        assert!(n("0.00000000000000000000000000000000000000012345"));
        assert!(n("1E125"));
        assert!(n("9.9999999999999999999999999999999999999E+125"));
        assert!(!n("1E126"));
        assert!(!n("99999999999999999999999999999999999999E+89"));
        assert!(n("-1E-130"));
        assert!(n("1E-130"));
        assert!(!n("1E-131"));
        assert!(!n("0.1E-130"));
        assert!(!n("007"));
        assert!(!n("00.5"));
        assert!(n("1.50"));
        assert!(!n("-0"));
        assert!(!n("-0.0"));
        assert!(!n("-0e5"));
        assert!(n("0"));
        assert!(n("0.0"));
        assert!(n("0e999999999999999999999"));
        assert!(n("0.5"));
        assert!(n("-0.5"));
        assert!(n("1e5"));
        assert!(n("1E+5"));
        assert!(n("1e-5"));
        assert!(n("1e0005"));
        assert!(!n(" 42"));
        assert!(!n("42 "));
        assert!(!n("+42"));
        assert!(!n("NaN"));
        assert!(!n("Infinity"));
        assert!(!n("-inf"));
        assert!(!n(""));
        assert!(!n("-"));
        assert!(!n("1."));
        assert!(!n(".5"));
        assert!(!n("1e"));
        assert!(!n("1e+"));
        assert!(!n("1e5.5"));
        assert!(!n("0x10"));
        assert!(!n("1_000"));
        assert!(!n("1e99999999999999999999999999"));
        assert!(!n("1e-99999999999999999999999999"));
        assert!(!n("١٢"));
    }

    #[test]
    fn sizes_count_significant_digits() {
        assert_eq!(parse(b"0").unwrap().size(), 1);
        assert_eq!(parse(b"7").unwrap().size(), 2);
        assert_eq!(parse(b"12").unwrap().size(), 2);
        assert_eq!(parse(b"123").unwrap().size(), 3);
        assert_eq!(parse(b"1200000").unwrap().size(), 2);
        assert_eq!(parse(b"-0.00123").unwrap().size(), 3);
        assert_eq!(
            parse(b"12345678901234567890123456789012345678")
                .unwrap()
                .size(),
            20
        );
    }

    #[test]
    fn value_keys_equal_for_equal_numbers() {
        assert_eq!(value_key(b"1.5"), value_key(b"1.50"));
        assert_eq!(value_key(b"1.5"), value_key(b"15e-1"));
        assert_eq!(value_key(b"100"), value_key(b"1e2"));
        assert_eq!(value_key(b"0"), value_key(b"0.000"));
        assert_ne!(value_key(b"1.5"), value_key(b"-1.5"));
        assert_ne!(value_key(b"15"), value_key(b"1.5"));
        assert_ne!(value_key(b"105"), value_key(b"15"));
        assert_eq!(value_key(b"x"), None);
    }

    #[test]
    fn floats_are_shortest_round_trip() {
        assert_eq!(f64_number(1.5), Ok("1.5".into()));
        assert_eq!(f64_number(0.1), Ok("0.1".into()));
        assert_eq!(f64_number(-0.0), Ok("0".into()));
        assert_eq!(f64_number(1e20), Ok("100000000000000000000".into()));
        assert_eq!(f64_number(1e21), Ok("1e21".into()));
        assert_eq!(f64_number(1.25e-8), Ok("1.25e-8".into()));
        assert_eq!(f64_number(1e125), Ok("1e125".into()));
        assert_eq!(f64_number(1e300), Err("1e300".into()));
        assert_eq!(f64_number(5e-324), Err("5e-324".into()));
        assert_eq!(f64_number(f64::INFINITY), Err("inf".into()));
        assert_eq!(f64_number(f64::NEG_INFINITY), Err("-inf".into()));
        assert_eq!(f64_number(f64::NAN), Err("nan".into()));
        assert_eq!(f32_number(0.1), Ok("0.1".into()));
        assert_eq!(f32_number(f32::MAX), Ok("3.4028235e38".into()));
        for x in [
            0.1,
            1.0 / 3.0,
            123456.789,
            -2.5e-100,
            f64::MAX / 1e200,
            1e-130,
        ] {
            let t = f64_number(x).unwrap();
            assert_eq!(t.parse::<f64>().unwrap(), x, "{t}");
        }
    }
}
