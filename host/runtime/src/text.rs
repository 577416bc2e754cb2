//! Text a plugin hands back, made safe to check, log and quote: a plugin controls every
//! byte of it, so nothing it writes may forge a log line, flood an error message, or pass
//! for a prompt without a visible character.

/// The most characters of a plugin's string an error message quotes.
pub const QUOTE_CHARS: usize = 48;

/// The longest log record or error message of a plugin's kept, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// `s` cut to at most `max` bytes on a character boundary, with `…` when cut.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// `s` as one line: control characters (newlines, carriage returns, terminal escapes)
/// are written as escapes, so a log record is exactly one line of the log.
pub fn one_line(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// A short, escaped quotation of a plugin's string for an error message: its first
/// [`QUOTE_CHARS`] characters in backticks, and its length when it is longer.
pub fn quote(s: &str) -> String {
    let (head, rest) = cut(s);
    format!("`{head}`{rest}")
}

/// As [`quote`], without the backticks: for a string that stands in a sentence of its own
/// (a version).
pub fn clip(s: &str) -> String {
    let (head, rest) = cut(s);
    head + &rest
}

/// The escaped head of `s`, and what to say of the rest.
fn cut(s: &str) -> (String, String) {
    let head: String = s.chars().take(QUOTE_CHARS).collect();
    let rest = if head.len() < s.len() { format!("… ({} bytes)", s.len()) } else { String::new() };
    (head.escape_debug().to_string(), rest)
}

/// The first few of a plugin's names, each quoted, and how many there are in all.
pub fn quote_list(names: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut list = names.iter().take(SHOWN).map(|n| quote(n)).collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        list.push_str(&format!(", … ({} in all)", names.len()));
    }
    list
}

/// Whether `s` has a character a reader can see: not white space, not a control
/// character, not one of Unicode's default-ignorable code points (zero-width spaces and
/// joiners, direction marks, variation selectors, the byte-order mark, tags...).
pub fn has_visible(s: &str) -> bool {
    s.chars().any(|c| !(c.is_whitespace() || c.is_control() || default_ignorable(c)))
}

/// Unicode's `Default_Ignorable_Code_Point` (DerivedCoreProperties.txt, Unicode 15):
/// characters that render as nothing.
fn default_ignorable(c: char) -> bool {
    matches!(
        c as u32,
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_a_char_boundary() {
        assert_eq!(truncate("é".repeat(10), 5), "éé…");
        assert_eq!(truncate("short".into(), 5), "short");
    }

    #[test]
    fn one_line_escapes_what_could_forge_a_line() {
        assert_eq!(one_line("ok é"), "ok é");
        assert_eq!(
            one_line("done\n2026-12-01T00:00:00Z ERROR fake\r\x1b[31m"),
            "done\\n2026-12-01T00:00:00Z ERROR fake\\r\\u{1b}[31m"
        );
    }

    #[test]
    fn quotes_are_short_and_escaped() {
        assert_eq!(quote("a\nb"), "`a\\nb`");
        let long = "x".repeat(10 << 20);
        let q = quote(&long);
        assert!(q.len() < 100 && q.ends_with("… (10485760 bytes)"), "{q}");
        assert_eq!(clip("0.2.0"), "0.2.0");
        assert!(clip(&long).ends_with("x… (10485760 bytes)"));
    }

    #[test]
    fn lists_are_cut_after_a_few_names() {
        let names: Vec<String> = (0..1000).map(|i| format!("eva:plugin/x{i}")).collect();
        let list = quote_list(&names);
        assert!(list.starts_with("`eva:plugin/x0`, `eva:plugin/x1`") && list.ends_with(", … (1000 in all)"), "{list}");
        assert_eq!(quote_list(&names[..2]), "`eva:plugin/x0`, `eva:plugin/x1`");
    }

    #[test]
    fn invisible_text_has_no_visible_character() {
        for s in ["", "  \t\n", "\u{200B}\u{200C}\u{200D}\u{2060}\u{FEFF}", "\u{7}\u{1b}\u{0}", "\u{E0041}\u{FE0F}"] {
            assert!(!has_visible(s), "{s:?}");
        }
        for s in ["a", "\u{200B}x", "日本", "🙂", "·"] {
            assert!(has_visible(s), "{s:?}");
        }
    }
}
