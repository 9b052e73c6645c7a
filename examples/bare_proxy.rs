//! The transport floor of the load bench (`benches/load`, target `floor`): a reverse proxy built
//! from the same pieces as firebreak's request path, doing nothing else. One single-threaded tokio
//! runtime per core (as firebreak's shards), each with its own `SO_REUSEPORT` listener, hyper 1
//! HTTP/1.1 serving, and a per-shard hyper-util pooled client (keep-alive) to the upstream; bodies
//! stream through both ways untouched; the same allocator as the `firebreak` binary (the system's).
//! No policy, parsing, inspection, audit, metrics or logging.
//!
//! What firebreak costs per request above this is its own work; what this costs above nginx is
//! the stack's (hyper, tokio, the allocator), which no change inside firebreak's pipeline removes.
//!
//! `bare_proxy --listen 127.0.0.1:0 --upstream 127.0.0.1:8080 --ready-file F [--threads N]`
//! writes `{"addr":"<listen address>"}` to F once it accepts connections.

use std::convert::Infallible;
use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

struct Args {
    listen: SocketAddr,
    upstream: String,
    ready: Option<String>,
    threads: usize,
}

fn args() -> Result<Args, String> {
    let mut listen = None;
    let mut upstream = None;
    let mut ready = None;
    let mut threads = std::thread::available_parallelism().map_or(1, usize::from);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = Some(value.parse().map_err(|e| format!("--listen {value}: {e}"))?),
            "--upstream" => upstream = Some(value),
            "--ready-file" => ready = Some(value),
            "--threads" => threads = value.parse().map_err(|e| format!("--threads {value}: {e}"))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(Args {
        listen: listen.ok_or("--listen is required")?,
        upstream: upstream.ok_or("--upstream is required")?,
        ready,
        threads: threads.max(1),
    })
}

fn listener(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// `n` listeners on one port (the first fixes it; the others share it with `SO_REUSEPORT`), made on a
/// setup runtime and handed over as std listeners, each to be registered by its shard's runtime.
fn listeners(addr: SocketAddr, n: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let setup = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let _guard = setup.enter();
    let first = listener(addr)?.into_std()?;
    let addr = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..n {
        all.push(listener(addr)?.into_std()?);
    }
    Ok(all)
}

async fn shard(std_listener: std::net::TcpListener, upstream: &'static str) {
    let listener = match tokio::net::TcpListener::from_std(std_listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bare_proxy: {e}");
            return;
        }
    };
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new()).build(connector);
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let client = client.clone();
                async move {
                    let (mut parts, body) = req.into_parts();
                    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                    parts.uri = match format!("http://{upstream}{path}").parse() {
                        Ok(u) => u,
                        Err(_) => return Ok::<_, Infallible>(status(400)),
                    };
                    parts.headers.remove(hyper::header::HOST);
                    Ok(match client.request(Request::from_parts(parts, body)).await {
                        Ok(resp) => resp.map(Either::Upstream),
                        Err(_) => status(502),
                    })
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// The response body: the upstream's, streamed, or empty.
enum Either {
    Upstream(Incoming),
    Empty,
}

impl hyper::body::Body for Either {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        match self.get_mut() {
            Either::Upstream(b) => std::pin::Pin::new(b).poll_frame(cx),
            Either::Empty => std::task::Poll::Ready(None),
        }
    }
}

fn status(code: u16) -> Response<Either> {
    let mut r = Response::new(Either::Empty);
    *r.status_mut() = hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    r
}

fn main() {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bare_proxy: {e}");
            std::process::exit(2);
        }
    };
    let upstream: &'static str = Box::leak(args.upstream.into_boxed_str());
    let listeners = match listeners(args.listen, args.threads) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bare_proxy: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    let addr = listeners[0].local_addr().unwrap_or(args.listen);
    let threads: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            std::thread::spawn(move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(shard(l, upstream)),
                Err(e) => eprintln!("bare_proxy: {e}"),
            })
        })
        .collect();
    if let Some(f) = args.ready {
        if let Err(e) = std::fs::write(&f, format!("{{\"addr\":\"{addr}\"}}\n")) {
            eprintln!("bare_proxy: {f}: {e}");
            std::process::exit(1);
        }
    }
    for t in threads {
        let _ = t.join();
    }
}
