//! `firebreak check FILE…`

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Policy files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Print problems as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let mut all = Vec::new();
    let mut warnings = Vec::new();
    for f in &a.files {
        match crate::config::load(f) {
            Ok(p) => {
                warnings.extend(p.incidents.warnings.iter().map(|w| format!("{}: warning: {w}", f.display())));
                for (key, tls) in [("proxy_tls", &p.listen.proxy_tls), ("admin_tls", &p.listen.admin_tls)] {
                    let w = tls.as_ref().and_then(|t| crate::http::listen_tls::expiry_warning(&t.cert_file));
                    warnings.extend(w.map(|w| format!("{}: warning: [listen] {key}: {w}", f.display())));
                }
                if !a.json {
                    println!(
                        "{}: ok ({} upstream(s), {} key(s), {} role(s))",
                        f.display(),
                        p.upstreams.len(),
                        p.key_ids.len(),
                        p.roles.len()
                    );
                    if p.audit.key.is_none() {
                        println!(
                            "{}: warning: [audit] has no key_env or key_file: the gateway generates {} beside the trail, so whoever can write the trail can likely read the key too; set one for production",
                            f.display(),
                            crate::audit::default_key_path(&p.storage.audit_file).display()
                        );
                    }
                }
            }
            Err(e) => all.extend(e.0),
        }
    }
    if a.json {
        println!("{}", serde_json::json!({ "problems": all, "warnings": warnings }));
    } else {
        for w in &warnings {
            println!("{w}");
        }
        for p in &all {
            println!("{p}");
        }
        if !all.is_empty() {
            println!("{} problem(s) found", all.len());
        }
    }
    Ok(if all.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
