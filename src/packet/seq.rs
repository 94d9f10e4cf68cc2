//! TCP sequence numbers: a newtype whose arithmetic wraps and whose comparison is RFC 1982
//! serial-number arithmetic, so nobody compares them as integers.
//!
//! `seq + n` and `seq - n` move a sequence number by `n` bytes (wrapping); `a - b` between two
//! sequence numbers is the distance from `b` to `a` (wrapping, as a `u32`). [`Seq::before`] and
//! [`Seq::after`] compare in sequence space: `a.before(b)` when `a` is less than 2^31 behind `b`.

use std::fmt;
use std::ops::{Add, Sub};

/// A TCP sequence or acknowledgment number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Seq(pub u32);

impl Seq {
    /// Whether `self` comes before `other` in sequence space.
    pub fn before(self, other: Seq) -> bool {
        // The difference read as a signed number: negative when `self` is behind `other`.
        (self.0.wrapping_sub(other.0) as i32) < 0
    }

    /// Whether `self` comes after `other` in sequence space.
    pub fn after(self, other: Seq) -> bool {
        other.before(self)
    }

    /// The raw 32-bit value.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Add<u32> for Seq {
    type Output = Seq;
    fn add(self, n: u32) -> Seq {
        Seq(self.0.wrapping_add(n))
    }
}

impl Sub<u32> for Seq {
    type Output = Seq;
    fn sub(self, n: u32) -> Seq {
        Seq(self.0.wrapping_sub(n))
    }
}

impl Sub<Seq> for Seq {
    /// The distance from the right-hand side to the left-hand side, in bytes.
    type Output = u32;
    fn sub(self, earlier: Seq) -> u32 {
        self.0.wrapping_sub(earlier.0)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_wraps() {
        assert!(Seq(1).before(Seq(2)));
        assert!(Seq(u32::MAX).before(Seq(0)));
        assert!(Seq(0).after(Seq(u32::MAX)));
        assert!(!Seq(5).before(Seq(5)) && !Seq(5).after(Seq(5)));
        // 2^31 apart: each is "before" the other, as RFC 1982 leaves it undefined.
        assert!(Seq(0).before(Seq(1 << 31)) && Seq(1 << 31).before(Seq(0)));
    }

    #[test]
    fn arithmetic_wraps() {
        assert_eq!(Seq(u32::MAX) + 2, Seq(1));
        assert_eq!(Seq(1) - 2, Seq(u32::MAX));
        assert_eq!(Seq(1) - Seq(u32::MAX), 2);
        assert_eq!(Seq(7).to_string(), "7");
    }
}
