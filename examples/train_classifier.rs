//! Trains the built-in injection classifier and writes `models/injection-v1.bin`.
//!
//! ```text
//! cargo run --release --example train_classifier            # train, write the model, print metrics
//! cargo run --release --example train_classifier -- --check # train and compare with the file in the tree
//! ```
//!
//! Offline and deterministic: the data is `tests/detection/train/*.jsonl` (written by
//! `tests/detection/train/gen_train.py`, seeded), the shuffle uses a fixed-seed xorshift, and the
//! arithmetic is plain `f32`/`f64` in a fixed order, so the same data gives the same bytes on every
//! machine and profile. A deterministic 15% of the training lines (by a hash of the text) is held
//! out; the metrics printed for it, and for the evaluation sets in `tests/detection/*.jsonl` (which
//! the training never reads otherwise), are those quoted in `models/README.md`.
//!
//! The model: logistic regression on hashed features (see `inspect::injection::features`), each
//! occurrence weighted 1/sqrt(n) (n features in the text), AdaGrad, L2, 12 epochs. Benign lines
//! weigh 1.5 and tricky-benign 3 in the loss (false positives cost more than misses). Weights are
//! quantised to i8 with one scale.

use std::collections::BTreeMap;
use std::path::Path;

use firebreak::inspect::injection::classifier::{features_of, Model};
use firebreak::inspect::injection::features::DIM;

const EPOCHS: usize = 12;
const LR: f64 = 0.25;
const L2: f64 = 2e-6;
const SEED: u64 = 0x5eed_2026_1203;
const THRESHOLDS: [f32; 12] = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.96, 0.97, 0.98];

#[derive(serde::Deserialize)]
struct Line {
    text: String,
    label: String,
    source: String,
    #[serde(default)]
    tags: Vec<String>,
}

struct Example {
    feats: Vec<u32>,
    y: f64,
    weight: f64,
    label: String,
    source: String,
    text: String,
    tags: Vec<String>,
}

