//! Name patterns with `*` wildcards, as used for tool and model allowlists.

/// A compiled name pattern: `*` matches any run of characters (including none); nothing else is special.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Box<str>,
    kind: GlobKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum GlobKind {
    Any,
    Exact,
    Prefix(usize),
    Parts,
}

impl Glob {
    /// Compiles a pattern. Every string is a valid pattern.
    pub fn new(pattern: &str) -> Self {
        let stars = pattern.matches('*').count();
        let kind = if pattern == "*" {
            GlobKind::Any
        } else if stars == 0 {
            GlobKind::Exact
        } else if stars == 1 && pattern.ends_with('*') {
            GlobKind::Prefix(pattern.len() - 1)
        } else {
            GlobKind::Parts
        };
        Glob { pattern: pattern.into(), kind }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        match self.kind {
            GlobKind::Any => true,
            GlobKind::Exact => &*self.pattern == name,
            GlobKind::Prefix(n) => name.starts_with(&self.pattern[..n]),
            GlobKind::Parts => matches_parts(&self.pattern, name),
        }
    }
}

fn matches_parts(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// A list of patterns; matches when any pattern does.
#[derive(Debug, Clone, Default)]
pub struct GlobSet(Vec<Glob>);

impl GlobSet {
    /// Compiles every pattern.
    pub fn new<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Self {
        GlobSet(patterns.into_iter().map(Glob::new).collect())
    }

    /// Whether any pattern matches `name`.
    pub fn matches(&self, name: &str) -> bool {
        self.0.iter().any(|g| g.matches(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("gpt-4o").matches("gpt-4o"));
        assert!(!Glob::new("gpt-4o").matches("gpt-4o-mini"));
        assert!(Glob::new("gpt-*").matches("gpt-4o-mini"));
        assert!(!Glob::new("gpt-*").matches("claude"));
        assert!(Glob::new("*-mini").matches("gpt-4o-mini"));
        assert!(!Glob::new("*-mini").matches("gpt-4o"));
        assert!(Glob::new("a*b*c").matches("abc"));
        assert!(Glob::new("a*b*c").matches("axxbyyc"));
        assert!(!Glob::new("a*b*c").matches("axxbyy"));
        assert!(!Glob::new("ab*ba").matches("aba"));
    }
}
