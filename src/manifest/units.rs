//! Checked newtypes for the values a manifest or config holds: function names, byte
//! quantities (Kubernetes style), CPU in millicores, and durations.
//!
//! Each parses from the text a user writes and renders back to the same canonical text, so
//! the registry can store what it was given and errors can quote it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A function's name: `[a-z0-9-]{1,63}`, not starting or ending with `-`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FunctionName(String);

impl FunctionName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for FunctionName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if s.is_empty() || s.len() > 63 || !ok_chars || s.starts_with('-') || s.ends_with('-') {
            return Err(format!(
                "invalid function name {s:?}: use 1 to 63 of [a-z0-9-], not starting or ending with '-'"
            ));
        }
        Ok(FunctionName(s))
    }
}

impl FromStr for FunctionName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::try_from(s.to_string())
    }
}

impl From<FunctionName> for String {
    fn from(n: FunctionName) -> String {
        n.0
    }
}

impl fmt::Display for FunctionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A size in bytes, written as a Kubernetes quantity: `128Mi`, `1Gi`, `512Ki`, `1G`, `4096`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Bytes(pub u64);

const BINARY_SUFFIXES: [(&str, u64); 5] = [
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("Pi", 1 << 50),
];
const DECIMAL_SUFFIXES: [(&str, u64); 5] = [
    ("k", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("P", 1_000_000_000_000_000),
];

impl FromStr for Bytes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("invalid quantity {s:?}: expected a whole number of bytes with an optional suffix Ki, Mi, Gi, Ti (or k, M, G, T), e.g. \"128Mi\"")
        };
        let (digits, mult) = BINARY_SUFFIXES
            .iter()
            .chain(DECIMAL_SUFFIXES.iter())
            .find_map(|(suf, m)| s.strip_suffix(suf).map(|d| (d, *m)))
            .unwrap_or((s, 1));
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        n.checked_mul(mult)
            .map(Bytes)
            .ok_or_else(|| format!("invalid quantity {s:?}: too large"))
    }
}

impl TryFrom<String> for Bytes {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Bytes> for String {
    fn from(b: Bytes) -> String {
        b.to_string()
    }
}

impl fmt::Display for Bytes {
    /// The largest binary suffix that divides the value exactly.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (suf, m) in BINARY_SUFFIXES.iter().rev() {
            if self.0 >= *m && self.0.is_multiple_of(*m) {
                return write!(f, "{}{}", self.0 / m, suf);
            }
        }
        write!(f, "{}", self.0)
    }
}

/// CPU in millicores: `250m`, `1`, `1.5` (cores), `2000m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Millicores(pub u32);

impl FromStr for Millicores {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("invalid CPU quantity {s:?}: expected millicores like \"250m\" or cores like \"1.5\"")
        };
        let m = if let Some(d) = s.strip_suffix('m') {
            if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            d.parse::<u32>().map_err(|_| bad())?
        } else {
            let (int, frac) = s.split_once('.').unwrap_or((s, ""));
            let digits_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
            if int.is_empty() || !digits_ok(int) || !digits_ok(frac) || frac.len() > 3 {
                return Err(bad());
            }
            let whole = int.parse::<u32>().map_err(|_| bad())?;
            let frac_m = format!("{frac:0<3}").parse::<u32>().map_err(|_| bad())?;
            whole
                .checked_mul(1000)
                .and_then(|w| w.checked_add(frac_m))
                .ok_or_else(bad)?
        };
        if m == 0 {
            return Err(format!("invalid CPU quantity {s:?}: must be more than 0"));
        }
        Ok(Millicores(m))
    }
}

impl TryFrom<String> for Millicores {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Millicores> for String {
    fn from(m: Millicores) -> String {
        m.to_string()
    }
}

impl fmt::Display for Millicores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}m", self.0)
    }
}

/// A duration written with a unit: `500ms`, `10s`, `2m`, `1h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Span(pub Duration);

impl FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("invalid duration {s:?}: expected a whole number with a unit ms, s, m or h, e.g. \"10s\"")
        };
        let (digits, unit_ms) = [("ms", 1u64), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)]
            .iter()
            .find_map(|(u, ms)| s.strip_suffix(u).map(|d| (d, *ms)))
            .ok_or_else(bad)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let ms = n.checked_mul(unit_ms).ok_or_else(bad)?;
        Ok(Span(Duration::from_millis(ms)))
    }
}

impl TryFrom<String> for Span {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Span> for String {
    fn from(d: Span) -> String {
        d.to_string()
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        for (unit, size) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1_000)] {
            if ms >= size && ms.is_multiple_of(size) {
                return write!(f, "{}{}", ms / size, unit);
            }
        }
        write!(f, "{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_to_bytes() {
        for (text, want) in [
            ("128Mi", 128 << 20),
            ("1Gi", 1 << 30),
            ("512Ki", 512 << 10),
            ("1G", 1_000_000_000),
            ("4096", 4096),
            ("0", 0),
        ] {
            assert_eq!(text.parse::<Bytes>().unwrap().0, want, "{text}");
        }
        for bad in [
            "",
            "Mi",
            "12XB",
            "-1Mi",
            "1.5Gi",
            " 1Mi",
            "99999999999999999999Pi",
        ] {
            assert!(bad.parse::<Bytes>().is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn quantities_round_trip() {
        // A deterministic sweep stands in for a property test: every value renders to a
        // text that parses back to itself.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..10_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = match i % 4 {
                0 => x % (1 << 40),
                1 => (x % 4096) << 20,
                2 => (x % 64) << 30,
                _ => x % 100_000,
            };
            let b = Bytes(v);
            assert_eq!(b.to_string().parse::<Bytes>().unwrap(), b);
        }
    }

    #[test]
    fn cpu_to_millicores() {
        for (text, want) in [
            ("250m", 250),
            ("1", 1000),
            ("1.5", 1500),
            ("0.1", 100),
            ("2000m", 2000),
        ] {
            assert_eq!(text.parse::<Millicores>().unwrap().0, want, "{text}");
        }
        for bad in ["", "m", "0", "0m", "1.2345", "-1", "abc", "1.5m"] {
            assert!(bad.parse::<Millicores>().is_err(), "{bad:?} should fail");
        }
        for m in 1..5000u32 {
            let c = Millicores(m);
            assert_eq!(c.to_string().parse::<Millicores>().unwrap(), c);
        }
    }

    #[test]
    fn durations() {
        assert_eq!("10s".parse::<Span>().unwrap().0, Duration::from_secs(10));
        assert_eq!(
            "500ms".parse::<Span>().unwrap().0,
            Duration::from_millis(500)
        );
        assert_eq!("2m".parse::<Span>().unwrap().0, Duration::from_secs(120));
        assert_eq!("1500ms".parse::<Span>().unwrap().to_string(), "1500ms");
        assert_eq!("60s".parse::<Span>().unwrap().to_string(), "1m");
        for bad in ["", "10", "s", "1.5s", "10 s", "-1s"] {
            assert!(bad.parse::<Span>().is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn function_names() {
        for ok in ["hello", "a", "echo-2", &"x".repeat(63)] {
            assert!(ok.parse::<FunctionName>().is_ok(), "{ok}");
        }
        for bad in ["", "Hello", "a_b", "-a", "a-", "a/b", "..", &"x".repeat(64)] {
            assert!(bad.parse::<FunctionName>().is_err(), "{bad:?}");
        }
    }
}
