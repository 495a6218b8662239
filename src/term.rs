//! Text on its way to a terminal. A document's name or text is data: a
//! control character in it (an escape sequence that clears the screen, moves
//! the cursor, sets the window title; a carriage return that overwrites the
//! line; a bidi override that reorders it) must reach the user's eyes as
//! text, never act on their terminal.
//!
//! - [`name`]: a name (a document's source, a file name, a label): every
//!   control character shown as `\u{…}`.
//! - [`text`]: a body of text (a chunk, an answer): the same, but line feeds
//!   and tabs stay.
//! - [`note!`](crate::note): a line on stderr that goes through [`text`] and never panics
//!   (a closed stderr is ignored, as `ls 2>&1 | head` needs).
//!
//! JSON output needs none of this: JSON escapes control characters itself.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Characters that reorder text on screen (Unicode's bidi controls): shown
/// escaped like control characters ("Trojan Source", CVE-2021-42574).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape(s: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    let bad = |c: char| (c.is_control() || is_bidi_control(c)) && !keep(c);
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if bad(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A name for a terminal: every control and bidi character as `\u{…}`.
pub fn name(s: &str) -> Cow<'_, str> {
    escape(s, |_| false)
}

/// A text for a terminal: as [`name`], but line feeds and tabs stay.
pub fn text(s: &str) -> Cow<'_, str> {
    escape(s, |c| c == '\n' || c == '\t')
}

/// Writes one line to stderr through [`text`], ignoring a failed write.
pub fn note(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let line = args.to_string();
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", text(&line));
}

/// `eprintln!` that escapes control characters and never panics.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::term::note(format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_sent() {
        assert!(matches!(name("notes.md"), Cow::Borrowed(_)));
        assert_eq!(name("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(name("x\ny\tz\r"), "x\\u{a}y\\u{9}z\\u{d}");
        assert_eq!(name("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(name("abc\u{202e}txt.exe"), "abc\\u{202e}txt.exe");
        assert_eq!(name("\x7f"), "\\u{7f}");
        assert_eq!(
            text("line one\n\tline two\x1b]0;title\x07"),
            "line one\n\tline two\\u{1b}]0;title\\u{7}"
        );
        // Ordinary non-ASCII text is left alone.
        assert_eq!(name("café — 東京"), "café — 東京");
    }
}
