//! Shared helpers for the integration tests: the real models and the fixture photos that
//! `make models` prepares (the tests fail, with that hint, when they are missing).

#![allow(dead_code)]

pub mod broker;
pub mod cameras;
pub mod server;
pub mod webdriver;

use std::path::PathBuf;
use std::process::Command;

use facegate_core::config::{Config, EmbedderKind};
use facegate_core::engine::Engine;

/// The `facegate` binary under test as a command. `FACEGATE_TEST_RUNNER` (set by `make
/// test-arm64` to `qemu-aarch64-static -cpu cortex-a72`) is put in front of it: a cross-built
/// binary cannot be started by the kernel of the build machine, only by an emulator.
pub fn facegate_command() -> Command {
    let exe = env!("CARGO_BIN_EXE_facegate");
    let runner = std::env::var("FACEGATE_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(emulator) => {
            let mut cmd = Command::new(emulator);
            cmd.args(words).arg(exe);
            cmd
        }
        None => Command::new(exe),
    }
}

/// How long to wait for something the server does in its own time (a camera's frames
/// becoming events): `timeout` times `FACEGATE_TEST_PATIENCE` (default 1). `make test-arm64`
/// sets it, because under emulation inference is tens of times slower than on the machine
/// the timeouts were chosen on.
pub fn patience(timeout: std::time::Duration) -> std::time::Duration {
    timeout * patience_factor()
}

pub fn patience_factor() -> u32 {
    std::env::var("FACEGATE_TEST_PATIENCE")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1)
}

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

/// A PNG whose header claims `width`×`height` pixels, followed by a tiny data chunk: small on
/// disk, enormous if a decoder believed it.
pub fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    png_claiming_format(width, height, 8, 2)
}

/// As [`png_claiming`], with the IHDR's bit depth and colour type (6: RGBA, 2: RGB).
pub fn png_claiming_format(width: u32, height: u32, bit_depth: u8, color_type: u8) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind_and_data: &[u8]) {
        out.extend_from_slice(&((kind_and_data.len() - 4) as u32).to_be_bytes());
        out.extend_from_slice(kind_and_data);
        out.extend_from_slice(&crc32(kind_and_data).to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[bit_depth, color_type, 0, 0, 0]);
    chunk(&mut png, &ihdr);
    chunk(&mut png, b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01");
    png
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
