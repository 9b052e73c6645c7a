//! Prints the classifier's score bits for every text of `tests/detection` (the evaluation sets,
//! the hold-out splits and the training data: 20,125 texts) and for variants of each, so a speed
//! change to the scorer can be shown to keep every score bit-identical:
//!
//! ```text
//! cargo run --release --example classifier_scores > before.txt   # on the old commit
//! cargo run --release --example classifier_scores > after.txt    # on the new one
//! cmp before.txt after.txt
//! ```
//!
//! Per text, one line: the `f32` bits of the score of the text, of its upper-cased form, of an
//! obfuscated form (leet digits, a zero-width space, letter spacing, fullwidth letters: the
//! signatures' folded view is built for it) and of a long form (the text and the next ones, ~3 KiB,
//! several windows), then a hash of the training view's features (`features_of`) of the text and
//! of its obfuscated form. Last, texts longer than the folded view's limit (`FOLD_MAX`, 256 KiB):
//! the obfuscated forms joined, in 300 KiB pieces.

use std::path::Path;

use firebreak::inspect::injection::classifier::{features_of, Model};

#[derive(serde::Deserialize)]
struct Line {
    text: String,
}

fn read_dir(dir: &Path, out: &mut Vec<String>) {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    for f in files {
        if f.is_dir() {
            read_dir(&f, out);
        } else if f.extension().is_some_and(|x| x == "jsonl") {
            let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            for (i, l) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let l: Line = serde_json::from_str(l).unwrap_or_else(|e| panic!("{}:{}: {e}", f.display(), i + 1));
                out.push(l.text);
            }
        }
    }
}

/// Leet digits in every third word, a zero-width space in every fifth, the first word letter
/// spaced, and every seventh word in fullwidth letters.
fn obfuscate(t: &str) -> String {
    let mut out = String::with_capacity(t.len() * 2);
    for (k, w) in t.split(' ').enumerate() {
        if k > 0 {
            out.push(' ');
        }
        if k == 0 && w.chars().all(|c| c.is_ascii_alphabetic()) && w.len() >= 4 {
            let spaced: Vec<String> = w.chars().map(String::from).collect();
            out.push_str(&spaced.join(" "));
            continue;
        }
        for (j, c) in w.chars().enumerate() {
            let c = match (k % 3, k % 7, c) {
                (0, _, 'o') => '0',
                (0, _, 'e') => '3',
                (0, _, 'i') => '1',
                (0, _, 'a') => '4',
                (_, 0, 'a'..='z') => char::from_u32(c as u32 - 'a' as u32 + 0xFF41).unwrap_or(c),
                _ => c,
            };
            out.push(c);
            if k % 5 == 2 && j == 1 {
                out.push('\u{200B}');
            }
        }
    }
    out
}

fn features_hash(text: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut n = 0u64;
    features_of(text, &mut |b| {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        n += 1;
    });
    h ^ n
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/detection");
    let mut texts = Vec::new();
    read_dir(&root, &mut texts);
    let model = Model::builtin().unwrap_or_else(|e| panic!("built-in model: {e}"));
    let score = |t: &str| model.score(t).to_bits();
    let mut scored = 0usize;
    for (i, t) in texts.iter().enumerate() {
        let upper = t.to_uppercase();
        let obf = obfuscate(t);
        let mut long = t.clone();
        let mut j = i + 1;
        while long.len() < 3072 {
            long.push(if j % 2 == 0 { '\n' } else { ' ' });
            long.push_str(&texts[j % texts.len()]);
            j += 1;
        }
        println!(
            "{i} {:08x} {:08x} {:08x} {:08x} {:016x} {:016x}",
            score(t),
            score(&upper),
            score(&obf),
            score(&long),
            features_hash(t),
            features_hash(&obf)
        );
        scored += 4;
    }
    let mut piece = String::new();
    let mut pieces = 0usize;
    for t in &texts {
        piece.push_str(&obfuscate(t));
        piece.push('\n');
        if piece.len() > 300 << 10 {
            println!("long {pieces} {} {:08x}", piece.len(), score(&piece));
            piece.clear();
            pieces += 1;
            scored += 1;
        }
    }
    println!("{} texts, {scored} scores", texts.len());
}
