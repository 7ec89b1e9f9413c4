//! What an agent id may be (docs/FORMAT.md §10.1): one rule for the agent,
//! which refuses to start with an id the collector would refuse, and the
//! collector, which refuses a request for such an id.
//!
//! An agent id is a DNS host name in lowercase: labels of 1–63 characters
//! `a-z 0-9 -`, not starting or ending with `-`, separated by single dots,
//! 253 characters at most, with a last label that is not a number (all
//! digits, or `0x` and hex digits: it would read as an IP address). So a
//! client certificate can always carry it (a `dNSName`, which mutual TLS
//! requires), and it is a safe directory name in the collector's store
//! (no `/`, no leading dot, never `.` or `..`). Lowercase only: names in
//! certificates compare without regard to case, directory names do not, so
//! `Web-01` and `web-01` must not be two agents.

/// The longest agent id, in bytes (the longest DNS name).
pub const MAX_LEN: usize = 253;
/// The longest label of an agent id.
pub const MAX_LABEL_LEN: usize = 63;

/// Why a string is not an agent id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentIdError {
    #[error("an agent id must not be empty")]
    Empty,
    #[error("an agent id is at most {MAX_LEN} bytes, this one is {0}")]
    TooLong(usize),
    #[error(
        "{ch:?} at byte {at} is an upper-case letter: agent ids are lower case (certificate names ignore case, the collector's directories do not)"
    )]
    Uppercase { ch: char, at: usize },
    #[error(
        "{ch:?} at byte {at} may not be in an agent id (only a-z, 0-9, '-' and '.' between labels: a DNS name)"
    )]
    Character { ch: char, at: usize },
    #[error("an empty label at byte {at} (a leading, trailing or doubled '.')")]
    EmptyLabel { at: usize },
    #[error("the label at byte {at} is {len} bytes long, more than {MAX_LABEL_LEN}")]
    LabelTooLong { at: usize, len: usize },
    #[error("the label at byte {at} starts or ends with '-'")]
    Hyphen { at: usize },
    #[error("the last label {0:?} is a number: the id would read as an IP address")]
    Numeric(String),
}

/// Checks that `id` is an agent id (the rule above).
pub fn check(id: &str) -> Result<(), AgentIdError> {
    if id.is_empty() {
        return Err(AgentIdError::Empty);
    }
    if id.len() > MAX_LEN {
        return Err(AgentIdError::TooLong(id.len()));
    }
    if let Some((at, ch)) = id
        .char_indices()
        .find(|(_, c)| !matches!(c, 'a'..='z' | '0'..='9' | '-' | '.'))
    {
        return Err(if ch.is_ascii_uppercase() {
            AgentIdError::Uppercase { ch, at }
        } else {
            AgentIdError::Character { ch, at }
        });
    }
    let mut at = 0;
    let mut last = "";
    for label in id.split('.') {
        if label.is_empty() {
            return Err(AgentIdError::EmptyLabel { at });
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(AgentIdError::LabelTooLong {
                at,
                len: label.len(),
            });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(AgentIdError::Hyphen { at });
        }
        at += label.len() + 1;
        last = label;
    }
    let hex = last
        .strip_prefix("0x")
        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    if hex || last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AgentIdError::Numeric(last.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_pass() {
        for id in [
            "web-01",
            "t",
            "a.b.c",
            "web-01.example.com",
            "1web",
            "x1.2y",
            "10.0.0.1a",
            "0xg",
            &"a".repeat(63),
            &[&"a".repeat(63)[..]; 4].join(".")[..251],
        ] {
            assert_eq!(check(id), Ok(()), "{id}");
        }
    }

    #[test]
    fn what_a_certificate_cannot_carry_or_a_directory_cannot_be_fails() {
        use AgentIdError::*;
        let long = format!("{}.{}", "a".repeat(63), "b".repeat(190));
        let cases: Vec<(&str, AgentIdError)> = vec![
            ("", Empty),
            (&long, TooLong(254)),
            ("Web-01", Uppercase { ch: 'W', at: 0 }),
            ("web_01", Character { ch: '_', at: 3 }),
            ("a/b", Character { ch: '/', at: 1 }),
            ("wéb", Character { ch: 'é', at: 1 }),
            ("a b", Character { ch: ' ', at: 1 }),
            (".web", EmptyLabel { at: 0 }),
            ("web.", EmptyLabel { at: 4 }),
            ("a..b", EmptyLabel { at: 2 }),
            (".", EmptyLabel { at: 0 }),
            ("..", EmptyLabel { at: 0 }),
            ("-web", Hyphen { at: 0 }),
            ("web-", Hyphen { at: 0 }),
            ("a.-b", Hyphen { at: 2 }),
            ("10.0.0.1", Numeric("1".into())),
            ("web.01", Numeric("01".into())),
            ("123", Numeric("123".into())),
            ("a.0x1f", Numeric("0x1f".into())),
        ];
        for (id, want) in cases {
            assert_eq!(check(id), Err(want), "{id:?}");
        }
        let label = "a".repeat(64);
        assert_eq!(
            check(&format!("x.{label}")),
            Err(LabelTooLong { at: 2, len: 64 })
        );
    }
}
