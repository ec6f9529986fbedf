//! Flags: the one check of their syntax (IMAP atoms, RFC 3501 §9), shared by everything that
//! sends a flag (the wire layer, push) or takes one in from outside (pull, bundle apply, Maildir
//! import), so a name that would break a command line never gets into the store; and the one
//! comparison of flag sets. A foundation module: the store and the wire layer both use it.

/// An atom: one or more printable ASCII characters other than the atom-specials
/// `( ) { SP % * " \ ]` (controls and 8-bit bytes are not allowed either).
pub fn is_atom(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            (0x21..0x7f).contains(&b)
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
        })
}

/// A flag: a keyword (an atom) or a system flag (`\` followed by an atom, e.g. `\Seen`).
pub fn is_flag(f: &str) -> bool {
    is_atom(f.strip_prefix('\\').unwrap_or(f))
}

/// A keyword: a flag without the `\` of system flags (what a Maildir `dovecot-keywords` names).
pub fn is_keyword(f: &str) -> bool {
    is_atom(f)
}

/// Flag sets are equal: compared as sets, ASCII case-insensitively (flags are case-insensitive,
/// and servers change the case of system flags); `\Recent` is a session flag and never counts.
/// The one comparison pull, push and check use.
pub fn same_flags(a: &[String], b: &[String]) -> bool {
    let set = |v: &[String]| -> std::collections::BTreeSet<String> {
        v.iter()
            .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
            .map(|f| f.to_ascii_lowercase())
            .collect()
    };
    set(a) == set(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_atoms_with_an_optional_backslash() {
        for ok in ["\\Seen", "$Forwarded", "Work", "a.b-c_d"] {
            assert!(is_flag(ok), "{ok}");
        }
        for bad in [
            "",
            "\\",
            "two words",
            "x(",
            "odd]",
            "q\"",
            "back\\slash",
            "\\\\Seen",
            "tab\t",
            "nul\0",
            "Grüße",
            "{5}",
            "%",
            "*",
        ] {
            assert!(!is_flag(bad), "{bad:?}");
        }
        assert!(is_keyword("$Label1") && !is_keyword("\\Seen"));
    }
}
