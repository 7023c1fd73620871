//! A real headless Chromium, driven through WebDriver (`chromedriver`), for the tests of the
//! web console: what a person sees is checked in a browser, not in the HTML source.
//!
//! `scripts/test.sh` installs Debian's `chromium` and `chromium-driver` when they are missing;
//! without them [`Browser::start`] panics and says what to install (a browser test never
//! passes by skipping). The WebDriver protocol is plain JSON over HTTP, so this speaks it with
//! `reqwest` directly: new session, navigate, execute a script, screenshot, window size.

use crate::{TestDir, free_port};
use base64::Engine;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian puts them; `CHROMIUM`/`CHROMEDRIVER` override.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// One browser session (its own chromedriver, its own empty profile).
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    /// `http://127.0.0.1:{port}/session/{id}`.
    session: String,
    _profile: TestDir,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session (1366×900).
    pub async fn start() -> Browser {
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| CHROMIUM.into());
        let driver_bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| CHROMEDRIVER.into());
        for bin in [&chromium, &driver_bin] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: the console tests need Debian's `chromium` and \
                 `chromium-driver` (scripts/test.sh installs them when it may use apt-get)"
            );
        }
        let port = free_port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = TestDir::new();
        // The flags this machine needs: no sandbox as root, and no background traffic to
        // hosts the closed network refuses.
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1366,900".into(),
            format!("--user-data-dir={}", profile.path.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let resp: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session answer");
        let id = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver refused the session: {resp}"))
            .to_owned();
        Browser {
            driver,
            http,
            session: format!("{base}/session/{id}"),
            _profile: profile,
        }
    }

    async fn command(&self, path: &str, body: Value) -> Value {
        let resp: Value = self
            .http
            .post(format!("{}{path}", self.session))
            .json(&body)
            .send()
            .await
            .expect("webdriver command")
            .json()
            .await
            .expect("webdriver answer");
        if resp["value"]["error"].is_string() {
            panic!("webdriver {path}: {}", resp["value"]);
        }
        resp["value"].clone()
    }

    /// Opens a URL and waits for its load.
    pub async fn goto(&self, url: &str) {
        self.command("/url", json!({"url": url})).await;
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page, returns its value.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.command("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    /// Polls `script` (an expression) until it is truthy; returns its value and how long it took.
    /// Panics with `what` past `timeout`.
    pub async fn wait_for(&self, what: &str, script: &str, timeout: Duration) -> (Value, Duration) {
        let start = Instant::now();
        loop {
            let v = self.eval(&format!("return ({script});"), json!([])).await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::Object(_) => true,
            };
            if truthy {
                return (v, start.elapsed());
            }
            assert!(
                start.elapsed() < timeout,
                "waited {timeout:?} for {what} ({script}) in the page"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sets the window's outer size.
    pub async fn window_size(&self, width: u32, height: u32) {
        self.command("/window/rect", json!({"width": width, "height": height}))
            .await;
    }

    /// A PNG of the viewport, written to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let resp: Value = self
            .http
            .get(format!("{}/screenshot", self.session))
            .send()
            .await
            .expect("screenshot")
            .json()
            .await
            .expect("screenshot answer");
        let png = base64::engine::general_purpose::STANDARD
            .decode(resp["value"].as_str().expect("base64 PNG"))
            .expect("decode PNG");
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing the session ends Chromium; a blocking call is fine in a test's teardown.
        let session = self.session.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    reqwest::Client::new().delete(&session).send(),
                )
                .await;
            });
        })
        .join();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
