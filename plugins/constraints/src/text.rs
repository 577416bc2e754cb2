//! The text measures every constraint is defined by. They are public so that a reward can
//! give partial credit (say, how far an answer is over its word limit) with exactly the
//! rules [`check`](crate::check) uses.
//!
//! "Letter or digit" means [`char::is_alphanumeric`] (Unicode alphabetic or numeric), so
//! "naïve", "café" and "٣" are words and an emoji alone is not.

/// Sentence terminators: a run of these ends a sentence when whitespace or the end of the
/// line follows it (after optional closers).
const TERMINATORS: [char; 4] = ['.', '!', '?', '…'];

/// Characters that may close a sentence after its terminator: quotes, brackets and
/// markdown emphasis (`He said "yes."` and `**Done.**` end a sentence).
const CLOSERS: [char; 8] = ['"', '\'', '”', '’', ')', ']', '*', '_'];

/// The commas `no_commas` forbids: ASCII, full-width, ideographic and Arabic.
pub const COMMAS: [char; 4] = [',', '，', '、', '،'];

/// Whether `s` holds a letter or digit.
pub fn has_alphanumeric(s: &str) -> bool {
    s.chars().any(char::is_alphanumeric)
}

/// The words of `text`: maximal runs of non-whitespace characters that hold at least one
/// letter or digit. "well-known", "3.5", "1." and `[address]` are one word each; "—",
/// "-" and "🙂" are none.
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split_whitespace().filter(|w| has_alphanumeric(w))
}

/// The number of [`words`].
pub fn word_count(text: &str) -> usize {
    words(text).count()
}

/// The number of sentences of `text`, line by line:
///
/// - a list marker at the start of a line (see [`bullet_item`], [`numbered_item`]) is
///   skipped, so "1. Mix the flour." is one sentence;
/// - a sentence ends at a run of terminators (`.` `!` `?` `…`), optionally followed by
///   closers (`"` `'` `”` `’` `)` `]` `*` `_`), when whitespace or the end of the line
///   comes next: "3.5", "example.com" and "v1.2" do not end one, "e.g. this" and
///   "Dr. Smith" do (abbreviations are not special-cased), "Wait... what?" is two;
/// - the end of a line ends a sentence too, so headings, list items and unpunctuated
///   lines count;
/// - only stretches holding a letter or digit count: "...", "🙂" and "---" are none.
pub fn sentence_count(text: &str) -> usize {
    text.lines().map(|line| line_sentences(strip_list_marker(line))).sum()
}

fn line_sentences(line: &str) -> usize {
    let mut count = 0;
    let mut has_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if !TERMINATORS.contains(&c) {
            has_word |= c.is_alphanumeric();
            continue;
        }
        while chars.next_if(|c| TERMINATORS.contains(c)).is_some() {}
        while chars.next_if(|c| CLOSERS.contains(c)).is_some() {}
        if chars.peek().is_none_or(|c| c.is_whitespace()) && has_word {
            count += 1;
            has_word = false;
        }
    }
    count + usize::from(has_word)
}

/// The number of sentence ends inside `text` itself: runs of terminators followed by
/// whitespace or the end. Embedding `text` in a line adds at most this many sentences.
pub(crate) fn sentence_breaks(text: &str) -> usize {
    let mut count = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if TERMINATORS.contains(&c) {
            while chars.next_if(|c| TERMINATORS.contains(c)).is_some() {}
            while chars.next_if(|c| CLOSERS.contains(c)).is_some() {}
            count += usize::from(chars.peek().is_none_or(|c| c.is_whitespace()));
        }
    }
    count
}

/// The number of paragraphs: maximal runs of lines that are neither blank (only
/// whitespace) nor a markdown horizontal rule. A rule is a line of three or more `*`, `-`
/// or `_`, all the same, optionally spaced (`***`, `---`, `* * *`); it separates
/// paragraphs as a blank line does. Headings and list lines belong to the paragraph they
/// stand in.
pub fn paragraph_count(text: &str) -> usize {
    let mut count = 0;
    let mut inside = false;
    for line in text.lines() {
        let separator = line.trim().is_empty() || is_rule(line);
        count += usize::from(!separator && !inside);
        inside = !separator;
    }
    count
}

fn is_rule(line: &str) -> bool {
    let mut marks = line.chars().filter(|c| !c.is_whitespace());
    let Some(first) = marks.next() else { return false };
    matches!(first, '*' | '-' | '_') && marks.try_fold(1, |n, c| (c == first).then_some(n + 1)).is_some_and(|n| n >= 3)
}

/// The content of a markdown bullet item: after optional indentation, `-`, `*` or `+`,
/// then at least one space or tab, then text holding a letter or digit. Nested items
/// count like top-level ones. `**bold**`, `---` and `* * *` are no items.
pub fn bullet_item(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix(['-', '*', '+'])?;
    item_content(rest)
}

