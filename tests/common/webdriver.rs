//! A real browser for the console tests: Debian's headless `chromium` driven through
//! `chromedriver` with the W3C WebDriver protocol (JSON over HTTP, spoken here with the
//! tests' `ureq` client: the few commands the tests need, without the ~25 crates a WebDriver
//! client crate would add to every build, ARM cross-builds included).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

/// The W3C name of an element reference in JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    /// Where screenshots go.
    pub out: PathBuf,
}

/// A found element.
#[derive(Clone)]
pub struct Element(String);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn find_program(names: &[&str]) -> String {
    for n in names {
        for dir in ["/usr/bin", "/usr/lib/chromium", "/usr/local/bin"] {
            let p = Path::new(dir).join(n);
            if p.exists() {
                return p.display().to_string();
            }
        }
    }
    panic!(
        "{} not found: run `make deps` (Debian's chromium and chromium-driver)",
        names[0]
    );
}

impl Browser {
    /// Start chromedriver and a headless chromium session with a `width`×`height` window,
    /// a fake camera for getUserMedia, screenshots under `out`.
    pub fn start(out: &Path, width: u32, height: u32) -> Browser {
        std::fs::create_dir_all(out).unwrap();
        let driver_path = find_program(&["chromedriver"]);
        let chromium = find_program(&["chromium", "chromium-browser"]);
        let port = free_port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            out: out.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while ureq::get(&format!("{}/status", browser.base))
            .call()
            .is_err()
        {
            assert!(Instant::now() < deadline, "chromedriver did not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
        // A fresh profile: a lock left by a killed run would stop chromium from starting.
        let profile = out.join("profile");
        let _ = std::fs::remove_dir_all(&profile);
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.display()),
                    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                    "--no-first-run", "--disable-extensions",
                ]
            }
        }}});
        let session = browser.raw("POST", "/session", Some(caps));
        let id = session["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {session}"))
            .to_owned();
        browser.base = format!("{}/session/{id}", browser.base);
        browser
    }

    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let req =
            ureq::request(method, &format!("{}{path}", self.base)).timeout(Duration::from_secs(60));
        let result = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("WebDriver {method} {path}: {e}"),
        };
        let value: Value = response.into_json().unwrap_or(Value::Null);
        value["value"].clone()
    }

    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let v = self.raw(method, path, body);
        if let Some(error) = v.get("error") {
            panic!("WebDriver {method} {path}: {error}: {}", v["message"]);
        }
        v
    }

    pub fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })));
    }

    /// The element `css` selects, waiting up to `timeout` for it.
    pub fn find(&self, css: &str, timeout: Duration) -> Element {
        let deadline = Instant::now() + super::patience(timeout);
        loop {
            let v = self.raw(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            );
            if let Some(id) = v.get(ELEMENT).and_then(Value::as_str) {
                return Element(id.to_owned());
            }
            assert!(
                Instant::now() < deadline,
                "no element {css:?} after {timeout:?} (last answer {v}) on {}",
                self.raw("GET", "/url", None)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn click(&self, e: &Element) {
        self.command("POST", &format!("/element/{}/click", e.0), Some(json!({})));
    }

    pub fn type_into(&self, e: &Element, text: &str) {
        self.command(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({ "text": text })),
        );
    }

    pub fn text(&self, e: &Element) -> String {
        self.command("GET", &format!("/element/{}/text", e.0), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Run `script` (a function body; `arguments` are `args`) in the page and return its
    /// result.
    pub fn run(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Wait until `script` returns a truthy value, and return it.
    pub fn wait_until(&self, timeout: Duration, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + super::patience(timeout);
        loop {
            let v = self.run(script, json!([]));
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::Object(_) => true,
            };
            if truthy {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Save a PNG of the viewport as `<out>/<name>.png`; returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.command("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        let path = self.out.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Element {
    /// The element as a script argument.
    pub fn as_arg(&self) -> Value {
        json!({ ELEMENT: self.0 })
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&self.base).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
