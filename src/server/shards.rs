//! Shards: the proxy's connections spread over N single-threaded runtimes, one per core, the way
//! nginx spreads them over worker processes.
//!
//! A connection lives its whole life on one shard: the server connection, the request pipeline,
//! the stream pump and the pooled upstream connections it uses ([`crate::http::outbound::Clients`] keeps one pool
//! per shard) are tasks of the same thread, so handing work from one to the next is a queue push,
//! not a futex wake-up of another thread. Measured on a 2-core machine, this cut the CPU spent per
//! request by a fifth to a third against one work-stealing runtime (see benches/README.md).
//!
//! One acceptor (on the control runtime) hands each accepted socket to the shard with the fewest
//! open connections, so long-lived streams do not pile up on one core. Everything shared between
//! shards (the policy, the switch snapshot, the audit writer, rate limits) is already safe to use
//! from any thread; only the connections are pinned.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::conn::{ConnLimit, ConnLimits};
use super::Connections;
use crate::http::body;
use crate::http::listen_tls::ServerTls;
pub use crate::http::shard::{configure, count, current};

/// One shard as seen by the acceptor.
struct Lane {
    tx: mpsc::UnboundedSender<std::net::TcpStream>,
    open: Arc<AtomicUsize>,
}

/// The running shards.
pub struct Shards {
    lanes: Vec<Lane>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Open connections over all shards, capped.
    cap: Arc<ConnLimit>,
}

impl Shards {
    /// Starts [`count`] shard threads, each serving the connections it is handed with `handler`
    /// until `stop` turns true, then draining them (bounded by `grace`). At most `max_connections`
    /// are open at once over all shards. With `tls`, every connection is TLS (the handshake runs on
    /// the shard, in the connection's task).
    pub fn start<F, Fut>(
        handler: F,
        limits: ConnLimits,
        tls: Option<Arc<ServerTls>>,
        max_connections: usize,
        stop: watch::Receiver<bool>,
        grace: Duration,
    ) -> std::io::Result<Shards>
    where
        F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = http::Response<body::Body>> + Send + 'static,
    {
        let n = count();
        let cap = ConnLimit::new(max_connections, "proxy");
        let (mut lanes, mut threads) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (tx, rx) = mpsc::unbounded_channel();
            let open = Arc::new(AtomicUsize::new(0));
            let (h, o, s, c, t) = (handler.clone(), open.clone(), stop.clone(), cap.clone(), tls.clone());
            let thread = std::thread::Builder::new().name(format!("firebreak-shard-{i}")).spawn(move || {
                crate::http::shard::enter(i);
                rt.block_on(run(rx, h, (o, c), (limits, t), s, grace));
            })?;
            lanes.push(Lane { tx, open });
            threads.push(thread);
        }
        Ok(Shards { lanes, threads, cap })
    }

    /// Accepts on `listener` until `stop` turns true, handing each connection to the least busy
    /// shard; then waits for every shard to drain. At the connection cap, accepting pauses until
    /// a connection closes (newcomers wait in the kernel's backlog).
    pub async fn accept(self, listener: TcpListener, stop: watch::Receiver<bool>) {
        let stop = super::stopped(stop);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                () = self.cap.room() => {
                    let accepted = tokio::select! {
                        () = &mut stop => break,
                        a = listener.accept() => a,
                    };
                    match accepted.and_then(|(s, _)| s.into_std()) {
                        Ok(stream) => self.hand_over(stream),
                        Err(e) => {
                            self.cap.closed();
                            accept_failed(&e).await;
                        }
                    }
                }
            }
        }
        drop(listener);
        let Shards { lanes, threads, .. } = self;
        drop(lanes);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                if t.join().is_err() {
                    tracing::error!("a proxy shard panicked");
                }
            }
        })
        .await;
    }

    fn hand_over(&self, mut stream: std::net::TcpStream) {
        // Fewest open connections; ties go to the lowest index, which is as good as any. A shard
        // whose loop has ended (shutdown, or a panic) refuses the hand-over and is never picked
        // again; the connection goes to the next one.
        for _ in 0..self.lanes.len() {
            let Some(lane) = self.lanes.iter().min_by_key(|l| l.open.load(Ordering::Relaxed)) else { return };
            lane.open.fetch_add(1, Ordering::Relaxed);
            match lane.tx.send(stream) {
                Ok(()) => return,
                Err(mpsc::error::SendError(s)) => {
                    lane.open.store(DEAD, Ordering::Relaxed);
                    stream = s;
                }
            }
        }
        self.cap.closed();
        tracing::error!("no proxy shard is running; connection dropped");
    }
}