/// The content of a numbered item: after optional indentation, one to nine ASCII digits,
/// `.` or `)`, at least one space or tab, then text holding a letter or digit. The
/// numbers themselves are not checked ("1. 1. 1." is three items). "1.5 kg" is no item.
pub fn numbered_item(line: &str) -> Option<&str> {
    let line = line.trim_start();
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if !(1..=9).contains(&digits) {
        return None;
    }
    item_content(line[digits..].strip_prefix(['.', ')'])?)
}

fn item_content(rest: &str) -> Option<&str> {
    let content = rest.strip_prefix([' ', '\t'])?.trim();
    has_alphanumeric(content).then_some(content)
}

fn strip_list_marker(line: &str) -> &str {
    bullet_item(line).or_else(|| numbered_item(line)).unwrap_or(line)
}

/// How many times `keyword` occurs in `text`: case-insensitively (both sides go through
/// Unicode lowercasing, [`str::to_lowercase`]; no further case folding, so "straße" does
/// not match "STRASSE"), on word boundaries (the characters just before and after a match,
/// if any, are not letters or digits: "cat" matches "Cat's" and "(cat)" but not "cats" or
/// "concat"), counting non-overlapping matches from the left. Whitespace inside a keyword
/// must match exactly. An empty keyword never matches.
pub fn keyword_count(text: &str, keyword: &str) -> usize {
    let (hay, needle) = (text.to_lowercase(), keyword.to_lowercase());
    if needle.is_empty() {
        return 0;
    }
    let mut count = 0;
    let mut from = 0;
    while let Some(at) = hay[from..].find(&needle).map(|i| from + i) {
        let end = at + needle.len();
        if boundary_before(&hay, at) && boundary_after(&hay, end) {
            count += 1;
            from = end;
        } else {
            from = at + hay[at..].chars().next().map_or(1, char::len_utf8);
        }
    }
    count
}

fn boundary_before(text: &str, at: usize) -> bool {
    text[..at].chars().next_back().is_none_or(|c| !c.is_alphanumeric())
}

fn boundary_after(text: &str, at: usize) -> bool {
    text[at..].chars().next().is_none_or(|c| !c.is_alphanumeric())
}

/// Whether `text`, without leading whitespace, starts with `phrase`: case-insensitively
/// and, when the phrase ends with a letter or digit, on a word boundary ("Sure" does not
/// start "Surely").
pub fn starts_with_phrase(text: &str, phrase: &str) -> bool {
    let (text, phrase) = (text.trim_start().to_lowercase(), phrase.to_lowercase());
    text.starts_with(&phrase) && (!phrase.ends_with(char::is_alphanumeric) || boundary_after(&text, phrase.len()))
}

/// Whether `text`, without trailing whitespace, ends with `phrase`: case-insensitively
/// and, when the phrase starts with a letter or digit, on a word boundary.
pub fn ends_with_phrase(text: &str, phrase: &str) -> bool {
    let (text, phrase) = (text.trim_end().to_lowercase(), phrase.to_lowercase());
    text.ends_with(&phrase)
        && (!phrase.starts_with(char::is_alphanumeric) || boundary_before(&text, text.len() - phrase.len()))
}

/// The number of placeholders: `[`, then one or more characters other than `[`, `]` and
/// line breaks holding a letter or digit, then `]`, not directly followed by `(` (that is
/// a markdown link). `[address]` and `[your name]` count; `[ ]` and `[](x)` do not.
pub fn placeholder_count(text: &str) -> usize {
    let mut count = 0;
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find(['[', ']', '\n']) else { break };
        if rest[close..].starts_with(']') {
            let (content, after) = (&rest[..close], &rest[close + 1..]);
            count += usize::from(has_alphanumeric(content) && !after.starts_with('('));
            rest = after;
        } else {
            rest = &rest[close..];
        }
    }
    count
}

/// Whether `text` holds a title: `<<`, then characters other than `<`, `>` and line
/// breaks holding a letter or digit, then `>>`, anywhere in the answer.
pub fn has_title(text: &str) -> bool {
    // Every `<<`, overlapping ones included: in "<<<a>>" the title opens at the second `<`.
    text.match_indices('<').filter(|&(at, _)| text[at + 1..].starts_with('<')).any(|(at, _)| {
        let rest = &text[at + 2..];
        rest.find(['<', '>', '\n']).is_some_and(|end| rest[end..].starts_with(">>") && has_alphanumeric(&rest[..end]))
    })
}

