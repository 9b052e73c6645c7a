//! `firebreak serve`: run the gateway.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::{self, Secret};
use crate::control::Admin;
use crate::gateway::{Gateway, PolicySource};
use crate::http::listen_tls;
use crate::metrics::Metrics;
use crate::server;

/// Arguments.
#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// Policy file (default: the embedded demo policy).
    #[arg(long, short)]
    policy: Option<PathBuf>,
    /// Override the AI-traffic listener (e.g. 127.0.0.1:0 for an ephemeral port).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Override the admin listener.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// Override the state file.
    #[arg(long)]
    state_file: Option<PathBuf>,
    /// Override the audit file.
    #[arg(long)]
    audit_file: Option<PathBuf>,
    /// Log JSON lines instead of text.
    #[arg(long)]
    json_logs: bool,
    /// Once listening, write the bound addresses to this file as JSON (for scripts and tests).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Proxy shards (default: one per core). Each shard is a thread with its own single-threaded
    /// runtime and upstream connection pools; a connection is served by one shard for its whole
    /// life, with no hand-offs between threads (see benches/README.md).
    #[arg(long, env = "FIREBREAK_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    worker_threads: Option<u16>,
    /// This replica's id in fleet mode (`[fleet]`): before the policy's `replica_id` and the
    /// default `<hostname>:<proxy port>`. Ignored on a single node.
    #[arg(long, env = "FIREBREAK_REPLICA_ID")]
    replica_id: Option<String>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let (mut policy, source) = match &a.policy {
        Some(p) => (config::load(p)?, PolicySource::File(p.clone())),
        None => {
            (config::load_str(config::DEMO_NAME, config::DEMO_POLICY, std::path::Path::new("."))?, PolicySource::Demo)
        }
    };
    let demo = matches!(source, PolicySource::Demo);
    if let Some(l) = a.listen {
        policy.listen.proxy = l;
    }
    if let Some(l) = a.admin_listen {
        policy.listen.admin = l;
    }
    if let Some(f) = &a.state_file {
        policy.storage.state_file = f.clone();
    }
    if let Some(f) = &a.audit_file {
        policy.storage.audit_file = f.clone();
    }
    let metrics = Arc::new(Metrics::default());
    let _telemetry = crate::telemetry::init(&policy.telemetry, a.json_logs, Some(metrics.clone()));
    server::shards::configure(match a.worker_threads {
        Some(n) => n.into(),
        None => std::thread::available_parallelism().map_or(1, usize::from),
    });
    // The control runtime: start-up, the acceptor, the admin API, signals and reloads. The proxy's
    // connections run on the shards.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    rt.block_on(serve(policy, source, demo, metrics, a.ready_file, a.replica_id))
}