/// The open-connection count of a shard that no longer takes connections.
const DEAD: usize = usize::MAX / 2;

/// Logs a failed `accept` and, for errors that would repeat at once (out of file descriptors or
/// memory), pauses briefly instead of spinning on them.
pub(crate) async fn accept_failed(e: &std::io::Error) {
    tracing::warn!(error = %e, "accept failed");
    let resource = matches!(e.raw_os_error(), Some(libc_errno::EMFILE | libc_errno::ENFILE | libc_errno::ENOMEM));
    if resource {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `errno` values of resource exhaustion on `accept` (the same on Linux, macOS and the BSDs).
mod libc_errno {
    pub const ENOMEM: i32 = 12;
    pub const ENFILE: i32 = 23;
    pub const EMFILE: i32 = 24;
}

/// A shard's loop: serve what the acceptor hands over.
async fn run<F, Fut>(
    mut rx: mpsc::UnboundedReceiver<std::net::TcpStream>,
    handler: F,
    (open, cap): (Arc<AtomicUsize>, Arc<ConnLimit>),
    (limits, tls): (ConnLimits, Option<Arc<ServerTls>>),
    stop: watch::Receiver<bool>,
    grace: Duration,
) where
    F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = http::Response<body::Body>> + Send + 'static,
{
    let conns = Connections::new(limits).with_tls(tls);
    // Keeps a timer due within a second on this shard. Arming a timer that is due before every
    // other one makes tokio wake its driver through an eventfd write (it cannot know the caller is
    // the driver's own thread); hyper arms a header-read timeout for every request, and on an idle
    // shard that was one extra write(2) and epoll wake-up per request (strace, load bench).
    let tick = tokio::spawn(async {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
        }
    });
    let stop = super::stopped(stop);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            next = rx.recv() => {
                let Some(std_stream) = next else { break };
                // Registers the socket with this shard's reactor (it is already non-blocking:
                // `into_std` leaves it so).
                match tokio::net::TcpStream::from_std(std_stream) {
                    Ok(stream) => {
                        let (o, c) = (open.clone(), cap.clone());
                        conns.serve(stream, &handler, move || {
                            o.fetch_sub(1, Ordering::Relaxed);
                            c.closed();
                        });
                    }
                    Err(e) => {
                        open.fetch_sub(1, Ordering::Relaxed);
                        cap.closed();
                        tracing::warn!(error = %e, "could not register an accepted connection");
                    }
                }
            }
        }
    }
    rx.close();
    conns.drain(grace).await;
    tick.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(open: usize) -> (Lane, mpsc::UnboundedReceiver<std::net::TcpStream>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Lane { tx, open: Arc::new(AtomicUsize::new(open)) }, rx)
    }

    #[test]
    fn connections_go_to_the_least_busy_shard_and_never_to_a_stopped_one() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let connect = || std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (stopped, rx0) = lane(0);
        drop(rx0);
        let (busy, mut rx1) = lane(5);
        let (idle, mut rx2) = lane(4);
        let shards = Shards { lanes: vec![stopped, busy, idle], threads: Vec::new(), cap: ConnLimit::new(10, "test") };
        for _ in 0..3 {
            shards.hand_over(connect());
        }
        assert_eq!(shards.lanes[0].open.load(Ordering::Relaxed), DEAD, "the stopped shard is marked");
        // 4 → 5 (idle), then 5 vs 5 goes to the lower index (busy), then idle again.
        assert_eq!(shards.lanes[1].open.load(Ordering::Relaxed), 6);
        assert_eq!(shards.lanes[2].open.load(Ordering::Relaxed), 6);
        assert!(rx1.try_recv().is_ok() && rx1.try_recv().is_err());
        assert!(rx2.try_recv().is_ok() && rx2.try_recv().is_ok() && rx2.try_recv().is_err());
    }
}
