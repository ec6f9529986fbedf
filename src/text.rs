//! Text from outside shown safely: a name or a message a server, a bundle or a file chose is
//! printed with every character a terminal would act on escaped.

/// `s` safe to print on a terminal: control characters (ESC, CR, LF, NUL, DEL, C1) and
/// bidirectional overrides shown as `\u{..}` escapes, everything else as is. Names and texts a
/// server or a file chose go through this before they reach the screen or a log.
///
/// This is the one escaping function of the program: `crate::ui`'s printing functions (the
/// only ones that print or log) show everything through it.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Whether a terminal could act on `c` (a control character: C0, DEL, C1) or it reorders what
/// follows (a bidirectional override): what [`printable`] escapes.
pub fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Text of several lines shown through [`printable`] line by line.
pub fn printable_lines(text: &str) -> String {
    text.lines()
        .map(|l| printable(l).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `n` and the noun, singular for one: "1 folder", "3 folders" (nouns whose plural takes an s).
pub fn count(n: u64, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        _ => format!("{n} {noun}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_folder_is_not_one_folders() {
        assert_eq!(count(1, "folder"), "1 folder");
        assert_eq!(count(0, "folder"), "0 folders");
        assert_eq!(count(212, "message"), "212 messages");
    }

    #[test]
    fn printable_escapes_what_a_terminal_would_act_on() {
        assert_eq!(printable("Entwürfe/日本語"), "Entwürfe/日本語");
        assert_eq!(
            printable("a\u{1b}[2Jb\r\n\u{202e}"),
            "a\\u{1b}[2Jb\\u{d}\\u{a}\\u{202e}"
        );
    }
}
