//! A username held without a heap allocation when it is short.
//!
//! Every established connection keeps its peer's username (for the peer events and warnings), and
//! every node its own: a simulator holds hundreds of thousands of them, nearly all a few bytes
//! long ("n12345"). As a `Box<str>` each was 16 bytes plus a 32-byte chunk of the allocator; a
//! [`Name`] is the 16 bytes alone for a name of up to [`INLINE_BYTES`], and its tag leaves room
//! for an enclosing enum's (a connection's `Phase`) to be kept in the same byte.

/// Longest name kept inline: 16 bytes less the tag and the length.
pub(crate) const INLINE_BYTES: usize = 14;

#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Name {
    /// The first `len` bytes of `bytes`, a whole `str` (made only from one).
    Inline { len: u8, bytes: [u8; INLINE_BYTES] },
    /// Boxed twice so that the pointer is thin: a `Box<str>` (16 bytes) after the tag would make
    /// every name 24 bytes, for names that are rare.
    Boxed(Box<Box<str>>),
}

impl Name {
    pub(crate) fn new(name: &str) -> Name {
        match u8::try_from(name.len()) {
            Ok(len) if name.len() <= INLINE_BYTES => {
                let mut bytes = [0; INLINE_BYTES];
                bytes[..name.len()].copy_from_slice(name.as_bytes());
                Name::Inline { len, bytes }
            }
            _ => Name::Boxed(Box::new(name.into())),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            // Always valid: the bytes were copied from a `str` whole. Checked rather than assumed,
            // as no `unsafe` is worth a few bytes' check on the rare paths that read a name.
            Name::Inline { len, bytes } => std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default(),
            Name::Boxed(s) => s,
        }
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_any_name_exactly() {
        for s in [
            "",
            "n1",
            "n12345",
            "Anonymous",
            "fourteen bytes",
            "fifteen bytes!!",
            "é",
            "ééééééé",
            "éééééééé",
            &"y".repeat(300),
        ] {
            let n = Name::new(s);
            assert_eq!(n.as_str(), s);
            assert_eq!(matches!(n, Name::Inline { .. }), s.len() <= INLINE_BYTES, "{s}");
        }
    }

    #[test]
    fn is_two_words() {
        assert_eq!(std::mem::size_of::<Name>(), 16);
    }
}
