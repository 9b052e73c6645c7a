//! `firebreak admin alerts [--limit N] [--json]` and `firebreak admin alerts test SINK`.

use serde_json::{json, Value};

/// Arguments of `admin alerts`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many alerts (and of each kind of anomaly) to list.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    limit: u32,
    /// Print the API's JSON instead.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Send a test alert through one sink and print what its receiver answered (exit 1 unless 2xx).
    Test {
        /// Sink name from [[alerts.sinks]].
        sink: String,
    },
}

impl Args {
    /// The admin API call: (method, path, body).
    pub fn request(&self, actor: &str) -> (&'static str, String, Option<Value>) {
        match &self.cmd {
            Some(Cmd::Test { sink }) => {
                ("POST", format!("/admin/v1/alerts/test/{sink}"), Some(json!({"actor": actor})))
            }
            None => ("GET", format!("/admin/v1/alerts?limit={}", self.limit), None),
        }
    }

    /// Whether to print text rather than the API's JSON.
    pub fn wants_text(&self) -> bool {
        !self.json
    }

    /// The answer for people.
    pub fn text(&self, v: &Value) -> String {
        if let Some(e) = v.get("error").filter(|e| e.is_object()) {
            return format!("error: {}: {}", s(&e["code"]), s(&e["message"]));
        }
        match &self.cmd {
            Some(Cmd::Test { sink }) => test_text(sink, v),
            None => list_text(v),
        }
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn test_text(sink: &str, v: &Value) -> String {
    let delivered = v["delivered"].as_bool().unwrap_or(false);
    let status = v["status"].as_u64().map_or("no answer".to_owned(), |c| format!("HTTP {c}"));
    let mut o = format!(
        "sink {sink}: {} ({status}{}) alert {}",
        if delivered { "delivered" } else { "NOT delivered" },
        v["error"].as_str().map(|e| format!(", {e}")).unwrap_or_default(),
        s(&v["alert"])
    );
    if let Some(a) = v["answer"].as_str().filter(|a| !a.is_empty()) {
        o.push_str(&format!("\n  receiver said: {a}"));
    }
    o
}

fn list_text(v: &Value) -> String {
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let mut o = String::new();
    let alerts = list("alerts");
    o.push_str(&format!("ALERTS ({}, newest first)\n", alerts.len()));
    for a in &alerts {
        let deliveries: Vec<String> = a["deliveries"]
            .as_object()
            .map(|m| m.iter().map(|(k, x)| format!("{k}={}", s(x))).collect())
            .unwrap_or_default();
        o.push_str(&format!(
            "  {}  {}  {:<22} {}{}\n",
            s(&a["time"]),
            s(&a["severity"]),
            s(&a["event"]),
            s(&a["summary"]),
            if deliveries.is_empty() { String::new() } else { format!("  [{}]", deliveries.join(" ")) }
        ));
    }
    let open = list("open_incidents");
    o.push_str(&format!("OPEN INCIDENTS ({})\n", open.len()));
    for i in &open {
        o.push_str(&format!(
            "  {}  {}  {}  user {}  firings {}  since {}\n",
            s(&i["id"]),
            s(&i["severity"]),
            s(&i["trigger"]),
            s(&i["user"]),
            s(&i["firings"]),
            s(&i["first_seen"])
        ));
    }
    let near = list("near_firing");
    o.push_str(&format!("TRIGGERS CLOSE TO FIRING ({})\n", near.len()));
    for n in &near {
        o.push_str(&format!(
            "  {}  {}  {}/{} in {} (fires above {})\n",
            s(&n["trigger"]),
            s(&n["principal"]),
            s(&n["count"]),
            s(&n["threshold"]),
            s(&n["window"]),
            s(&n["fires_above"])
        ));
    }
    let spikes = list("spikes");
    o.push_str(&format!("RULE SPIKES ({})\n", spikes.len()));
    for sp in &spikes {
        o.push_str(&format!(
            "  {}  {}  {} in {} (previous window {})\n",
            s(&sp["time"]),
            s(&sp["rule"]),
            s(&sp["count"]),
            s(&sp["window"]),
            s(&sp["previous"])
        ));
    }
    let sinks = list("sinks");
    o.push_str(&format!("SINKS ({})\n", sinks.len()));
    for k in &sinks {
        o.push_str(&format!(
            "  {} ({})  sent {}  failed {}  retried {}  dropped {}  queued {}\n",
            s(&k["name"]),
            s(&k["type"]),
            s(&k["sent"]),
            s(&k["failed"]),
            s(&k["retried"]),
            s(&k["dropped"]),
            s(&k["queue_depth"])
        ));
    }
    o.trim_end().to_owned()
}
