//! How error messages quote the value they refuse: recognisably, but never at length. A
//! 10 KB blob, or a private key pasted into the wrong field, must not land whole in a log.

/// How many characters of a refused value an error shows.
pub const SHOWN_CHARS: usize = 64;

/// `text` for an error message: its first [`SHOWN_CHARS`] characters, `…` when cut.
pub fn quote_prefix(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_whole_and_long_ones_cut_on_a_char_boundary() {
        assert_eq!(quote_prefix("example.com"), "example.com");
        let long = "é".repeat(100);
        let quoted = quote_prefix(&long);
        assert_eq!(quoted.chars().count(), SHOWN_CHARS + 1);
        assert!(quoted.ends_with('…'));
    }
}