async fn serve(
    policy: config::Policy,
    source: PolicySource,
    demo: bool,
    metrics: Arc<Metrics>,
    ready_file: Option<PathBuf>,
    replica_id: Option<String>,
) -> anyhow::Result<ExitCode> {
    let (mut token, mut generated) = (None, false);
    if let Some(src) = &policy.admin_token_source {
        match src.read() {
            Ok(t) => token = Some(t),
            Err(e) if demo => {
                let bytes: [u8; 16] = rand::random();
                token = Some(Secret::new(format!("demo-{}", hex::encode(bytes))));
                generated = true;
                tracing::debug!(reason = %e, "demo: generated an admin token");
            }
            Err(e) => tracing::warn!("admin API disabled until restart: {e}"),
        }
    }
    let listen = policy.listen.clone();
    let conn_limits = server::conn::ConnLimits::from_policy(&policy.limits);
    let (configured_cap, admin_cap) = (policy.limits.max_connections, policy.limits.admin_max_connections);
    // Descriptors the proxy listener may not take: the admin listener's, plus files, the audit
    // writer, the upstream pools' idle connections and the like.
    let reserve = admin_cap + 128;
    let proxy_cap = server::conn::proxy_connection_cap(configured_cap, server::conn::descriptor_limit(), reserve);
    if proxy_cap < configured_cap {
        tracing::warn!(
            configured = configured_cap,
            effective = proxy_cap,
            descriptors = server::conn::descriptor_limit(),
            "[limits] max_connections lowered to fit the open-file limit (raise it with `ulimit -n`)"
        );
    }
    // TLS on the listeners: loaded (and checked) before anything binds; reloaded with the policy
    // (SIGHUP, `admin reload`) and whenever the files change.
    let tls = |name: &'static str, spec: &Option<config::tls::ListenerTls>| {
        spec.clone()
            .map(|s| listen_tls::ServerTls::new(name, s))
            .transpose()
            .with_context(|| format!("loading the {name} listener's TLS certificate"))
    };
    let (proxy_tls, admin_tls) = (tls("proxy", &listen.proxy_tls)?, tls("admin", &listen.admin_tls)?);
    // Bound before the gateway starts, so a fleet replica knows (and reports) its real addresses,
    // and its default id carries the real port; nothing is served until the gateway is ready.
    let proxy_listener = tokio::net::TcpListener::bind(listen.proxy)
        .await
        .with_context(|| format!("binding the proxy listener {}", listen.proxy))?;
    let admin_listener = tokio::net::TcpListener::bind(listen.admin)
        .await
        .with_context(|| format!("binding the admin listener {}", listen.admin))?;
    let proxy_addr = proxy_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let replica = crate::gateway::Replica { id: replica_id, proxy: Some(proxy_addr), admin: Some(admin_addr) };
    let gw = Gateway::start_replica(policy, source, metrics, &replica).await?;
    for t in proxy_tls.iter().chain(admin_tls.iter()) {
        gw.listener_tls.register(t.clone());
    }
    if let (true, Some(every)) = (proxy_tls.is_some() || admin_tls.is_some(), listen.tls_watch) {
        tokio::spawn(crate::gateway::watch_listener_tls(Arc::downgrade(&gw), every));
    }
    let scheme = |t: &Option<Arc<listen_tls::ServerTls>>| if t.is_some() { "https" } else { "http" };
    let (proxy_scheme, admin_scheme) = (scheme(&proxy_tls), scheme(&admin_tls));
    crate::gateway::alerting::start(&gw);
    let admin = Admin::new(gw.clone(), token.clone());

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Connections get the drain time to finish, then the streams still open end with their terminal
    // error event, which gets a little longer to reach the client before connections are dropped.
    let drain = gw.policy().limits.shutdown_drain;
    let grace = drain + CLOSE_GRACE;
    let shards = server::shards::Shards::start(
        server::handler(gw.clone()),
        conn_limits,
        proxy_tls,
        proxy_cap,
        stop_rx.clone(),
        grace,
    )
    .context("starting the proxy shards")?;
    let proxy_task = tokio::spawn(shards.accept(proxy_listener, stop_rx.clone()));
    let admin_task = tokio::spawn(server::serve_capped(
        admin_listener,
        admin.handler(),
        conn_limits,
        server::conn::ConnLimit::new(admin_cap, "admin"),
        admin_tls,
        server::stopped(stop_rx.clone()),
        grace,
    ));

    tracing::info!(proxy = %proxy_addr, admin = %admin_addr, proxy_scheme, admin_scheme, shards = server::shards::count(), max_connections = proxy_cap, policy = %gw.policy().source.display(), switch_version = gw.state.load().version, "firebreak listening");
    if demo {
        print_demo_banner(proxy_addr, admin_addr, token.as_ref().filter(|_| generated));
    }
    if let Some(f) = &ready_file {
        let doc = serde_json::json!({"proxy": proxy_addr.to_string(), "admin": admin_addr.to_string(), "pid": std::process::id(), "proxy_scheme": proxy_scheme, "admin_scheme": admin_scheme});
        crate::state::write_atomic(f, doc.to_string().as_bytes())
            .with_context(|| format!("writing {}", f.display()))?;
    }

    wait_for_signals(&gw).await;
    tracing::info!(drain_ms = drain.as_millis() as u64, "shutting down: draining connections");
    let _ = stop_tx.send(true);
    let drained = async {
        let _ = tokio::join!(proxy_task, admin_task);
    };
    tokio::pin!(drained);
    tokio::select! {
        () = &mut drained => {}
        () = tokio::time::sleep(drain) => {
            tracing::info!("drain time is up: ending the streams still open with a terminal error event");
            gw.close_streams();
            drained.await;
        }
    }
    // A fleet replica stops counting as live at once (the others' limits and waits adjust).
    crate::gateway::fleet::heartbeat::leave(&gw).await;
    // Alerts still queued get a moment to go out; the rest go to the dead-letter file.
    gw.alerts.close(drain.min(ALERTS_GRACE)).await;
    Ok(ExitCode::SUCCESS)
}

/// After the drain time, how long the streams' terminal error events get to reach their clients
/// before the remaining connections are dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// On shutdown, the longest wait for queued alerts to be delivered.
const ALERTS_GRACE: Duration = Duration::from_secs(3);

#[cfg(unix)]
async fn wait_for_signals(gw: &Arc<Gateway>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut hup), Ok(mut term)) = (signal(SignalKind::hangup()), signal(SignalKind::terminate())) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hup.recv() => {
                // Errors are logged and audited by reload(); the old policy stays.
                let _ = gw.reload("SIGHUP").await;
            }
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signals(_gw: &Arc<Gateway>) {
    let _ = tokio::signal::ctrl_c().await;
}

fn print_demo_banner(proxy: SocketAddr, admin: SocketAddr, generated: Option<&Secret>) {
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "firebreak".into());
    let token_line = match generated {
        Some(t) => format!("export FIREBREAK_ADMIN_TOKEN={}   # generated for this demo run", t.expose()),
        None => "(admin token: from $FIREBREAK_ADMIN_TOKEN)".to_owned(),
    };
    println!(
        r#"
firebreak demo — embedded policy, scripted upstream, no provider key needed.

  AI traffic  http://{proxy}   keys: fb-demo-alice (acme), fb-demo-bob (globex)
  admin API   http://{admin}
  console     http://{admin}/console   (open it in a browser; log in with the admin token below)

Try, in another terminal:
  curl -s http://{proxy}/v1/chat/completions -H 'Authorization: Bearer fb-demo-alice' \
       -H 'content-type: application/json' -d '{{"model":"demo","messages":[{{"role":"user","content":"hi"}}]}}'
  curl -sN http://{proxy}/v1/chat/completions -H 'Authorization: Bearer fb-demo-alice' \
       -H 'content-type: application/json' -d '{{"model":"demo","stream":true,"messages":[{{"role":"user","content":"tell me a story"}}]}}'
  curl -sN http://{proxy}/v1/chat/completions -H 'Authorization: Bearer fb-demo-alice' \
       -H 'content-type: application/json' -d '{{"model":"demo","stream":true,"messages":[{{"role":"user","content":"tell me a secret"}}]}}'
       # ^ the scripted model leaks an AWS key and a password; the client sees [REDACTED:…]

  {token_line}
  {exe} admin --url http://{admin} block-user alice --ttl 10m --reason "demo"   # cuts alice's open streams
  {exe} admin --url http://{admin} level lockdown --reason "demo"               # every request now gets 503
  {exe} admin --url http://{admin} level normal --reason "demo over"
"#
    );
}
