//! The inspection sections of the policy: `[redaction]` (built-in catalog, custom rules, canaries,
//! prompts), `[egress]` and `[injection]`, compiled once per policy into shared runtime objects.

use std::path::Path;
use std::sync::Arc;

use super::compile::{path, positive};
use super::raw::RawPolicy;
use super::validate::Problems;

/// The compiled inspection objects of a policy.
pub(super) struct Inspection {
    pub scanner: Arc<crate::inspect::Scanner>,
    pub prompts: Arc<crate::inspect::fragments::PromptShingles>,
    pub egress: Arc<crate::inspect::egress::EgressRules>,
    pub injection: Arc<crate::inspect::injection::Signatures>,
}

/// Compiles the inspection sections, recording every problem; `None` when any part failed.
pub(super) fn compile(
    raw: &RawPolicy,
    managed: &std::collections::BTreeMap<String, super::prompts::ManagedPrompt>,
    base: &Path,
    problems: &mut Problems,
) -> Option<Inspection> {
    let scanner = compile_redaction(&raw.redaction, problems);
    let mut prompts = crate::inspect::fragments::PromptShingles::default();
    // Every text of a managed prompt counts, the retired ones included: a leak of an old version
    // is still a leak. Texts too short to hold a shingle simply never match.
    for p in managed.values() {
        for t in p.texts() {
            prompts.add(&p.id, &t.text);
        }
    }
    for (i, p) in raw.redaction.prompts.iter().enumerate() {
        let at = path(["redaction".into(), "prompts".into(), i.into(), "id".into()]);
        let text = match (&p.text, &p.text_file) {
            (Some(t), None) => Some(t.clone()),
            (None, Some(f)) => match std::fs::read_to_string(super::compile::resolve_path(base, f)) {
                Ok(t) => Some(t),
                Err(e) => {
                    problems.add(0, at.clone(), format!("cannot read prompt file {f}: {e}"), None);
                    None
                }
            },
            _ => {
                problems.add(0, at.clone(), "set text or text_file, not both", None);
                None
            }
        };
        if let Some(t) = text {
            if t.split_whitespace().count() < crate::inspect::fragments::SHINGLE {
                problems.add(
                    0,
                    at,
                    format!(
                        "prompt `{}` is shorter than {} words: no fragment could be recognised",
                        p.id,
                        crate::inspect::fragments::SHINGLE
                    ),
                    None,
                );
            }
            prompts.add(&p.id, &t);
        }
    }
    let egress_cfg = raw.egress.clone().unwrap_or_else(|| crate::inspect::egress::EgressConfig {
        mode: crate::inspect::egress::EgressMode::Denylist,
        ..Default::default()
    });
    let egress = match crate::inspect::egress::EgressRules::compile(&egress_cfg) {
        Ok(e) => Some(e),
        Err(errs) => {
            for e in errs {
                problems.add(
                    0,
                    path(["egress".into()]),
                    e,
                    Some("see the [egress] section of policies/example.toml".into()),
                );
            }
            None
        }
    };
    let injection = match crate::inspect::injection::Signatures::with_config(&raw.injection) {
        Ok(s) => Some(s),
        Err(errs) => {
            for e in errs {
                problems.add(
                    0,
                    path(["injection".into()]),
                    e,
                    Some("see the [injection] section of policies/example.toml".into()),
                );
            }
            None
        }
    };
    Some(Inspection {
        scanner: Arc::new(scanner?),
        prompts: Arc::new(prompts),
        egress: Arc::new(egress?),
        injection: Arc::new(injection?),
    })
}

