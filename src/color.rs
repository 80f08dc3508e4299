//! The two colors of a blue/green pair.

use std::fmt;
use std::str::FromStr;

/// One of the two versions behind a [`BlueGreenRouter`](crate::BlueGreenRouter).
///
/// Blue is the color that is live when a router is built; after a
/// [`promote`](crate::RolloutHandle::promote) green is live and blue is the
/// standby, and so on. The color of the request being served is available to
/// the inner service as a request extension when
/// [`color_extension`](crate::router::Builder::color_extension) is on.
///
/// ```
/// use tower_rollout::Color;
///
/// assert_eq!(Color::Blue.other(), Color::Green);
/// assert_eq!("green".parse::<Color>().unwrap(), Color::Green);
/// assert_eq!(Color::Blue.to_string(), "blue");
/// assert!("purple".parse::<Color>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Color {
    /// The color that is live when a router is built.
    Blue,
    /// The color that is on standby when a router is built.
    Green,
}

impl Color {
    /// Both colors, blue first.
    pub const ALL: [Color; 2] = [Color::Blue, Color::Green];

    /// The other color.
    #[inline]
    pub const fn other(self) -> Color {
        match self {
            Color::Blue => Color::Green,
            Color::Green => Color::Blue,
        }
    }

    /// The lowercase name, `"blue"` or `"green"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Color::Blue => "blue",
            Color::Green => "green",
        }
    }

    #[inline]
    pub(crate) const fn index(self) -> usize {
        match self {
            Color::Blue => 0,
            Color::Green => 1,
        }
    }

    #[inline]
    pub(crate) const fn from_bit(bit: u64) -> Color {
        if bit & 1 == 0 {
            Color::Blue
        } else {
            Color::Green
        }
    }

    /// Parses the bytes of a header value: `blue` or `green`, ASCII case-insensitive,
    /// surrounding whitespace ignored.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Color> {
        let trimmed = bytes.trim_ascii();
        if trimmed.eq_ignore_ascii_case(b"blue") {
            Some(Color::Blue)
        } else if trimmed.eq_ignore_ascii_case(b"green") {
            Some(Color::Green)
        } else {
            None
        }
    }
}

impl fmt::Display for Color {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error returned when a string names neither color.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseColorError(());

impl fmt::Display for ParseColorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected `blue` or `green`")
    }
}

impl std::error::Error for ParseColorError {}

impl FromStr for Color {
    type Err = ParseColorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Color::from_bytes(s.as_bytes()).ok_or(ParseColorError(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_is_case_insensitive_and_trims() {
        assert_eq!(Color::from_bytes(b" Blue "), Some(Color::Blue));
        assert_eq!(Color::from_bytes(b"GREEN"), Some(Color::Green));
        assert_eq!(Color::from_bytes(b"gren"), None);
        assert_eq!(Color::from_bytes(b""), None);
        assert_eq!(Color::from_bytes(&[0xff, 0xfe]), None);
    }

    #[test]
    fn other_is_an_involution() {
        for c in Color::ALL {
            assert_ne!(c.other(), c);
            assert_eq!(c.other().other(), c);
            assert_eq!(Color::from_bit(c.index() as u64), c);
        }
    }
}