/// The numbers of the section headers of `text`, in order. A header is a line that,
/// after leading whitespace and markdown marks (`#`, `*`, `_`), starts with "section" in
/// any case, one or more spaces or tabs and a decimal number not followed by a digit:
/// "SECTION 1", "## Section 2: Tools", "**SECTION 3**".
pub fn section_numbers(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_start_matches(|c: char| c.is_whitespace() || matches!(c, '#' | '*' | '_'));
            let head = line.get(..7).filter(|h| h.eq_ignore_ascii_case("section"))?;
            let rest = line[head.len()..].strip_prefix([' ', '\t'])?.trim_start_matches([' ', '\t']);
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            rest[..digits].parse().ok()
        })
        .collect()
}

/// The JSON document of an answer: the whole answer without surrounding whitespace, or
/// the inside of a fence around the whole answer (a first line "```" or "```json", any
/// case, and a last "```").
pub fn json_body(text: &str) -> &str {
    let text = text.trim();
    let fenced = text.strip_prefix("```").and_then(|rest| {
        let (info, body) = rest.split_once('\n')?;
        let info = info.trim();
        (info.is_empty() || info.eq_ignore_ascii_case("json")).then_some(body.strip_suffix("```")?)
    });
    fenced.unwrap_or(text)
}

/// Whether no character of `text` changes under Unicode lowercasing
/// ([`char::to_lowercase`]): characters without case (digits, punctuation, emoji, CJK)
/// never do.
pub fn is_lowercase(text: &str) -> bool {
    text.chars().all(|c| maps_to_itself(c.to_lowercase(), c))
}

/// Whether no character of `text` changes under Unicode uppercasing
/// ([`char::to_uppercase`]). "ß" does (to "SS"), so it is not all capitals.
pub fn is_uppercase(text: &str) -> bool {
    text.chars().all(|c| maps_to_itself(c.to_uppercase(), c))
}

fn maps_to_itself(mut mapped: impl Iterator<Item = char>, c: char) -> bool {
    mapped.next() == Some(c) && mapped.next().is_none()
}

