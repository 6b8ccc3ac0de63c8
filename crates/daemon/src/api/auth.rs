//! `x-api-key` authentication. Keys are compared as SHA-256 digests in constant time, so
//! neither the content nor the length of a configured key leaks through timing; keys are
//! never logged.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::{ApiError, ErrorCode};
use super::SharedState;
use facegate_core::config::PublicHealth;

/// The accepted keys (digests only), or none with authentication switched off.
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
    disabled: bool,
}

impl ApiKeys {
    pub fn new(keys: &[String]) -> Self {
        Self {
            digests: keys.iter().map(|k| digest(k)).collect(),
            disabled: false,
        }
    }

    /// Every request is let in (`--insecure-no-auth`).
    pub fn disabled() -> Self {
        Self {
            digests: Vec::new(),
            disabled: true,
        }
    }

    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether `presented` is one of the keys. Every key is compared, match or not.
    pub fn accepts(&self, presented: &str) -> bool {
        let d = digest(presented);
        self.digests
            .iter()
            .fold(subtle::Choice::from(0), |acc, k| acc | k.ct_eq(&d))
            .into()
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Wrong keys per client address and in all: past `per_address` within a minute, that address
/// gets `429 ERR_RATE_LIMITED` on every protected endpoint until the minute is over; past
/// `global`, every client without a valid key does, so guessing from many addresses is no
/// faster than from one. A valid key is checked first and never throttled.
///
/// Addresses are counted in a fixed table of [`SLOTS`] entries indexed by a keyed hash of the
/// address: memory and time per request are O(1) however many addresses knock. Two addresses
/// sharing a slot share a budget, which only ever affects clients without a valid key.
pub struct AuthThrottle {
    per_address: u32,
    global: u32,
    window: Duration,
    hasher: std::collections::hash_map::RandomState,
    state: Mutex<ThrottleState>,
}

/// Slots of the per-address table.
pub const SLOTS: usize = 4096;

struct ThrottleState {
    /// Start of the slot's window and the wrong keys counted in it.
    slots: Box<[Option<(Instant, u32)>]>,
    global: Option<(Instant, u32)>,
}

impl AuthThrottle {
    /// `per_address` and `global` wrong keys per minute; 0 switches that limit off.
    pub fn new(per_address: u32, global: u32) -> Self {
        Self {
            per_address,
            global,
            window: Duration::from_secs(60),
            hasher: std::collections::hash_map::RandomState::new(),
            state: Mutex::new(ThrottleState {
                slots: vec![None; SLOTS].into_boxed_slice(),
                global: None,
            }),
        }
    }

    fn slot(&self, ip: IpAddr) -> usize {
        use std::hash::BuildHasher;
        (self.hasher.hash_one(ip) % SLOTS as u64) as usize
    }

    /// Seconds to wait if a window is over its limit now.
    fn over(&self, entry: Option<(Instant, u32)>, limit: u32, now: Instant) -> Option<u32> {
        let (start, count) = entry?;
        let elapsed = now.saturating_duration_since(start);
        (limit > 0 && count >= limit && elapsed < self.window)
            .then(|| (self.window - elapsed).as_secs().max(1) as u32)
    }

    /// Seconds `ip` must wait, if it (or everyone) is over the limit now.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<u32> {
        let state = self.state.lock().unwrap();
        let own = self.over(state.slots[self.slot(ip)], self.per_address, now);
        let all = self.over(state.global, self.global, now);
        own.max(all)
    }

    pub fn record_failure(&self, ip: IpAddr, now: Instant) {
        if self.per_address == 0 && self.global == 0 {
            return;
        }
        let window = self.window;
        let count = |entry: &mut Option<(Instant, u32)>| match entry {
            Some((start, n)) if now.saturating_duration_since(*start) < window => {
                *n = n.saturating_add(1)
            }
            _ => *entry = Some((now, 1)),
        };
        let slot = self.slot(ip);
        let mut state = self.state.lock().unwrap();
        count(&mut state.slots[slot]);
        count(&mut state.global);
    }
}

/// Whether the request carried a valid key (or keys are switched off); set by [`require_key`]
/// for the handlers that show more to authenticated clients (`/health`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authenticated(pub bool);

/// Set on the answers `require_key` refuses a request with, so that metrics count them under
/// one fixed label set whatever method and path the client invented.
#[derive(Debug, Clone, Copy)]
pub struct AuthRejected;

/// Reads (GET, HEAD) of the routes configured public.
fn is_public(state: &SharedState, method: &axum::http::Method, path: &str) -> bool {
    if method != axum::http::Method::GET && method != axum::http::Method::HEAD {
        return false;
    }
    let s = &state.config.server;
    match path {
        "/health" => s.public_health != PublicHealth::Off,
        "/metrics" => s.public_metrics,
        "/openapi.json" => s.public_docs,
        p if p == "/docs" || p.starts_with("/docs/") => s.public_docs,
        // The console's page and code: no data, the calls it makes are keyed.
        "/ui" | "/ui/" | "/ui/app.js" | "/ui/app.css" => true,
        _ => false,
    }
}

pub async fn require_key(
    State(state): State<SharedState>,
    mut req: Request,
    next: Next,
) -> Response {
    let presented = req.headers().get("x-api-key");
    let valid = state.keys.is_disabled()
        || presented
            .and_then(|v| v.to_str().ok())
            .is_some_and(|k| state.keys.accepts(k));
    if valid {
        req.extensions_mut().insert(Authenticated(true));
        return next.run(req).await;
    }
    let public = is_public(&state, req.method(), req.uri().path());
    let reject = |e: ApiError| {
        let mut response = e.into_response();
        response.extensions_mut().insert(AuthRejected);
        response
    };
    if public && presented.is_none() {
        req.extensions_mut().insert(Authenticated(false));
        return next.run(req).await;
    }
    // A wrong key, or no key on a protected route. A wrong key on a public route is counted
    // and throttled too: its answer (minimal or full /health) would tell a guess apart.
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let now = Instant::now();
    if let Some(wait) = client.and_then(|ip| state.throttle.blocked(ip, now)) {
        let mut e = ApiError::new(ErrorCode::ErrRateLimited);
        e.retry_after_s = Some(wait);
        return reject(e);
    }
    if presented.is_none() {
        return reject(ApiError::new(ErrorCode::ErrApiKeyNotPresent));
    }
    state.metrics.auth_failures.inc();
    if let Some(ip) = client {
        state.throttle.record_failure(ip, now);
    }
    tracing::warn!(client = ?client, "request with a wrong API key");
    if public {
        req.extensions_mut().insert(Authenticated(false));
        return next.run(req).await;
    }
    reject(ApiError::new(ErrorCode::ErrApiKeyNotValid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_keys_are_accepted() {
        let keys = ApiKeys::new(&["alpha".into(), "beta-key".into()]);
        assert!(keys.accepts("alpha"));
        assert!(keys.accepts("beta-key"));
        assert!(!keys.accepts("alph"));
        assert!(!keys.accepts(""));
        assert!(!ApiKeys::new(&[]).accepts(""));
    }

    #[test]
    fn an_address_is_throttled_after_too_many_wrong_keys_for_the_rest_of_the_minute() {
        let t = AuthThrottle::new(3, 0);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..2 {
            t.record_failure(ip, t0);
        }
        assert_eq!(t.blocked(ip, t0), None);
        t.record_failure(ip, t0);
        assert_eq!(t.blocked(ip, t0 + Duration::from_secs(10)), Some(50));
        let others = (1..=50u8)
            .map(|i| IpAddr::from([198, 51, 100, i]))
            .filter(|o| t.blocked(*o, t0).is_none())
            .count();
        assert!(
            others >= 49,
            "other addresses are not affected ({others} of 50 free)"
        );
        assert_eq!(
            t.blocked(ip, t0 + Duration::from_secs(61)),
            None,
            "the window ends"
        );
        assert_eq!(AuthThrottle::new(0, 0).blocked(ip, t0), None);
    }

    #[test]
    fn many_addresses_together_are_throttled_by_the_global_limit() {
        let t = AuthThrottle::new(20, 10);
        let t0 = Instant::now();
        for i in 0..10u8 {
            t.record_failure(IpAddr::from([203, 0, 113, i]), t0);
        }
        // No address is over its own limit, yet a fresh one is refused.
        assert!(t.blocked(IpAddr::from([203, 0, 113, 200]), t0).is_some());
        assert_eq!(
            t.blocked(
                IpAddr::from([203, 0, 113, 200]),
                t0 + Duration::from_secs(60)
            ),
            None
        );
    }

    #[test]
    fn the_throttle_table_stays_bounded_under_an_address_scan() {
        let t = AuthThrottle::new(5, 0);
        let t0 = Instant::now();
        for i in 0..100_000u32 {
            t.record_failure(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert_eq!(t.state.lock().unwrap().slots.len(), SLOTS);
    }

    #[test]
    fn key_files_skip_comments_and_blank_lines() {
        let keys = facegate_core::config::parse_key_file("# door keys\n\n  k1  \nk2 # installer\n");
        assert_eq!(keys, vec!["k1", "k2"]);
    }
}
