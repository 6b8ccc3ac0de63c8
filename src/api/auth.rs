//! `x-api-key` authentication. Keys are compared as SHA-256 digests in constant time, so
//! neither the content nor the length of a configured key leaks through timing; keys are
//! never logged.

use axum::extract::{Request, State};
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
    match req.headers().get("x-api-key") {
        None => ApiError::new(ErrorCode::ErrApiKeyNotPresent).into_response(),
        Some(v) if v.to_str().is_ok_and(|k| state.keys.accepts(k)) => next.run(req).await,
        Some(_) => {
            state.metrics.auth_failures.inc();
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
    fn key_files_skip_comments_and_blank_lines() {
        let keys = parse_key_file("# door keys\n\n  k1  \nk2 # installer\n");
        assert_eq!(keys, vec!["k1", "k2"]);
    }
}