/// Whether `text`, without surrounding whitespace, is at least two characters long and
/// starts and ends with a straight double quote (`"`), or starts with `“` and ends
/// with `”`.
pub fn is_quoted(text: &str) -> bool {
    let mut chars = text.trim().chars();
    matches!((chars.next(), chars.next_back()), (Some('"'), Some('"')) | (Some('“'), Some('”')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_need_a_letter_or_digit() {
        assert_eq!(word_count("A naïve café — très bien 🙂"), 5);
        assert_eq!(word_count("well-known 3.5 kg, e.g. [address]"), 5);
        assert_eq!(word_count("- item\n1. step\n\n"), 3);
        assert_eq!(word_count(""), 0);
        assert_eq!(word_count("  🙂 — ... \n"), 0);
    }

    #[test]
    fn sentences_end_at_terminators_before_whitespace() {
        assert_eq!(sentence_count("One. Two! Three? Four…"), 4);
        assert_eq!(sentence_count("It costs 3.5 euros at example.com today."), 1);
        assert_eq!(sentence_count("Ask Dr. Smith. e.g. this"), 4);
        assert_eq!(sentence_count("Wait... what?!"), 2);
        assert_eq!(sentence_count("He said \"yes.\" Then left."), 2);
        assert_eq!(sentence_count("**Done.** Next"), 2);
        assert_eq!(sentence_count("no terminator at all"), 1);
        assert_eq!(sentence_count("..."), 0);
        assert_eq!(sentence_count(""), 0);
        assert_eq!(sentence_count("Trailing space.   \n\n"), 1);
    }

    #[test]
    fn lines_and_list_markers_in_sentences() {
        assert_eq!(sentence_count("# Tides\n\nThe sea rises. It falls."), 3);
        assert_eq!(sentence_count("1. Mix the flour.\n2) Bake it\n- Eat."), 3);
        assert_eq!(sentence_count("Intro:\n* a\n* b\n\n---\n🙂"), 3);
    }

    #[test]
    fn sentence_breaks_inside_a_phrase() {
        assert_eq!(sentence_breaks("Thanks for reading."), 1);
        assert_eq!(sentence_breaks("Hi. There"), 1);
        assert_eq!(sentence_breaks("version 1.2"), 0);
    }

    #[test]
    fn paragraphs_split_on_blank_lines_and_rules() {
        assert_eq!(paragraph_count("One.\nStill one.\n\n\n  \nTwo."), 2);
        assert_eq!(paragraph_count("One\n***\nTwo\n- - -\nThree\n___\n"), 3);
        assert_eq!(paragraph_count("\n\nOnly\n\n"), 1);
        assert_eq!(paragraph_count("# Heading\n- a\n- b"), 1);
        assert_eq!(paragraph_count("🙂\n\nword"), 2);
        assert_eq!(paragraph_count("**bold**\n\n--\n\nx"), 3, "`**bold**` and `--` are not rules");
        assert_eq!(paragraph_count("   \n"), 0);
    }

    #[test]
    fn list_items() {
        assert_eq!(bullet_item("  - nested item"), Some("nested item"));
        assert_eq!(bullet_item("+\tplus"), Some("plus"));
        assert_eq!(bullet_item("* café"), Some("café"));
        for no in ["**bold**", "---", "* * *", "-no space", "- 🙂", "• other bullet", "text - dash"] {
            assert_eq!(bullet_item(no), None, "{no}");
        }
        assert_eq!(numbered_item("10. ten"), Some("ten"));
        assert_eq!(numbered_item("   3) three "), Some("three"));
        for no in ["1.5 kg", "1.no space", "a. letter", "1234567890. too long", "- 1. bullet"] {
            assert_eq!(numbered_item(no), None, "{no}");
        }
    }

    #[test]
    fn keywords_match_case_insensitively_on_boundaries() {
        assert_eq!(keyword_count("Cat's toy, (cat) and CAT", "cat"), 3);
        assert_eq!(keyword_count("cats concat scatter", "cat"), 0);
        assert_eq!(keyword_count("A Naïve Café", "naïve café"), 1);
        assert_eq!(keyword_count("naïveté", "naïve"), 0);
        assert_eq!(keyword_count("ice cream, icecream, ice  cream", "ice cream"), 1);
        assert_eq!(keyword_count("aaaa", "aa"), 0, "no boundary inside a word");
        assert_eq!(keyword_count("go go go", "go go"), 1, "non-overlapping");
        assert_eq!(keyword_count("anything", ""), 0);
        assert_eq!(keyword_count("STRASSE", "straße"), 0, "no case folding");
        assert_eq!(keyword_count("🙂tide🙂", "tide"), 1);
    }

    #[test]
    fn phrases_at_the_ends() {
        assert!(starts_with_phrase("  \nSure, here it is", "sure,"));
        assert!(starts_with_phrase("SURE thing", "Sure"));
        assert!(!starts_with_phrase("Surely", "Sure"));
        assert!(starts_with_phrase("Hello!!", "Hello!"));
        assert!(ends_with_phrase("All done. Any questions?  \n\n", "any questions?"));
        assert!(!ends_with_phrase("unhappy", "happy"));
        assert!(ends_with_phrase("happy", "happy"));
        assert!(!ends_with_phrase("", "x"));
    }

    #[test]
    fn placeholders_titles_sections() {
        assert_eq!(placeholder_count("Dear [name], at [your address] on [DATE]."), 3);
        assert_eq!(placeholder_count("[ ] todo, [link](http://x), [[nested]], [open\nline]"), 1);
        assert_eq!(placeholder_count("[🙂] [a"), 0);
        assert!(has_title("<<The Sea>>\ntext"));
        assert!(has_title("x <<<title>> y"), "the inner `<<` opens it");
        assert!(!has_title("<< >> <<a\nb>> <<a> <<a"));
        assert_eq!(
            section_numbers("SECTION 1\na\n## Section 2: Tools\n**section\t3**\nSECTION 12x\nsee SECTION 9"),
            [1, 2, 3, 12]
        );
        assert!(section_numbers("SECTION\nSECTIONS 2\nSection one").is_empty());
    }

    #[test]
    fn json_bodies() {
        assert_eq!(json_body("  {\"a\": 1}\n"), "{\"a\": 1}");
        assert_eq!(json_body("```json\n[1]\n```"), "[1]\n");
        assert_eq!(json_body("```JSON\n[1]```"), "[1]");
        assert_eq!(json_body("```\n{}\n```\n"), "{}\n");
        assert_eq!(json_body("```python\n{}\n```"), "```python\n{}\n```");
    }

    #[test]
    fn case_considers_only_cased_letters() {
        assert!(is_lowercase("naïve café 123 🙂 日本 — ß"));
        assert!(!is_lowercase("naïve Café"));
        assert!(!is_lowercase("ǅ"), "titlecase changes");
        assert!(is_uppercase("NAÏVE CAFÉ 123 🙂 日本"));
        assert!(!is_uppercase("STRAßE"));
        assert!(is_uppercase("STRAẞE"));
        assert!(is_lowercase("") && is_uppercase(""));
    }

    #[test]
    fn quotes() {
        assert!(is_quoted("  \"Hello there.\"\n"));
        assert!(is_quoted("“Curly.”"));
        assert!(!is_quoted("\""));
        assert!(!is_quoted("\"Mixed.”"));
        assert!(!is_quoted("Said \"this\""));
    }
}
