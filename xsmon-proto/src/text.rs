//! Text that crosses a trust boundary.
//!
//! Guest data reaches dom0, SNMP and Nagios lines. The rule is: printable
//! UTF-8 only, bounded in length. [`validate`] rejects anything else (dom0's
//! side: a guest that sends garbage gets an error, not an edit), [`clean`]
//! replaces it (the producing side: a mount path with a newline in it must
//! still be reported, not crash the probe).

use std::fmt::Write as _;

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TextError {
    #[error("is not valid UTF-8")]
    NotUtf8,
    #[error("contains a control character (U+{0:04X})")]
    Control(u32),
    #[error("is {len} bytes long, more than the {max} allowed")]
    TooLong { len: usize, max: usize },
    #[error("is empty")]
    Empty,
}

/// Is `c` allowed in xsmon text? Printable characters and plain spaces.
fn allowed(c: char) -> bool {
    !c.is_control()
        && !matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}'
        )
}

/// Checks bytes from an untrusted source: UTF-8, no control characters
/// (newlines, tabs, escapes, bidi overrides), at most `max` bytes.
pub fn validate(bytes: &[u8], max: usize) -> Result<&str, TextError> {
    if bytes.len() > max {
        return Err(TextError::TooLong {
            len: bytes.len(),
            max,
        });
    }
    let s = std::str::from_utf8(bytes).map_err(|_| TextError::NotUtf8)?;
    if let Some(c) = s.chars().find(|&c| !allowed(c)) {
        return Err(TextError::Control(c as u32));
    }
    Ok(s)
}

/// Makes text safe to publish: control characters become `?`, and the
/// result is cut to at most `max` bytes on a character boundary.
pub fn clean(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        let c = if allowed(c) { c } else { '?' };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

/// Escapes one field of a line (the SNMP lines, the raw lines and the key
/// layout's chunks): `\\`, `\s` for a space, `\xHH` for any byte outside
/// `!`..`~`, `\e` for the empty field, `\x2d` for a lone `-` (which means
/// "absent" in an optional field).
pub fn escape(field: &str) -> String {
    if field.is_empty() {
        return "\\e".to_string();
    }
    // `-` alone means "absent" in an optional field.
    if field == "-" {
        return "\\x2d".to_string();
    }
    let mut out = String::with_capacity(field.len());
    for &b in field.as_bytes() {
        match b {
            b'\\' => out.push_str("\\\\"),
            b' ' => out.push_str("\\s"),
            b'!'..=b'~' => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

/// Undoes [`escape`]. Bytes that do not form UTF-8 (which escape never
/// produces from a `&str`) are an error.
pub fn unescape(field: &str) -> Result<String, String> {
    if field == "\\e" {
        return Ok(String::new());
    }
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                match b.get(i + 1) {
                    Some(b'\\') => out.push(b'\\'),
                    Some(b's') => out.push(b' '),
                    Some(b'x') => {
                        let hex = field
                            .get(i + 2..i + 4)
                            .ok_or_else(|| format!("truncated \\x escape in {field:?}"))?;
                        let v = u8::from_str_radix(hex, 16)
                            .map_err(|_| format!("bad \\x escape in {field:?}"))?;
                        out.push(v);
                        i += 2;
                    }
                    _ => return Err(format!("bad escape in {field:?}")),
                }
                i += 2;
            }
            c if (b'!'..=b'~').contains(&c) => {
                out.push(c);
                i += 1;
            }
            c => return Err(format!("raw byte 0x{c:02x} in a field")),
        }
    }
    String::from_utf8(out).map_err(|_| format!("field {field:?} is not UTF-8 once unescaped"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_rejects_what_could_break_a_line() {
        assert_eq!(validate(b"disk / 91% used", 100), Ok("disk / 91% used"));
        assert_eq!(validate("caf\u{e9}".as_bytes(), 100), Ok("caf\u{e9}"));
        assert_eq!(validate(b"a\nb", 100), Err(TextError::Control(10)));
        assert_eq!(validate(b"a\rb", 100), Err(TextError::Control(13)));
        assert_eq!(validate(b"a\tb", 100), Err(TextError::Control(9)));
        assert_eq!(validate(b"\x1b[31m", 100), Err(TextError::Control(27)));
        assert_eq!(
            validate("x\u{202e}y".as_bytes(), 100),
            Err(TextError::Control(0x202e))
        );
        assert_eq!(validate(b"\xff\xfe", 100), Err(TextError::NotUtf8));
        assert_eq!(
            validate(b"abcdef", 5),
            Err(TextError::TooLong { len: 6, max: 5 })
        );
    }

    #[test]
    fn clean_replaces_and_cuts_on_char_boundaries() {
        assert_eq!(clean("a\nb\tc", 100), "a?b?c");
        assert_eq!(clean("\u{e9}\u{e9}\u{e9}", 5), "\u{e9}\u{e9}");
        assert!(validate(clean("x\u{7f}\u{85}y", 10).as_bytes(), 10).is_ok());
    }
}
