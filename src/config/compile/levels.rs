//! `[levels.NAME]`: the degradation levels' rate, concurrency, tools, model and message, over
//! built-in defaults.

use std::collections::BTreeMap;

use super::path;
use crate::config::raw::RawLevel;
use crate::config::validate::Problems;
use crate::config::{Level, LevelSettings, Levels, ToolsMode};

/// Every level's settings: the defaults, overridden by the policy.
pub(super) fn compile(raw: &BTreeMap<String, RawLevel>, problems: &mut Problems) -> Levels {
    let mut settings = Level::ALL.map(default_level);
    for (name, lv) in raw {
        let Some(level) = Level::parse(name) else {
            problems.add(
                0,
                path(["levels".into(), name.clone().into()]),
                format!("unknown level `{name}`"),
                Some("levels are normal, elevated, critical, lockdown".into()),
            );
            continue;
        };
        apply(name, lv, &mut settings[level as usize], problems);
    }
    Levels(settings)
}

/// One `[levels.NAME]` table over its level's settings.
fn apply(name: &str, lv: &RawLevel, s: &mut LevelSettings, problems: &mut Problems) {
    let at = |k: &str| path(["levels".into(), name.into(), k.into()]);
    if let Some(rpm) = lv.requests_per_minute {
        match u32::try_from(rpm) {
            Ok(v) => s.requests_per_minute = v,
            Err(_) => problems.add(0, at("requests_per_minute"), format!("must be 0 or more, not {rpm}"), None),
        }
    }
    if let Some(n) = lv.max_in_flight {
        match u32::try_from(n) {
            Ok(v) => s.max_in_flight = v,
            Err(_) => problems.add(0, at("max_in_flight"), format!("must be 0 or more, not {n}"), None),
        }
    }
    if let Some(t) = &lv.tools {
        s.tools = match t.as_str() {
            "all" => ToolsMode::All,
            "no_side_effects" => ToolsMode::NoSideEffects,
            "none" => ToolsMode::None,
            other => {
                problems.add(
                    0,
                    at("tools"),
                    format!("unknown tools mode `{other}`"),
                    Some("use \"all\", \"no_side_effects\" or \"none\"".into()),
                );
                s.tools
            }
        };
    }
    if lv.model.is_some() {
        s.model = lv.model.clone();
    }
    if let Some(msg) = &lv.message {
        s.message = msg.clone();
    }
}

fn default_level(level: Level) -> LevelSettings {
    let (rpm, in_flight, tools) = match level {
        Level::Normal => (100, 64, ToolsMode::All),
        Level::Elevated => (20, 16, ToolsMode::NoSideEffects),
        Level::Critical => (5, 4, ToolsMode::None),
        // Lockdown refuses AI and MCP requests by its switch (with its message); the share only
        // matters for what lockdown lets through.
        Level::Lockdown => (0, 4, ToolsMode::None),
    };
    LevelSettings {
        requests_per_minute: rpm,
        max_in_flight: in_flight,
        tools,
        model: None,
        message: "The AI service is under maintenance. Please try again later.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{located, raw};
    use super::*;

    #[test]
    fn defaults_overridden_by_the_policy() {
        let text =
            "[levels.elevated]\nrequests_per_minute = 7\ntools = \"none\"\nmodel = \"small\"\nmessage = \"busy\"\n";
        let mut p = Problems::default();
        let l = compile(&raw(text).levels, &mut p);
        assert!(p.is_empty());
        let e = l.get(Level::Elevated);
        assert_eq!((e.requests_per_minute, e.max_in_flight, e.tools), (7, 16, ToolsMode::None));
        assert_eq!((e.model.as_deref(), e.message.as_str()), (Some("small"), "busy"));
        let n = l.get(Level::Normal);
        assert_eq!((n.requests_per_minute, n.max_in_flight, n.tools), (100, 64, ToolsMode::All));
        assert_eq!(l.get(Level::Lockdown).requests_per_minute, 0);
    }

    #[test]
    fn bad_levels_are_reported_at_their_keys() {
        let text = "[levels.panic]\nrequests_per_minute = 1\n\n[levels.critical]\nrequests_per_minute = -1\n\
                    max_in_flight = -2\ntools = \"some\"\n";
        let mut p = Problems::default();
        let l = compile(&raw(text).levels, &mut p);
        assert_eq!(l.get(Level::Critical).requests_per_minute, 5, "the default stays");
        let found: Vec<(usize, String)> = located(p, text).into_iter().map(|l| (l.line, l.message)).collect();
        assert_eq!(
            found,
            [
                (1, "unknown level `panic`".to_owned()),
                (5, "must be 0 or more, not -1".to_owned()),
                (6, "must be 0 or more, not -2".to_owned()),
                (7, "unknown tools mode `some`".to_owned()),
            ]
        );
    }
}
