//! `exclude`: globs of paths or file names never read. Every file a listing
//! finds is matched against each of them, twice (its path and its name),
//! so the common form, `*` and a literal suffix (the defaults: `*.gz`,
//! `*.zst`, ...), is checked as the suffix it is: with glob's default
//! options `*` matches any run of characters, `/` included, so such a
//! pattern matches a string exactly when the string ends with the suffix.
//! Any other pattern goes to the glob matcher.

use std::path::Path;

#[derive(Debug)]
enum Matcher {
    /// `*` then this, with no other glob character.
    Suffix(String),
    Glob(glob::Pattern),
}

impl Matcher {
    fn new(pattern: &str) -> Option<Matcher> {
        let glob = glob::Pattern::new(pattern).ok()?;
        match pattern.strip_prefix('*') {
            Some(rest) if !rest.contains(['*', '?', '[', ']']) => {
                Some(Matcher::Suffix(rest.to_owned()))
            }
            _ => Some(Matcher::Glob(glob)),
        }
    }

    fn matches(&self, s: &str) -> bool {
        match self {
            Matcher::Suffix(rest) => s.ends_with(rest.as_str()),
            Matcher::Glob(g) => g.matches(s),
        }
    }
}

/// A source's `exclude` globs (invalid ones are refused by the config
/// check and left out here).
#[derive(Debug, Default)]
pub struct Exclude(Vec<Matcher>);

impl Exclude {
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Exclude {
        Exclude(
            patterns
                .iter()
                .filter_map(|p| Matcher::new(p.as_ref()))
                .collect(),
        )
    }

    /// Whether a pattern matches the path or its file name (what is not
    /// UTF-8 matches nothing, as with glob's `matches_path`).
    pub fn matches(&self, path: &Path) -> bool {
        let full = path.to_str();
        let name = match path.file_name() {
            Some(n) => n.to_str(),
            None => full,
        };
        self.0
            .iter()
            .any(|m| full.is_some_and(|s| m.matches(s)) || name.is_some_and(|s| m.matches(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the source did before: glob's matcher on the path and on the
    /// name. The fast path must agree with it on every case.
    fn by_glob(patterns: &[&str], path: &Path) -> bool {
        let name = path.file_name().map(Path::new).unwrap_or(path);
        patterns
            .iter()
            .filter_map(|p| glob::Pattern::new(p).ok())
            .any(|p| p.matches_path(path) || p.matches_path(name))
    }

    #[test]
    fn agrees_with_the_glob_matcher() {
        let patterns: &[&[&str]] = &[
            &["*.gz", "*.bz2", "*.xz", "*.zst", "*.zip"],
            &["*"],
            &["*gz"],
            &["*/old/*"],
            &["*.log.[0-9]"],
            &["/var/log/skip.log"],
            &["skip.log"],
            &["*.GZ"],
            &["*/x.gz"],
            &["*.g?"],
            &["**"],
        ];
        let paths = [
            "/var/log/app.log",
            "/var/log/app.log.gz",
            "/var/log/app.log.1",
            "/var/log/app.gz/inner.log",
            "/var/log/old/app.log",
            "/var/log/skip.log",
            "/srv/skip.log",
            "/x.gz",
            "gz",
            "/var/log/.gz",
            "/var/log/APP.GZ",
            "/var/log/gz",
            "/var/log/a.gzip",
            "relative/name.zst",
        ];
        for ps in patterns {
            let ex = Exclude::new(ps);
            for p in paths {
                let p = Path::new(p);
                assert_eq!(ex.matches(p), by_glob(ps, p), "{ps:?} on {}", p.display());
            }
        }
    }

    #[test]
    fn the_default_suffixes_take_the_fast_path() {
        let ex = Exclude::new(&["*.gz", "*.zst", "*.log.[0-9]"]);
        let fast =
            ex.0.iter()
                .filter(|m| matches!(m, Matcher::Suffix(_)))
                .count();
        assert_eq!(fast, 2);
    }

    #[test]
    fn what_is_not_utf8_matches_nothing_as_before() {
        use std::os::unix::ffi::OsStrExt;
        let ex = Exclude::new(&["*.gz"]);
        // A name that is not UTF-8.
        let p = Path::new(std::ffi::OsStr::from_bytes(b"/var/log/\xff.gz"));
        assert!(!ex.matches(p));
        assert!(!by_glob(&["*.gz"], p));
        // A directory that is not UTF-8: the name still matches.
        let p = Path::new(std::ffi::OsStr::from_bytes(b"/var/\xff/app.gz"));
        assert!(ex.matches(p));
        assert!(by_glob(&["*.gz"], p));
    }
}
