//! `firebreak eval-detection DIR... [--policy FILE] [--json]`: detection quality of the injection
//! engine on labelled JSONL sets (see `inspect::injection::eval`). Prints counts and rates, never
//! a sample's text (unless `--list-errors`, a tool for working on the project's own sets). Exit status 0 when the run completed, 2 when the sets or the policy are broken.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::inspect::injection::eval;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directories of labelled `*.jsonl` sets (top level only), e.g. tests/detection; several are
    /// evaluated as one set (e.g. tests/detection/holdout tests/detection/holdout2).
    #[arg(required = true, num_args = 1..)]
    dir: Vec<PathBuf>,
    /// Use this policy's `[injection]` section (actions, disabled and custom signatures, the
    /// classifier); default: the built-in signatures with the default actions (user input: block,
    /// tool results: strip), then both stages with the classifier's default thresholds.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// One JSON object per stage instead of tables.
    #[arg(long)]
    json: bool,
    /// Also list the samples the stage got wrong (missed attacks, enforced benign texts), with the
    /// signature ids that hit: for working on the signatures, on the project's own sets.
    #[arg(long)]
    list_errors: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    // Without --policy: the built-in signatures with the default actions, and the built-in model
    // with its default thresholds for stage 2, so the harness shows both stages as shipped (stage 1
    // never consults the classifier).
    let policy = match &a.policy {
        Some(p) => crate::config::load(p)?,
        None => crate::config::load_str(
            "<built-in signatures and classifier>",
            "[injection.classifier]\nenabled = true\n",
            Path::new("."),
        )
        .context("building the built-in signatures and classifier")?,
    };
    let mut samples = Vec::new();
    for d in &a.dir {
        samples.extend(eval::load_dir(d).map_err(anyhow::Error::msg)?);
    }
    let sigs = &policy.injection;
    let stage = "signatures";
    let report = eval::evaluate(&samples, &|text, source| eval::signatures_outcome(sigs, text, source));
    if a.list_errors {
        for s in &samples {
            let found = sigs.assess(&s.text, s.source());
            let enforced = matches!(
                found.action,
                Some(crate::inspect::injection::HitAction::Block | crate::inspect::injection::HitAction::Strip)
            );
            if s.is_attack() != enforced {
                let ids: Vec<&str> = found.hits.iter().map(|h| h.id).collect();
                println!("{}\t{}\t{:?}\t{}", s.label, s.source, ids, s.text.escape_debug());
            }
        }
    }
    if a.json {
        println!("{}", eval::to_json(stage, &report));
    } else {
        print!("{}", eval::render(stage, &report));
        let dirs: Vec<String> = a.dir.iter().map(|d| d.display().to_string()).collect();
        println!("samples: {} from {}", samples.len(), dirs.join(", "));
    }
    // Stage 2, in the same run, when the policy enables the classifier (always without --policy).
    if sigs.classifier().is_some() {
        let stage = "signatures+classifier";
        let report = eval::evaluate(&samples, &|text, source| eval::combined_outcome(sigs, text, source));
        if a.json {
            println!("{}", eval::to_json(stage, &report));
        } else {
            print!("\n{}", eval::render(stage, &report));
        }
    } else if !a.json {
        println!("\nstage 2 not run: this policy does not enable [injection.classifier]");
    }
    Ok(ExitCode::SUCCESS)
}
