//! `x-api-key` authentication. Keys are compared as SHA-256 digests in constant time, so
//! neither the content nor the length of a configured key leaks through timing; keys are
//! never logged.

use std::collections::HashMap;
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

/// Keys from a key file: one per line, `#` comments and blank lines ignored.
pub fn parse_key_file(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Wrong keys per client address: past `limit` within a minute, that address gets
/// `429 ERR_RATE_LIMITED` on every protected endpoint until the minute is over, so keys cannot
/// be guessed at line rate.
pub struct AuthThrottle {
    limit: u32,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl AuthThrottle {
    /// `limit` wrong keys per minute and address; 0 switches the throttle off.
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            window: Duration::from_secs(60),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds `ip` must wait, if it is over the limit now.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<u32> {
        if self.limit == 0 {
            return None;
        }
        let failures = self.failures.lock().unwrap();
        let &(start, count) = failures.get(&ip)?;
        let elapsed = now.saturating_duration_since(start);
        (count >= self.limit && elapsed < self.window)
            .then(|| (self.window - elapsed).as_secs().max(1) as u32)
    }

    pub fn record_failure(&self, ip: IpAddr, now: Instant) {
        if self.limit == 0 {
            return;
        }
        let mut failures = self.failures.lock().unwrap();
        if failures.len() > 10_000 {
            // Forget finished windows so that a scan from many addresses cannot grow the map.
            let window = self.window;
            failures.retain(|_, (start, _)| now.saturating_duration_since(*start) < window);
        }
        let entry = failures.entry(ip).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}

fn is_public(state: &SharedState, path: &str) -> bool {
    let s = &state.config.server;
    match path {
        "/health" => s.public_health,
        "/metrics" => s.public_metrics,
        "/openapi.json" => s.public_docs,
        p if p == "/docs" || p.starts_with("/docs/") => s.public_docs,
        _ => false,
    }
}

pub async fn require_key(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    if state.keys.is_disabled() || is_public(&state, req.uri().path()) {
        return next.run(req).await;
    }
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let now = Instant::now();
    if let Some(wait) = client.and_then(|ip| state.throttle.blocked(ip, now)) {
        let mut e = ApiError::new(ErrorCode::ErrRateLimited);
        e.retry_after_s = Some(wait);
        return e.into_response();
    }
    match req.headers().get("x-api-key") {
        None => ApiError::new(ErrorCode::ErrApiKeyNotPresent).into_response(),
        Some(v) if v.to_str().is_ok_and(|k| state.keys.accepts(k)) => next.run(req).await,
        Some(_) => {
            state.metrics.auth_failures.inc();
            if let Some(ip) = client {
                state.throttle.record_failure(ip, now);
            }
            tracing::warn!(client = ?client, "request with a wrong API key");
            ApiError::new(ErrorCode::ErrApiKeyNotValid).into_response()
        }
    }
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
        let t = AuthThrottle::new(3);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..2 {
            t.record_failure(ip, t0);
        }
        assert_eq!(t.blocked(ip, t0), None);
        t.record_failure(ip, t0);
        assert_eq!(t.blocked(ip, t0 + Duration::from_secs(10)), Some(50));
        assert_eq!(
            t.blocked(other, t0),
            None,
            "other addresses are not affected"
        );
        assert_eq!(
            t.blocked(ip, t0 + Duration::from_secs(61)),
            None,
            "the window ends"
        );
        assert_eq!(AuthThrottle::new(0).blocked(ip, t0), None);
    }

    #[test]
    fn key_files_skip_comments_and_blank_lines() {
        let keys = parse_key_file("# door keys\n\n  k1  \nk2 # installer\n");
        assert_eq!(keys, vec!["k1", "k2"]);
    }
}
