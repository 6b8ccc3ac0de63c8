//! A real `facegate serve` process on an ephemeral port with its own LMDB directory, and a
//! small JSON client for it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

pub const KEY: &str = "test-key-0123456789";

pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub data_dir: PathBuf,
    /// Every line the server wrote to stderr (its log) so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

/// How to start a server.
#[derive(Clone, Default)]
pub struct Options {
    /// Extra TOML for the config file.
    pub config: String,
    pub extra_args: Vec<String>,
    pub no_key: bool,
    /// Extra environment of the server process.
    pub env: Vec<(String, String)>,
}

impl Server {
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, &Options::default()).expect("server starts")
    }

    /// Start and wait for the "listening on" line; `Err(stderr)` when the process exits first.
    pub fn start_with(data_dir: &Path, options: &Options) -> Result<Server, String> {
        let config_path = data_dir.with_extension("toml");
        std::fs::write(&config_path, &options.config).unwrap();
        let mut cmd = super::facegate_command();
        cmd.arg("--config")
            .arg(&config_path)
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .args(&options.extra_args)
            .env_remove("FACEGATE_API_KEYS")
            .env("FACEGATE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !options.no_key {
            cmd.arg("--api-key").arg(KEY);
        }
        cmd.envs(options.env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd.spawn().expect("spawn facegate");
        // The log is drained from the start: a chatty start-up (FACEGATE_LOG=info) must not
        // fill the pipe and block the server before it listens.
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let drained = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("server: {line}");
                sink.lock().unwrap().push(line);
            }
        });
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("facegate: listening on ") {
                        // Keep draining stdout so the server never blocks on a full pipe.
                        std::thread::spawn(move || for _ in lines {});
                        return Ok(Server {
                            child: Some(child),
                            url: url.to_owned(),
                            data_dir: data_dir.to_owned(),
                            log,
                        });
                    }
                }
                _ => {
                    child.wait().unwrap();
                    drained.join().unwrap();
                    let text = log.lock().unwrap().join("\n");
                    return Err(text);
                }
            }
        }
    }

    /// SIGKILL: no shutdown code runs, as in a power cut.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, as systemd stops it, and wait for the exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        c.wait().unwrap()
    }

    /// The log so far, one string.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The log once it has a line containing `text` (or after 10 s, patience included): the
    /// log is read on another thread, so a line written before "listening" may land later.
    pub fn wait_for_log(&self, text: &str) -> String {
        let deadline = std::time::Instant::now() + super::patience(Duration::from_secs(10));
        loop {
            let log = self.log_text();
            if log.contains(text) || std::time::Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Send `signal` (SIGHUP, ...) to the server.
    pub fn signal(&self, signal: i32) {
        unsafe {
            libc::kill(self.pid() as i32, signal);
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// A request with the test key.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.call_with_key(method, path, body, Some(KEY))
    }

    pub fn call_with_key(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let mut req = ureq::request(method, &format!("{}{}", self.url, path))
            .timeout(Duration::from_secs(120));
        if let Some(k) = key {
            req = req.set("x-api-key", k);
        }
        let result = match body {
            Some(b) => req.send_json(b.clone()),
            None => req.call(),
        };
        read(result)
    }

    /// A request with a raw body.
    pub fn call_raw(&self, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
        let req = ureq::request(method, &format!("{}{}", self.url, path))
            .set("x-api-key", KEY)
            .set("content-type", "application/json")
            .timeout(Duration::from_secs(120));
        read(req.send_bytes(body))
    }

    pub fn get_text(&self, path: &str) -> (u16, String) {
        match ureq::get(&format!("{}{}", self.url, path)).call() {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
            Err(e) => panic!("transport error: {e}"),
        }
    }
}

fn read(result: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap_or_default();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `code` of each item of a `PUT /persons` answer, in order.
pub fn item_codes(results: &Value) -> Vec<&str> {
    results
        .as_array()
        .expect("an array of item results")
        .iter()
        .map(|r| r["code"].as_str().expect("a code"))
        .collect()
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("valid base64")
}

/// JPEG bytes of an image.
pub fn jpeg(img: &image::RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// Photos side by side on one canvas (each scaled to `height`).
pub fn side_by_side(photos: &[&str], height: u32) -> Vec<u8> {
    let imgs: Vec<image::RgbImage> = photos
        .iter()
        .map(|p| {
            let img = image::open(super::fixture(p)).unwrap().to_rgb8();
            let w = img.width() * height / img.height();
            image::imageops::resize(&img, w, height, image::imageops::FilterType::Triangle)
        })
        .collect();
    let width = imgs.iter().map(|i| i.width()).sum::<u32>() + 40 * (imgs.len() as u32 + 1);
    let mut canvas = image::RgbImage::from_pixel(width, height + 80, image::Rgb([200, 200, 200]));
    let mut x = 40;
    for img in &imgs {
        image::imageops::overlay(&mut canvas, img, x as i64, 40);
        x += img.width() + 40;
    }
    jpeg(&canvas)
}

/// A photo with no face: a smooth gradient.
pub fn no_face_jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(320, 240, |x, y| {
        image::Rgb([(x / 2) as u8, (y / 2) as u8, 128])
    });
    jpeg(&img)
}
