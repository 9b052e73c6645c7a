//! Throughput of the redaction scanner with the built-in catalog (default-on rules).
//!
//! Run: `cargo bench --bench scanner` (1 s warm-up, 3 s measurement each).
//!
//! - `scan/clean_1MiB`: `Scanner::scan` over 1 MiB of realistic English prose, markdown and code with
//!   no secrets (the common case: every response is scanned).
//! - `scan/dense_1MiB`: 1 MiB dense with prefilter hits — `token`, `password`, `secret`, `api_key`,
//!   `https://`, `@`, `sk-`, long digit runs — but no secrets, so every hit runs a windowed regex.
//! - `scan/clean_1MiB_4_canaries`: the clean text with the canary rules of four managed prompts
//!   added (about 90 more keywords, so more prefilter searchers).
//! - `holdback/clean_1MiB_32B_chunks`: the streaming `HoldBack` fed the clean text in 32-byte
//!   deltas (what an SSE stream looks like).
//! - `baseline/memchr`: one `memchr` pass for a byte that never occurs (memory bandwidth bound).
//! - `baseline/aho_corasick_keywords`: an overlapping aho-corasick pass with the catalog's keyword
//!   set, ASCII case-insensitive, a DFA, as the scanner builds it — the floor for the prefilter design.
//! - `injection/*`: `Signatures::scan` (the built-in injection signatures) on a typical 300-byte
//!   user prompt, a 4 KiB tool result (an HTML page), 1 MiB of the clean text, and 1 MiB of prose
//!   dense with the words the signatures anchor on (you, your, ai, model, rules, instructions,
//!   previous, prompt, no, if, two, world …) but no attack.

use std::hint::black_box;
use std::time::Duration;