fn read_dir(dir: &Path) -> Vec<Line> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for (i, l) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            out.push(serde_json::from_str(l).unwrap_or_else(|e| panic!("{}:{}: {e}", f.display(), i + 1)));
        }
    }
    out
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn example(l: Line) -> Example {
    let mut feats = Vec::new();
    features_of(&l.text, &mut |b| feats.push(b));
    let attack = matches!(l.label.as_str(), "injection" | "extraction" | "jailbreak");
    let weight = match l.label.as_str() {
        "tricky_benign" => 3.0,
        "benign" => 1.5,
        _ => 1.0,
    };
    Example {
        feats,
        y: if attack { 1.0 } else { 0.0 },
        weight,
        label: l.label,
        source: l.source,
        text: l.text,
        tags: l.tags,
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn main() {
    let check = std::env::args().any(|a| a == "--check");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lines = read_dir(&root.join("tests/detection/train"));
    let (mut train, mut held) = (Vec::new(), Vec::new());
    for l in lines {
        if fnv(&l.text) % 100 < 15 {
            held.push(example(l));
        } else {
            train.push(example(l));
        }
    }
    println!("train: {} lines, held out: {} lines", train.len(), held.len());

    let mut w = vec![0f64; DIM];
    let mut g2 = vec![1e-6f64; DIM];
    let (mut bias, mut bias_g2) = (0f64, 1e-6f64);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut rng = Rng(SEED);
    for epoch in 0..EPOCHS {
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        let mut loss = 0f64;
        for &i in &order {
            let ex = &train[i];
            if ex.feats.is_empty() {
                continue;
            }
            let v = 1.0 / (ex.feats.len() as f64).sqrt();
            let z: f64 = ex.feats.iter().map(|&f| w[f as usize] * v).sum::<f64>() + bias;
            let p = 1.0 / (1.0 + (-z).exp());
            loss -= ex.weight * if ex.y > 0.5 { p.max(1e-12).ln() } else { (1.0 - p).max(1e-12).ln() };
            let g = ex.weight * (p - ex.y);
            for &f in &ex.feats {
                let f = f as usize;
                let gi = g * v + L2 * w[f];
                g2[f] += gi * gi;
                w[f] -= LR * gi / g2[f].sqrt();
            }
            bias_g2 += g * g;
            bias -= LR * g / bias_g2.sqrt();
        }
        println!("epoch {:2}: loss {:.4}", epoch + 1, loss / train.len() as f64);
    }

    // Quantise: one scale for all weights, so that the largest maps to ±127.
    let max = w.iter().fold(0f64, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let q: Vec<i8> = w.iter().map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8).collect();
    let bytes = Model::encode(&q, scale as f32, bias as f32);
    let model = Model::parse(&bytes).unwrap_or_else(|e| panic!("the encoded model does not parse: {e}"));
    let nonzero = q.iter().filter(|&&x| x != 0).count();
    println!("weights: {nonzero} of {DIM} buckets non-zero, scale {scale:.6}, bias {bias:.4}");
    println!("model: {} bytes, sha256 {}", bytes.len(), model.sha256_hex());

    println!("\n## Held-out split of the training data ({} lines)", held.len());
    report(&model, &held);
    let eval_dir = root.join("tests/detection");
    if eval_dir.is_dir() {
        let eval: Vec<Example> = read_dir(&eval_dir).into_iter().map(example).collect();
        println!("\n## Evaluation sets, tests/detection/*.jsonl ({} lines; never trained on)", eval.len());
        report(&model, &eval);
        // Which kinds of benign text score high (tags only, never text).
        let mut by_tag: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for e in eval.iter().filter(|e| e.y < 0.5) {
            let s = model.score(&e.text);
            for t in e.tags.iter().map(String::as_str).chain([e.label.as_str()]) {
                let c = by_tag.entry(t.to_owned()).or_default();
                c.0 += 1;
                c.1 += usize::from(s >= 0.9);
            }
        }
        println!("\nbenign samples scoring >= 0.9, by tag: {by_tag:?}");
    }
    // The hold-out split: holdout/ (written after the signatures were frozen) and holdout2/
    // (hand-written for the second pass of issue 17, before the scheme-2 model was trained); neither is trained or tuned on.
    let mut set: Vec<Example> = Vec::new();
    for sub in ["holdout", "holdout2"] {
        let dir = root.join("tests/detection").join(sub);
        if dir.is_dir() {
            set.extend(read_dir(&dir).into_iter().map(example));
        }
    }
    if !set.is_empty() {
        println!(
            "\n## Hold-out split, tests/detection/holdout{{,2}}/*.jsonl ({} lines; never trained or tuned on)",
            set.len()
        );
        report(&model, &set);
    }

    let path = root.join("models/injection-v1.bin");
    if check {
        let current = std::fs::read(&path).unwrap_or_default();
        if current == bytes {
            println!("\n{} is what this training produces", path.display());
        } else {
            eprintln!("\n{} differs from what this training produces", path.display());
            std::process::exit(1);
        }
    } else {
        std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        println!("\nwrote {}", path.display());
    }
}

/// Precision, recall and false-positive rates at each threshold, per source, with the scores the
/// gateway computes (windows, quantised weights).
fn report(model: &Model, set: &[Example]) {
    let scored: Vec<(f32, &Example)> = set.iter().map(|e| (model.score(&e.text), e)).collect();
    for source in ["user", "tool"] {
        let rows: Vec<&(f32, &Example)> = scored.iter().filter(|(_, e)| e.source == source).collect();
        let mut n: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, e) in &rows {
            *n.entry(e.label.as_str()).or_default() += 1;
        }
        println!("\nsource {source}: {n:?}");
        println!("| threshold | precision | recall (all attacks) | injection | extraction | jailbreak | FPR benign | FPR tricky-benign |");
        println!("|---|---|---|---|---|---|---|---|");
        for t in THRESHOLDS {
            let hit = |label: &str| rows.iter().filter(|(s, e)| e.label == label && *s >= t).count();
            let tot = |label: &str| n.get(label).copied().unwrap_or(0);
            let rate = |a: usize, b: usize| {
                if b == 0 {
                    "-".to_owned()
                } else {
                    format!("{:.1}%", 100.0 * a as f64 / b as f64)
                }
            };
            let attacks = hit("injection") + hit("extraction") + hit("jailbreak");
            let attack_n = tot("injection") + tot("extraction") + tot("jailbreak");
            let fp = hit("benign") + hit("tricky_benign");
            println!(
                "| {t:.2} | {} | {} | {} | {} | {} | {} | {} |",
                rate(attacks, attacks + fp),
                rate(attacks, attack_n),
                rate(hit("injection"), tot("injection")),
                rate(hit("extraction"), tot("extraction")),
                rate(hit("jailbreak"), tot("jailbreak")),
                rate(hit("benign"), tot("benign")),
                rate(hit("tricky_benign"), tot("tricky_benign")),
            );
        }
    }
}
