//! Inspection: what a client receives must never contain a credential, a canary or a link that
//! smuggles data out, whatever the provider sends and however the stream is chunked.
//!
//! - [`rule`] — a detection rule: prefilter anchor, windowed regex, validator.
//! - [`scanner`] — one aho-corasick automaton for all keywords + a digit-run detector decide where
//!   each rule's regex runs; findings are merged and replaced.
//! - [`holdback`] — streaming redaction that never releases part of a future match.
//! - [`validate`] — checksums and entropy.

pub mod canary;
pub mod catalog;
pub mod holdback;
pub mod redact;
pub mod rule;
pub mod scanner;
pub mod validate;

pub use holdback::HoldBack;
pub use rule::{Anchor, Category, Rule, RuleError, Severity};
pub use scanner::{Finding, Scanner};

/// The built-in rules, each with whether it is on by default.
pub fn builtin_rules() -> Result<Vec<(Rule, bool)>, RuleError> {
    use validate::luhn;
    Ok(vec![
        (
            Rule::new(
                "aws_access_key_id",
                Category::Credential,
                Severity::Critical,
                Anchor::Keywords(vec!["AKIA".into(), "ASIA".into()]),
                r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
                20,
            )?,
            true,
        ),
        (
            Rule::new(
                "password_assignment",
                Category::Credential,
                Severity::High,
                Anchor::Keywords(vec!["password".into()]),
                r#"(?i)password\s*[:=]\s*"?([^\s"]{8,64})"#,
                80,
            )?
            .with_group(1)?,
            true,
        ),
        (
            Rule::new(
                "payment_card",
                Category::Pii,
                Severity::High,
                Anchor::Digits(13),
                r"\b(?:\d[ -]?){12,18}\d\b",
                23,
            )?
            .with_validator(luhn),
            true,
        ),
        (
            Rule::new(
                "private_key_block",
                Category::Credential,
                Severity::Critical,
                Anchor::Keywords(vec!["-----BEGIN".into()]),
                r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?s:.*?-----END [A-Z ]*PRIVATE KEY-----|.*)",
                16384,
            )?
            .with_terminator("PRIVATE KEY-----"),
            true,
        ),
    ])
}