use aho_corasick::{AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use firebreak::inspect::injection::Signatures;
use firebreak::inspect::{canary, catalog, Anchor, HoldBack, Scanner};

const MIB: usize = 1 << 20;

const CLEAN: &[&str] = &[
    "The quarterly report shows that revenue grew in every region except the north, where a \
     late shipment delayed two large orders. We expect those orders to close next month, and the \
     team has already adjusted the forecast. Customer satisfaction stayed high, and churn fell \
     slightly compared with the previous period.\n\n",
    "## Getting started\n\nInstall the command-line tool with your package manager, then run the \
     setup wizard. It asks for the name of your workspace and the region closest to you. When it \
     finishes, open the dashboard in your browser and follow the guided tour; it takes about five \
     minutes.\n\n- Create a project\n- Invite your colleagues\n- Connect a data source\n\n",
    "```rust\nfn merge(a: &[i32], b: &[i32]) -> Vec<i32> {\n    let mut out = Vec::with_capacity(a.len() \
     + b.len());\n    let (mut i, mut j) = (0, 0);\n    while i < a.len() && j < b.len() {\n        if a[i] \
     <= b[j] { out.push(a[i]); i += 1; } else { out.push(b[j]); j += 1; }\n    }\n    \
     out.extend_from_slice(&a[i..]);\n    out.extend_from_slice(&b[j..]);\n    out\n}\n```\n\n",
    "To answer your question: the difference between a process and a thread is that threads share \
     the memory of their process, while processes are isolated from one another by the operating \
     system. Sharing memory makes communication cheap but requires careful synchronisation, for \
     example with mutexes or channels, to avoid data races.\n\n",
    "```python\ndef summarize(rows):\n    totals = {}\n    for row in rows:\n        key = row[\"category\"]\n        \
     totals[key] = totals.get(key, 0) + row[\"amount\"]\n    return sorted(totals.items(), key=lambda kv: \
     -kv[1])\n```\n\nThe function groups the rows by category and sorts the totals in descending order.\n\n",
    "| Step | Duration | Owner |\n|---|---|---|\n| Design review | 2 days | Platform |\n| Implementation | \
     1 week | Backend |\n| Rollout | 3 days | SRE |\n\nIf anything slips, we will move the rollout to the \
     following week rather than compress the testing phase.\n\n",
];

const DENSE: &[&str] = &[
    "The auth token expires after one hour; refresh the token before it does. Never log the password \
     or the secret, and keep the api_key out of the repository. See https://docs.acme.io/auth and \
     https://status.acme.io for details, or write to support at the help desk (@support on chat).\n",
    "token_count: 1234, max_tokens: 4096, password_policy: strong, secret_rotation: 90 days, \
     api_key_header: X-Api-Key, access_key_rotation: enabled, build 20240502-1711, order 100234567890.\n",
    "We assessed the risk-free rate; the task-runner and desk-booking services use key-value stores. \
     Contact @alice and @bob; ssn and social security fields are masked; bot tokens are rotated by the \
     discord and slack admins; heroku and cloudflare settings live in the vault.\n",
    "curl -H \"Authorization: Bearer $TOKEN\" https://api.acme.io/v1/items?page=2&sig=none \
     -d '{\"password\": \"$PASSWORD\", \"secret\": \"${SECRET}\", \"api_key\": \"<your key>\"}'\n",
];

const PROMPT: &str = "Can you help me plan a three-day trip to Lisbon in April? I'd like to see the \
     old town, eat good seafood and take one day trip, maybe to Sintra. We are two adults, no car, \
     and a medium budget. What would you suggest, and which neighbourhood should we stay in?";

const TOOL_PAGE: &str = "<html><head><title>Lisbon travel guide</title></head><body><nav><a href=\"/\">Home</a> \
     <a href=\"/guides\">Guides</a></nav><h1>Three days in Lisbon</h1><p>Start in Alfama, the oldest \
     district, and walk up to the castle for the view. Trams 28 and 12 are crowded in the morning, so go \
     early or walk.</p><p>Day two: take the train from Rossio to Sintra (40 minutes) and visit Pena Palace \
     and the Moorish Castle; book tickets online.</p><p>Day three: Belém, the monastery, the tower and the \
     famous custard tarts.</p><footer>Updated 2024. Prices may change.</footer></body></html>\n";

const DENSE_INJ: &[&str] = &[
    "If you are new to the model, read the rules first: your previous answers are kept, and the system \
     prompt of your app sets the instructions the AI follows. No two runs are the same, so both outputs \
     may differ.\n",
    "The world model in the paper has no hidden state; you can print the text above the chart, repeat the \
     test twice and ignore outliers in the earlier data. Your developer guide explains the mode switch.\n",
    "Do not forget to stop the server before you drop the table. Translate the content into Spanish and \
     show me the first line of the file. Never mind the late delivery; the assistant manager agreed.\n",
];

fn fill(parts: &[&str], n: usize) -> String {
    let mut s = String::with_capacity(n + 1024);
    let mut i = 0;
    while s.len() < n {
        s.push_str(parts[i % parts.len()]);
        i += 1;
    }
    s.truncate(n);
    s
}

fn scanner() -> Scanner {
    let rules = catalog::builtin().expect("catalog").into_iter().filter(|(_, on)| *on).map(|(r, _)| r).collect();
    Scanner::new(rules, "[REDACTED:<rule-id>]").expect("scanner")
}

fn keywords(s: &Scanner) -> Vec<String> {
    let mut k: Vec<String> = s
        .rules()
        .iter()
        .filter_map(|r| match &r.anchor {
            Anchor::Keywords(k) => Some(k.iter().map(|w| w.to_ascii_lowercase())),
            Anchor::Digits(_) => None,
        })
        .flatten()
        .collect();
    k.sort();
    k.dedup();
    k
}

fn benches(c: &mut Criterion) {
    let s = scanner();
    let clean = fill(CLEAN, MIB);
    let dense = fill(DENSE, MIB);
    assert!(s.scan(&clean).is_empty(), "clean text has findings: {:?}", s.scan(&clean).first());
    let findings = s.scan(&dense);
    assert!(
        findings.is_empty(),
        "dense text has findings: {:?}",
        findings.first().map(|f| (s.rule(f.rule).id.clone(), &dense[f.start..f.end]))
    );

    let mut g = c.benchmark_group("scan");
    g.throughput(Throughput::Bytes(MIB as u64));
    g.bench_function("clean_1MiB", |b| b.iter(|| black_box(s.scan(black_box(&clean)))));
    g.bench_function("dense_1MiB", |b| b.iter(|| black_box(s.scan(black_box(&dense)))));
    let canaries = ["Kavorine4821Telumasi", "Bodimuza0042Serakoti", "Femarizu7310Gokalune", "Tusenika5558Ravomedi"];
    let sc = s
        .extended(
            canaries
                .iter()
                .enumerate()
                .flat_map(|(i, c)| canary::rules(&format!("p{i}"), c).expect("canary"))
                .collect(),
        )
        .expect("scanner with canaries");
    assert!(sc.scan(&clean).is_empty());
    g.bench_function("clean_1MiB_4_canaries", |b| b.iter(|| black_box(sc.scan(black_box(&clean)))));
    g.finish();

    let mut g = c.benchmark_group("holdback");
    g.throughput(Throughput::Bytes(MIB as u64));
    g.bench_function("clean_1MiB_32B_chunks", |b| {
        b.iter(|| {
            let mut hb = HoldBack::new();
            let mut out = String::with_capacity(MIB);
            let bytes = clean.as_bytes();
            let mut at = 0;
            while at < bytes.len() {
                let mut end = (at + 32).min(bytes.len());
                while !clean.is_char_boundary(end) {
                    end += 1;
                }
                hb.push(&s, &clean[at..end], &mut out);
                at = end;
            }
            hb.finish(&s, &mut out);
            black_box(out.len())
        })
    });
    g.finish();

    let sigs = Signatures::builtin();
    let tool_page = fill(&[TOOL_PAGE], 4096);
    let dense_inj = fill(DENSE_INJ, MIB);
    assert!(sigs.scan(PROMPT).is_empty());
    assert!(sigs.scan(&tool_page).is_empty(), "{:?}", sigs.scan(&tool_page).first());
    assert!(sigs.scan(&clean).is_empty());
    let mut g = c.benchmark_group("injection");
    g.throughput(Throughput::Bytes(PROMPT.len() as u64));
    g.bench_function("prompt_300B", |b| b.iter(|| black_box(sigs.scan(black_box(PROMPT)))));
    g.throughput(Throughput::Bytes(tool_page.len() as u64));
    g.bench_function("tool_page_4KiB", |b| b.iter(|| black_box(sigs.scan(black_box(&tool_page)))));
    g.throughput(Throughput::Bytes(MIB as u64));
    g.bench_function("clean_1MiB", |b| b.iter(|| black_box(sigs.scan(black_box(&clean)))));
    g.bench_function("dense_keywords_1MiB", |b| b.iter(|| black_box(sigs.scan(black_box(&dense_inj)))));
    g.finish();

    let ac = AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::Standard)
        .kind(Some(AhoCorasickKind::DFA))
        .build(keywords(&s))
        .expect("automaton");
    let mut g = c.benchmark_group("baseline");
    g.throughput(Throughput::Bytes(MIB as u64));
    g.bench_function("memchr", |b| b.iter(|| black_box(memchr::memchr(0, black_box(clean.as_bytes())))));
    g.bench_function("aho_corasick_keywords_clean", |b| {
        b.iter(|| black_box(ac.find_overlapping_iter(black_box(clean.as_bytes())).count()))
    });
    g.bench_function("aho_corasick_keywords_dense", |b| {
        b.iter(|| black_box(ac.find_overlapping_iter(black_box(dense.as_bytes())).count()))
    });
    g.finish();
}

criterion_group! {
    name = scanner_benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(20);
    targets = benches
}
criterion_main!(scanner_benches);