/// Builds the redaction scanner: the built-in catalog (minus `disabled`, plus off-by-default rules in
/// `enabled`), custom rules and canaries.
fn compile_redaction(r: &super::raw::RawRedaction, problems: &mut Problems) -> Option<crate::inspect::Scanner> {
    use crate::inspect::{Anchor, Category, Rule, Severity};
    let at = |k: &str| path(["redaction".into(), k.into()]);
    let builtin = match crate::inspect::builtin_rules() {
        Ok(b) => b,
        Err(e) => {
            problems.add(0, at("disabled"), format!("built-in catalog failed to build: {e}"), None);
            return None;
        }
    };
    let known: std::collections::BTreeSet<String> = builtin.iter().map(|(r, _)| r.id.clone()).collect();
    for (list, name) in [(&r.disabled, "disabled"), (&r.enabled, "enabled")] {
        for (i, id) in list.iter().enumerate() {
            if !known.contains(id) {
                problems.add(
                    0,
                    path(["redaction".into(), name.into(), i.into()]),
                    format!("unknown built-in rule `{id}`"),
                    Some("`firebreak rules` lists the built-in rule ids".into()),
                );
            }
        }
    }
    let mut rules: Vec<Rule> = builtin
        .into_iter()
        .filter(|(rule, on)| if *on { !r.disabled.contains(&rule.id) } else { r.enabled.contains(&rule.id) })
        .map(|(rule, _)| rule)
        .collect();
    for (i, c) in r.custom.iter().enumerate() {
        let cat = |k: &str| path(["redaction".into(), "custom".into(), i.into(), k.into()]);
        if known.contains(&c.id) {
            problems.add(
                0,
                cat("id"),
                format!("custom rule id `{}` is a built-in rule id", c.id),
                Some("choose another id".into()),
            );
        }
        let category = match c.category.as_deref().unwrap_or("custom") {
            "credential" => Category::Credential,
            "pii" => Category::Pii,
            "custom" => Category::Custom,
            other => {
                problems.add(
                    0,
                    cat("category"),
                    format!("unknown category `{other}`"),
                    Some("use credential, pii or custom".into()),
                );
                Category::Custom
            }
        };
        let severity = match c.severity.as_deref().unwrap_or("high") {
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            other => {
                problems.add(
                    0,
                    cat("severity"),
                    format!("unknown severity `{other}`"),
                    Some("use low, medium, high or critical".into()),
                );
                Severity::High
            }
        };
        let max_len = positive(c.max_len, 128, 0, cat("max_len"), problems) as usize;
        let built = Rule::new(&c.id, category, severity, Anchor::Keywords(c.keywords.clone()), &c.pattern, max_len)
            .and_then(|rule| rule.with_group(c.group.unwrap_or(0).max(0) as usize));
        match built {
            Ok(rule) => rules.push(rule),
            Err(e) => problems.add(
                0,
                cat("pattern"),
                e.to_string(),
                Some("patterns use Rust regex syntax; keywords must be literal text every match contains".into()),
            ),
        }
    }
    for (i, c) in r.canaries.iter().enumerate() {
        let cat = |k: &str| path(["redaction".into(), "canaries".into(), i.into(), k.into()]);
        let value = match (&c.value, &c.value_env) {
            (Some(v), None) => Some(v.clone()),
            (None, Some(e)) => std::env::var(e).ok(),
            _ => {
                problems.add(0, cat("id"), "set value or value_env, not both", None);
                None
            }
        };
        // A canary named by an absent variable is reported by `check` but not fatal elsewhere.
        let Some(value) = value else { continue };
        match crate::inspect::canary::rules(&c.id, &value) {
            Ok(mut rs) => rules.append(&mut rs),
            Err(e) => problems.add(
                0,
                cat("value"),
                e.to_string(),
                Some("canaries are random ASCII letters and digits, 8 or more".into()),
            ),
        }
    }
    let replacement = r.replacement.as_deref().unwrap_or("[REDACTED:<rule-id>]");
    match crate::inspect::Scanner::new(rules, replacement) {
        Ok(s) => Some(s),
        Err(e) => {
            problems.add(0, at("custom"), e.to_string(), None);
            None
        }
    }
}
