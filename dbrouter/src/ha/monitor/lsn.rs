//! Write-ahead log positions. PostgreSQL prints a `pg_lsn` as two hexadecimal numbers, the
//! high and low 32 bits of a 64-bit byte position (`16/B374D848`); [`Lsn`] is that position
//! as a `u64`, so lag in bytes is a subtraction and read-your-writes is a comparison.
//!
//! Parsing is strict (1–8 hex digits on each side of one `/`, nothing else) because the text
//! comes from the network: anything else is an error, never a panic or a silent zero.

use std::fmt;
use std::str::FromStr;

/// A position in the write-ahead log, in bytes from its start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

/// Text that is not a `pg_lsn`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN {0:?}: expected two hexadecimal numbers of 1 to 8 digits joined by '/', like 16/B374D848")]
pub struct LsnParseError(pub String);

impl Lsn {
    /// `0/0`, which PostgreSQL uses for "no position".
    pub const ZERO: Lsn = Lsn(0);

    /// Bytes from `earlier` to `self`; 0 when `earlier` is not earlier.
    pub fn bytes_after(self, earlier: Lsn) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl From<u64> for Lsn {
    fn from(v: u64) -> Self {
        Lsn(v)
    }
}

impl From<Lsn> for u64 {
    fn from(l: Lsn) -> Self {
        l.0
    }
}

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let half = |h: &str| -> Option<u64> {
            // `from_str_radix` would also take a leading `+`: check the digits first.
            if h.is_empty() || h.len() > 8 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u64::from_str_radix(h, 16).ok()
        };
        s.split_once('/')
            .and_then(|(hi, lo)| Some(Lsn(half(hi)? << 32 | half(lo)?)))
            .ok_or_else(|| LsnParseError(s.chars().take(64).collect()))
    }
}

impl fmt::Display for Lsn {
    /// The form PostgreSQL prints and accepts (`16/B374D848`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl serde::Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_postgres_prints() {
        assert_eq!("16/B374D848".parse::<Lsn>().unwrap(), Lsn(0x16_B374_D848));
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn::ZERO);
        assert_eq!("0/3000060".parse::<Lsn>().unwrap(), Lsn(0x300_0060));
        assert_eq!("ffffffff/ffffffff".parse::<Lsn>().unwrap(), Lsn(u64::MAX));
        assert_eq!("a/b".parse::<Lsn>().unwrap(), Lsn(0xA_0000_000B));
    }

    #[test]
    fn prints_what_postgres_accepts_and_round_trips() {
        assert_eq!(Lsn(0x16_B374_D848).to_string(), "16/B374D848");
        assert_eq!(Lsn::ZERO.to_string(), "0/0");
        for v in [0, 1, 0xFFFF_FFFF, 0x1_0000_0000, 0x16_B374_D848, u64::MAX] {
            assert_eq!(Lsn(v).to_string().parse::<Lsn>().unwrap(), Lsn(v));
        }
        assert_eq!(
            serde_json::to_string(&Lsn(0x300_0060)).unwrap(),
            "\"0/3000060\""
        );
    }

    #[test]
    fn refuses_anything_else() {
        for bad in [
            "",
            "/",
            "0/",
            "/0",
            "0",
            "0/0/0",
            "+1/0",
            "0/+1",
            "-1/0",
            " 0/0",
            "0/0 ",
            "g/0",
            "123456789/0",
            "0/123456789",
            "0x1/0",
            "１/0",
        ] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} parsed");
        }
        let long = "9".repeat(10_000);
        let e = long.parse::<Lsn>().unwrap_err();
        assert!(e.to_string().len() < 250, "the error echoes all the input");
    }

    #[test]
    fn orders_and_measures_bytes() {
        let a: Lsn = "0/FFFFFFFF".parse().unwrap();
        let b: Lsn = "1/0".parse().unwrap();
        assert!(a < b);
        assert_eq!(b.bytes_after(a), 1);
        assert_eq!(a.bytes_after(b), 0);
    }
}
