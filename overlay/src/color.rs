//! Colours as the configuration writes them (`#rrggbb`, `#rrggbbaa`).

use std::fmt;
use std::str::FromStr;

/// A straight (not premultiplied) sRGB colour with alpha.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rgba {
    /// Red.
    pub r: u8,
    /// Green.
    pub g: u8,
    /// Blue.
    pub b: u8,
    /// Alpha: 0 transparent, 255 opaque.
    pub a: u8,
}

impl Rgba {
    /// Fully transparent.
    pub const TRANSPARENT: Rgba = Rgba::new(0, 0, 0, 0);

    /// From its components.
    pub const fn new(r: u8, g: u8, b: u8, a: u8) -> Rgba {
        Rgba { r, g, b, a }
    }
}

/// Why a colour did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a colour as #rrggbb or #rrggbbaa (hex digits), found {0:?}")]
pub struct BadColor(pub String);

impl FromStr for Rgba {
    type Err = BadColor;

    fn from_str(s: &str) -> Result<Rgba, BadColor> {
        let bad = || BadColor(s.to_owned());
        let hex = s.strip_prefix('#').ok_or_else(bad)?;
        if !(hex.len() == 6 || hex.len() == 8) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad());
        let a = if hex.len() == 8 { byte(6)? } else { 255 };
        Ok(Rgba::new(byte(0)?, byte(2)?, byte(4)?, a))
    }
}

impl fmt::Display for Rgba {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{:02x}{:02x}{:02x}{:02x}",
            self.r, self.g, self.b, self.a
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_and_prints_the_long_one() {
        assert_eq!("#102030".parse(), Ok(Rgba::new(16, 32, 48, 255)));
        assert_eq!("#10203080".parse(), Ok(Rgba::new(16, 32, 48, 128)));
        assert_eq!(Rgba::new(16, 32, 48, 128).to_string(), "#10203080");
        for bad in ["102030", "#12345", "#1234567", "#gg0000", "#+10203", ""] {
            assert!(bad.parse::<Rgba>().is_err(), "{bad}");
        }
    }
}
