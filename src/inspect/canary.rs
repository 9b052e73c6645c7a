//! Canary tokens as detection rules, in every encoding a leaking model (or an attacker asking it)
//! might use: plain and mixed case, reversed, hex, URL-encoded, base64 in its three alignments, and
//! spaced or punctuated between characters.

use base64::Engine;

use super::rule::{Anchor, Category, Rule, RuleError, Severity};

/// A new canary for a managed prompt, from the operating system's CSPRNG (`OsRng`): two capitalised
/// pseudo-words of four consonant-vowel syllables around four digits, e.g. `Kavorine4821Telumasi`.
/// It reads like a reference code or a name, so the model treats it as ordinary text, yet it
/// carries about 64 bits (8 syllables of 80 choices ≈ 50.6 bits, 4 digits ≈ 13.3 bits): it cannot be
/// guessed, and ordinary text never contains it by chance.
pub fn generate() -> String {
    use rand::{Rng, TryRngCore};
    const CONSONANTS: &[u8; 16] = b"bdfgklmnprstvzch";
    const VOWELS: &[u8; 5] = b"aeiou";
    let mut rng = rand::rngs::OsRng.unwrap_err();
    let word = |rng: &mut rand::rand_core::UnwrapErr<rand::rngs::OsRng>, out: &mut String| {
        for i in 0..4 {
            let c = CONSONANTS[rng.random_range(0..CONSONANTS.len())] as char;
            out.push(if i == 0 { c.to_ascii_uppercase() } else { c });
            out.push(VOWELS[rng.random_range(0..VOWELS.len())] as char);
        }
    };
    let mut s = String::with_capacity(20);
    word(&mut rng, &mut s);
    let n: u16 = rng.random_range(0..10_000);
    s.push_str(&format!("{n:04}"));
    word(&mut rng, &mut s);
    s
}

/// Separators a model may put between a canary's characters.
const SEPARATORS: [char; 8] = [' ', '-', '.', '_', ',', '|', '/', ':'];

/// The rules detecting one canary (`id` names the prompt or canary, never the value).
pub fn rules(id: &str, canary: &str) -> Result<Vec<Rule>, RuleError> {
    let err = |m: &str| RuleError { id: format!("canary.{id}"), message: m.to_owned() };
    if canary.len() < 8 || !canary.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(err("a canary must be at least 8 ASCII letters or digits"));
    }
    let rid = format!("canary.{id}");
    let lit = |kw: &str| -> Result<Rule, RuleError> {
        Rule::new(
            &rid,
            Category::Canary,
            Severity::Critical,
            Anchor::Keywords(vec![kw.to_owned()]),
            &format!("(?i){}", regex::escape(kw)),
            kw.len(),
        )
    };
    let mut out = Vec::new();
    // Plain (any case) and reversed.
    out.push(lit(canary)?);
    let reversed: String = canary.chars().rev().collect();
    out.push(lit(&reversed)?);
    // Hex (either case: the automaton is case-insensitive).
    out.push(lit(&hex::encode(canary))?);
    // Fully percent-encoded.
    let pct: String = canary.bytes().map(|b| format!("%{b:02X}")).collect();
    out.push(lit(&pct)?);
    // Base64 in the three alignments: encode with 0, 1 or 2 bytes of unknown prefix, keep only the
    // characters that depend on the canary alone.
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    for pad in 0..3usize {
        let mut buf = vec![0u8; pad];
        buf.extend_from_slice(canary.as_bytes());
        let enc = b64.encode(&buf);
        let skip = match pad {
            0 => 0,
            1 => 2,
            _ => 3,
        };
        // Drop the last (possibly partial) character too: it depends on what follows.
        let core = &enc[skip..enc.len().saturating_sub(1)];
        if core.len() >= 8 {
            // Base64 is case-sensitive: exact match, anchored on a case-insensitive keyword.
            out.push(Rule::new(
                &rid,
                Category::Canary,
                Severity::Critical,
                Anchor::Keywords(vec![core.to_owned()]),
                &regex::escape(core),
                core.len(),
            )?);
        }
    }
    // Spaced or punctuated: c1 SEP c2 SEP c3 …, one separator style (with optional spaces) throughout.
    let chars: Vec<String> = canary.chars().map(|c| regex::escape(&c.to_string())).collect();
    let spaced_pattern = format!("(?i){}", chars.join(r"(?:[\s\-._,|/:]{1,3})"));
    let head: Vec<char> = canary.chars().take(3).collect();
    let keywords: Vec<String> = SEPARATORS
        .iter()
        .flat_map(|s| {
            [format!("{}{s}{}{s}{}", head[0], head[1], head[2]), format!("{}{s} {}{s} {}", head[0], head[1], head[2])]
        })
        .collect();
    out.push(Rule::new(
        &rid,
        Category::Canary,
        Severity::Critical,
        Anchor::Keywords(keywords),
        &spaced_pattern,
        canary.len() * 4,
    )?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::Scanner;

    const CANARY: &str = "fbX7kQ2mZp9RtL4w";

    fn scanner() -> Scanner {
        Scanner::new(rules("support", CANARY).unwrap(), "[REDACTED:<rule-id>]").unwrap()
    }

    #[test]
    fn every_encoding_is_caught() {
        let s = scanner();
        let b64 = base64::engine::general_purpose::STANDARD;
        let forms = vec![
            CANARY.to_owned(),
            CANARY.to_uppercase(),
            CANARY.chars().rev().collect(),
            hex::encode(CANARY),
            hex::encode(CANARY).to_uppercase(),
            CANARY.bytes().map(|b| format!("%{b:02x}")).collect(),
            b64.encode(CANARY),
            b64.encode(format!("a{CANARY}")),
            b64.encode(format!("ab{CANARY}")),
            CANARY.chars().map(String::from).collect::<Vec<_>>().join(" "),
            CANARY.chars().map(String::from).collect::<Vec<_>>().join("-"),
            CANARY.chars().map(String::from).collect::<Vec<_>>().join(". "),
        ];
        for f in forms {
            let text = format!("the model said: {f} (end)");
            let (red, found) = s.redact(&text);
            assert!(!found.is_empty(), "missed {f}");
            assert!(red.contains("[REDACTED:canary.support]"), "{red}");
        }
    }

    #[test]
    fn ordinary_text_is_not_a_canary() {
        let s = scanner();
        assert!(s.scan("fbX7 is a prefix and Z p 9 R are letters; hex 66 62 58").is_empty());
    }

    #[test]
    fn generated_canaries_are_valid_distinct_and_detected() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert_eq!(a.len(), 20);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()), "{a}");
        let s = Scanner::new(rules("p", &a).unwrap(), "[REDACTED:<rule-id>]").unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("ref {a}"));
        assert!(!s.scan(&format!("my reference is {a}")).is_empty());
        assert!(!s.scan(&b64).is_empty(), "{b64}");
    }

    #[test]
    fn weak_canaries_are_refused() {
        assert!(rules("x", "short").is_err());
        assert!(rules("x", "has spaces in it").is_err());
    }
}
