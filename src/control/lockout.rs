//! Failed admin authentications, counted per peer address, and the lockout they lead to.
//!
//! Admin tokens are long and random, but the admin listener is where an attacker inside the
//! network would guess them, and every refused attempt is evidence. Each wrong token (a bearer
//! token or a console login) counts against its peer address for `[admin] auth_failure_window`,
//! starting at the address's first. At `[admin] max_auth_failures` the address is locked out until
//! that window ends: its token attempts are answered 429 without being checked. Refusals that are no
//! guess (no credential, a header that is not `Bearer`, a certificate that is no admin) are counted
//! in the metrics and audited, but never lock anyone out. A verified admin client certificate still
//! gets in (sent without a token): it cannot be guessed, and it keeps operators in when a flood
//! comes from a shared address.
//!
//! The caller audits refusals up to the lockout and the lockout itself once ([`Counted`]), within a
//! budget shared by all sources ([`AuthFailures::may_audit`]); past it, and during a lockout,
//! refusals are only counted, so a flood cannot fill the trail. IPv6 addresses count by their /64
//! (what one host usually holds), IPv4 by the address; the direct TCP peer is used (forwarding
//! headers are never believed on the admin listener).

use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::time::Instant;

use crate::config::admins::Lockout;
use crate::http::peer::Peer;

/// Addresses tracked at once; beyond it the least recently seen are forgotten.
const MAX_SOURCES: u64 = 100_000;

/// Why an admin authentication was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No `Authorization` header and no client certificate.
    NoCredential,
    /// An `Authorization` header that is not `Bearer <token>`.
    Malformed,
    /// A bearer token (or a console login token) that is no admin's.
    WrongToken,
    /// A verified client certificate that no `[[admins]]` entry names.
    UnknownCertificate,
}

impl Failure {
    /// The name in the audit record and the metric's `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::NoCredential => "no_credential",
            Failure::Malformed => "malformed",
            Failure::WrongToken => "wrong_token",
            Failure::UnknownCertificate => "unknown_certificate",
        }
    }

    const ALL: [Failure; 4] =
        [Failure::NoCredential, Failure::Malformed, Failure::WrongToken, Failure::UnknownCertificate];
}

/// Where failures are counted: the peer's IPv4 address, or its IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    /// The source of a request on a connection from `peer` (`None`: no address known).
    pub fn of(peer: Option<&Peer>) -> Source {
        let ip = peer.and_then(|p| p.addr).map(|a| a.ip()).unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        Source(match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            v4 => v4,
        })
    }

    /// The address as recorded (`2001:db8::/64` for an IPv6 source).
    pub fn to_string_for_audit(self) -> String {
        match self.0 {
            IpAddr::V6(v6) => format!("{v6}/64"),
            v4 => v4.to_string(),
        }
    }
}

/// What a refusal means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Audit it (if the audit budget allows): a refusal that is no guess (`n` = 0), or the `n`th
    /// wrong token of its source in the window, below the limit.
    Failure { n: u32 },
    /// Audit it, and the lockout it starts, which lasts `for_` more.
    LockedOut { n: u32, for_: Duration },
    /// A wrong token from a source already locked out: count it in the metrics only.
    Quiet,
}

#[derive(Debug)]
struct Window {
    since: Instant,
    /// Wrong tokens in the window.
    guesses: u32,
    /// Whether `guesses` reached the limit in force when the last one came (the lockout was
    /// audited): lowering the limit by a reload locks nobody out until their next guess.
    locked: bool,
}

/// Audit records of refused authentications, all sources together: a burst, then one a second.
/// Past it they are only counted, so many addresses (an IPv6 /48 holds 65,536 /64s) cannot fill the
/// disk the trail is on.
const AUDIT_BURST: f64 = 100.0;
const AUDIT_PER_SEC: f64 = 1.0;

#[derive(Debug)]
struct Budget {
    tokens: f64,
    at: Instant,
}

/// The failure counts of a running admin listener.
#[derive(Debug)]
pub struct AuthFailures {
    sources: moka::sync::Cache<Source, Arc<Mutex<Window>>>,
    /// Failures by [`Failure`] (in `Failure::ALL` order), then token attempts refused while locked out.
    counts: [AtomicU64; 5],
    lockouts: AtomicU64,
    budget: Mutex<Budget>,
    unaudited: AtomicU64,
}

impl Default for AuthFailures {
    fn default() -> AuthFailures {
        AuthFailures {
            // No window outlives a day (the policy's bound), and an idle source is dropped then.
            sources: moka::sync::Cache::builder()
                .max_capacity(MAX_SOURCES)
                .time_to_idle(Duration::from_secs(24 * 3600))
                .build(),
            counts: Default::default(),
            lockouts: AtomicU64::new(0),
            budget: Mutex::new(Budget { tokens: AUDIT_BURST, at: Instant::now() }),
            unaudited: AtomicU64::new(0),
        }
    }
}

