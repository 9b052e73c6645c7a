//! A detection rule: where to look (prefilter anchors), what to match (a regex run only in a small
//! window around an anchor), and how to confirm (a validator that cuts false positives).

use std::fmt;

use regex::Regex;

/// What a rule detects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Keys, tokens, private keys, connection strings.
    Credential,
    /// Personal data.
    Pii,
    /// Canary tokens of managed prompts.
    Canary,
    /// Fragments of a managed system prompt.
    PromptFragment,
    /// Policy-defined pattern.
    Custom,
}

impl Category {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Credential => "credential",
            Category::Pii => "pii",
            Category::Canary => "canary",
            Category::PromptFragment => "prompt_fragment",
            Category::Custom => "custom",
        }
    }
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Informational.
    Low,
    /// Worth a look.
    Medium,
    /// A real leak.
    High,
    /// Stop everything.
    Critical,
}

/// Where the prefilter looks for a rule.
#[derive(Debug, Clone)]
pub enum Anchor {
    /// Literal keywords or prefixes (ASCII case-insensitive), found by one aho-corasick automaton.
    Keywords(Vec<String>),
    /// Runs of at least this many ASCII digits (separators ` `, `-`, `.` allowed inside a run).
    Digits(usize),
}

/// A confirmation step run on a regex match.
pub type Validator = fn(&str) -> bool;

/// One detection rule. Cloning is cheap (the compiled regex is shared).
#[derive(Clone)]
pub struct Rule {
    /// Stable id, used in `[REDACTED:<id>]`, audit records and metrics.
    pub id: String,
    /// Category.
    pub category: Category,
    /// Severity.
    pub severity: Severity,
    /// Prefilter anchors.
    pub anchor: Anchor,
    /// The match, run from up to `before` bytes ahead of an anchor to `max_len` past it.
    pub pattern: Regex,
    /// Capture group that is the secret (0: the whole match).
    pub group: usize,
    /// How far before the anchor a match may start (0 for prefixes).
    pub before: usize,
    /// The longest match, in bytes (bounds the window and the streaming hold-back).
    pub max_len: usize,
    /// Optional confirmation.
    pub validator: Option<Validator>,
    /// For unbounded blocks (PEM): a match ending with this is complete; any other match (from the
    /// opening marker to the size cap `max_len`) is held in streams until the cap is reached.
    pub terminator: Option<String>,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule").field("id", &self.id).field("category", &self.category).finish_non_exhaustive()
    }
}

/// Why a rule could not be built.
#[derive(Debug, thiserror::Error)]
#[error("rule `{id}`: {message}")]
pub struct RuleError {
    /// Rule id.
    pub id: String,
    /// What is wrong.
    pub message: String,
}

impl Rule {
    /// Builds a rule matching `pattern` (compiled here, once per policy) of at most `max_len` bytes.
    /// Refine with the `with_*` methods.
    pub fn new(
        id: &str,
        category: Category,
        severity: Severity,
        anchor: Anchor,
        pattern: &str,
        max_len: usize,
    ) -> Result<Rule, RuleError> {
        let err = |message: String| RuleError { id: id.to_owned(), message };
        let pattern = regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| err(format!("invalid pattern: {e}")))?;
        if let Anchor::Keywords(k) = &anchor {
            if k.is_empty() || k.iter().any(|w| w.is_empty()) {
                return Err(err("needs at least one non-empty keyword".into()));
            }
        }
        if max_len == 0 || max_len > 64 << 10 {
            return Err(err("max_len must be between 1 and 65536".into()));
        }
        Ok(Rule {
            id: id.to_owned(),
            category,
            severity,
            anchor,
            pattern,
            group: 0,
            before: 0,
            max_len,
            validator: None,
            terminator: None,
        })
    }

    /// The capture group that is the secret.
    pub fn with_group(mut self, group: usize) -> Result<Rule, RuleError> {
        if group >= self.pattern.captures_len() {
            return Err(RuleError { id: self.id.clone(), message: format!("capture group {group} does not exist") });
        }
        self.group = group;
        Ok(self)
    }

    /// How far before its anchor a match may start.
    pub fn with_before(mut self, before: usize) -> Rule {
        self.before = before;
        self
    }

    /// A confirmation step.
    pub fn with_validator(mut self, v: Validator) -> Rule {
        self.validator = Some(v);
        self
    }

    /// Marks an unbounded block rule complete when its match ends with `t`.
    pub fn with_terminator(mut self, t: &str) -> Rule {
        self.terminator = Some(t.to_owned());
        self
    }
}
