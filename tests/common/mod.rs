//! Shared helpers for the integration tests: the real models and the fixture photos that
//! `make models` prepares (the tests fail, with that hint, when they are missing).

#![allow(dead_code)]

use std::path::PathBuf;

use facegate::config::{Config, EmbedderKind};
use facegate::engine::Engine;

pub fn fixture(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    assert!(
        p.exists(),
        "fixture {} is missing: run `make models` first",
        p.display()
    );
    p
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

pub fn engine(kind: EmbedderKind) -> Engine {
    let mut config = Config::default();
    config.inference.embedder = kind;
    config.inference.threads = 1;
    Engine::open(&config).unwrap_or_else(|e| panic!("engine did not open ({e}); run `make models`"))
}

pub const SINGLE_PERSON: [&str; 7] = [
    "obama.jpg",
    "obama2.jpg",
    "obama3.jpg",
    "obama_partial_face.jpg",
    "obama_partial_face2.jpg",
    "biden.jpg",
    "32bit.png",
];