impl AuthFailures {
    /// How much longer `source` is locked out under `limits`, if it is; counts the refused attempt.
    pub fn locked_out(&self, source: Source, limits: &Lockout) -> Option<Duration> {
        self.locked_out_at(source, limits, Instant::now())
    }

    fn locked_out_at(&self, source: Source, limits: &Lockout, now: Instant) -> Option<Duration> {
        let window = self.sources.get(&source)?;
        let w = window.lock().unwrap_or_else(|p| p.into_inner());
        let left = limits.window.checked_sub(now.saturating_duration_since(w.since))?;
        if !w.locked || w.guesses < limits.max_failures || left.is_zero() {
            return None;
        }
        self.counts[4].fetch_add(1, Ordering::Relaxed);
        Some(left)
    }

    /// Counts a refused authentication of `source`. Only a wrong token is a guess and counts
    /// towards the lockout: a request with no credential, a header that is not `Bearer`, or a
    /// certificate that is no admin cannot succeed by repetition, and counting them would let a
    /// health check or a scraper without a token lock the operators behind the same address out.
    pub fn failed(&self, source: Source, why: Failure, limits: &Lockout) -> Counted {
        self.failed_at(source, why, limits, Instant::now())
    }

    fn failed_at(&self, source: Source, why: Failure, limits: &Lockout, now: Instant) -> Counted {
        let i = Failure::ALL.iter().position(|f| *f == why).unwrap_or(0);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        if why != Failure::WrongToken {
            return Counted::Failure { n: 0 };
        }
        let fresh = || Window { since: now, guesses: 0, locked: false };
        let window = self.sources.get_with(source, || Arc::new(Mutex::new(fresh())));
        let mut w = window.lock().unwrap_or_else(|p| p.into_inner());
        if now.saturating_duration_since(w.since) >= limits.window {
            *w = fresh();
        }
        if w.locked && w.guesses >= limits.max_failures {
            return Counted::Quiet;
        }
        w.guesses = w.guesses.saturating_add(1);
        if w.guesses < limits.max_failures {
            return Counted::Failure { n: w.guesses };
        }
        w.locked = true;
        self.lockouts.fetch_add(1, Ordering::Relaxed);
        Counted::LockedOut { n: w.guesses, for_: limits.window.saturating_sub(now.saturating_duration_since(w.since)) }
    }

    /// Whether the shared audit budget allows one more record now (counted when it does not).
    pub fn may_audit(&self) -> bool {
        self.may_audit_at(Instant::now())
    }

    fn may_audit_at(&self, now: Instant) -> bool {
        let mut b = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * AUDIT_PER_SEC;
        b.tokens = (b.tokens + refill).min(AUDIT_BURST);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            self.unaudited.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Prometheus text: `firebreak_admin_auth_failures_total{reason}` and
    /// `firebreak_admin_auth_lockouts_total`.
    pub fn render_metrics(&self) -> String {
        let mut out = String::from(
            "# HELP firebreak_admin_auth_failures_total Refused admin authentications, by reason (locked_out: refused unchecked during a lockout).\n# TYPE firebreak_admin_auth_failures_total counter\n",
        );
        let reasons = Failure::ALL.iter().map(|f| f.as_str()).chain(["locked_out"]);
        for (reason, n) in reasons.zip(&self.counts) {
            out.push_str(&format!(
                "firebreak_admin_auth_failures_total{{reason=\"{reason}\"}} {}\n",
                n.load(Ordering::Relaxed)
            ));
        }
        out.push_str(&format!(
            "# HELP firebreak_admin_auth_lockouts_total Peer addresses locked out after too many wrong admin tokens.\n# TYPE firebreak_admin_auth_lockouts_total counter\nfirebreak_admin_auth_lockouts_total {}\n",
            self.lockouts.load(Ordering::Relaxed)
        ));
        out.push_str(&format!(
            "# HELP firebreak_admin_auth_unaudited_total Refused admin authentications not audited: past the shared audit budget.\n# TYPE firebreak_admin_auth_unaudited_total counter\nfirebreak_admin_auth_unaudited_total {}\n",
            self.unaudited.load(Ordering::Relaxed)
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn from(addr: &str) -> Source {
        let a: SocketAddr = addr.parse().expect("address");
        Source::of(Some(&Peer::tcp(Some(a))))
    }

    #[test]
    fn wrong_tokens_lock_a_source_out_until_its_window_ends() {
        let limits = Lockout { max_failures: 3, window: Duration::from_secs(60) };
        let f = AuthFailures::default();
        let a = from("10.0.0.1:4000");
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(f.failed_at(a, Failure::WrongToken, &limits, at(0)), Counted::Failure { n: 1 });
        assert_eq!(f.locked_out_at(a, &limits, at(1)), None, "below the limit");
        // Refusals that are no guess never count towards the lockout.
        for why in [Failure::NoCredential, Failure::Malformed, Failure::UnknownCertificate] {
            for _ in 0..5 {
                assert_eq!(f.failed_at(a, why, &limits, at(1)), Counted::Failure { n: 0 });
            }
        }
        assert_eq!(f.locked_out_at(a, &limits, at(1)), None, "15 refusals that were no guess");
        assert_eq!(f.failed_at(a, Failure::WrongToken, &limits, at(2)), Counted::Failure { n: 2 });
        assert_eq!(
            f.failed_at(a, Failure::WrongToken, &limits, at(10)),
            Counted::LockedOut { n: 3, for_: Duration::from_secs(50) },
            "the window counts from the first wrong token"
        );
        assert_eq!(f.failed_at(a, Failure::WrongToken, &limits, at(11)), Counted::Quiet, "audited once");
        assert_eq!(f.locked_out_at(a, &limits, at(10)), Some(Duration::from_secs(50)));
        assert_eq!(f.locked_out_at(from("10.0.0.1:5000"), &limits, at(10)), Some(Duration::from_secs(50)), "any port");
        assert_eq!(f.locked_out_at(from("10.0.0.2:4000"), &limits, at(10)), None, "another address");

        assert_eq!(f.locked_out_at(a, &limits, at(60)), None, "the window ended");
        assert_eq!(f.failed_at(a, Failure::WrongToken, &limits, at(61)), Counted::Failure { n: 1 }, "a new window");

        let text = f.render_metrics();
        assert!(text.contains("firebreak_admin_auth_failures_total{reason=\"wrong_token\"} 5\n"), "{text}");
        assert!(text.contains("firebreak_admin_auth_failures_total{reason=\"no_credential\"} 5\n"), "{text}");
        assert!(text.contains("firebreak_admin_auth_failures_total{reason=\"locked_out\"} 2\n"), "{text}");
        assert!(text.contains("firebreak_admin_auth_lockouts_total 1\n"), "{text}");
    }

    #[test]
    fn a_reload_lifts_a_lockout_by_raising_the_limit_and_lowering_it_locks_at_the_next_guess() {
        let tight = Lockout { max_failures: 1, window: Duration::from_secs(60) };
        let f = AuthFailures::default();
        let a = from("10.0.0.1:4000");
        let t0 = Instant::now();
        assert!(matches!(f.failed_at(a, Failure::WrongToken, &tight, t0), Counted::LockedOut { n: 1, .. }));
        assert!(f.locked_out_at(a, &tight, t0).is_some());
        let loose = Lockout { max_failures: 3, ..tight };
        assert_eq!(f.locked_out_at(a, &loose, t0), None, "a higher limit lifts it");
        assert_eq!(f.failed_at(a, Failure::WrongToken, &loose, t0), Counted::Failure { n: 2 });
        assert!(
            matches!(f.failed_at(a, Failure::WrongToken, &loose, t0), Counted::LockedOut { n: 3, .. }),
            "audited again"
        );
        let short = Lockout { window: Duration::from_secs(1), ..tight };
        assert_eq!(f.locked_out_at(a, &short, t0 + Duration::from_secs(2)), None, "a shorter window has ended");

        // Lowering the limit locks nobody out retroactively; the next guess does, audited.
        let b = from("10.0.0.9:1");
        assert_eq!(f.failed_at(b, Failure::WrongToken, &loose, t0), Counted::Failure { n: 1 });
        assert_eq!(f.failed_at(b, Failure::WrongToken, &loose, t0), Counted::Failure { n: 2 });
        assert_eq!(f.locked_out_at(b, &tight, t0), None);
        assert!(matches!(f.failed_at(b, Failure::WrongToken, &tight, t0), Counted::LockedOut { n: 3, .. }));
        assert!(f.locked_out_at(b, &tight, t0).is_some());
    }

    #[test]
    fn the_audit_budget_is_a_burst_then_one_a_second() {
        let f = AuthFailures::default();
        let t0 = Instant::now();
        let allowed = (0..150).filter(|_| f.may_audit_at(t0)).count();
        assert_eq!(allowed, AUDIT_BURST as usize);
        assert!(!f.may_audit_at(t0 + Duration::from_millis(500)));
        assert!(f.may_audit_at(t0 + Duration::from_millis(1600)), "refilled");
        assert!(f.render_metrics().contains("firebreak_admin_auth_unaudited_total 51\n"));
    }

    #[test]
    fn ipv6_sources_are_their_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(from("[2001:db8:1:2:aaaa::1]:1"), from("[2001:db8:1:2:bbbb::9]:2"));
        assert_ne!(from("[2001:db8:1:2::1]:1"), from("[2001:db8:1:3::1]:1"));
        assert_eq!(from("[::ffff:10.0.0.1]:1"), from("10.0.0.1:1"));
        assert_eq!(from("[2001:db8:1:2:aaaa::1]:1").to_string_for_audit(), "2001:db8:1:2::/64");
        assert_eq!(from("10.0.0.1:1").to_string_for_audit(), "10.0.0.1");
        assert_eq!(Source::of(None).to_string_for_audit(), "0.0.0.0");
    }
}
