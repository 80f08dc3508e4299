//! A real headless Chromium for the dashboard's tests, driven over
//! WebDriver (chromedriver, through fantoccini): starting both, the
//! browser's console log, reading the page's text with a deadline, clicks.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/test` installs
//! them); without them a test fails and says how to install them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const INSTALL: &str = "install them with `apt-get install chromium chromium-driver` \
                       (scripts/test does it)";
/// The bound on every wait of the browser tests: a broken page fails, never hangs.
pub const DEADLINE: Duration = Duration::from_secs(20);

// === the browser ===

/// chromedriver on a free port, killed when dropped.
pub struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    /// Asks chromedriver to shut down, which quits the browsers it
    /// started: killing it alone would leave them running when a test
    /// fails before closing its session.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(
                b"GET /shutdown HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            );
            let _ = s.read(&mut [0; 256]);
        }
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

pub async fn start_driver() -> Driver {
    for (path, what) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromedriver")] {
        assert!(
            Path::new(path).exists(),
            "{what} is missing at {path}: {INSTALL}"
        );
    }
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}; {INSTALL}"));
    let driver = Driver { child, port };
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(started.elapsed() < DEADLINE, "chromedriver did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    driver
}

pub async fn start_browser(driver: &Driver, profile: &Path) -> Client {
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,2000",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
        "goog:loggingPrefs": { "browser": "ALL" },
    });
    let caps = caps.as_object().unwrap().clone();
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .unwrap_or_else(|e| panic!("chromium did not start through chromedriver: {e}"))
}

/// chromedriver's browser log (console messages and uncaught errors),
/// emptied by each read.
#[derive(Debug)]
pub struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// The log's entries at level SEVERE (console.error, uncaught
/// exceptions, failed loads) as "source: message".
pub async fn severe(browser: &Client) -> Vec<String> {
    let log = browser
        .issue_cmd(BrowserLog)
        .await
        .expect("the browser log");
    log.as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| format!("{}: {}", e["source"], e["message"]))
        .collect()
}

/// The trimmed text the element `id` shows (empty when absent or
/// hidden; hidden children's text left out).
pub async fn text(browser: &Client, id: &str) -> String {
    let script = "const e = document.getElementById(arguments[0]); \
                  return e && !e.closest('[hidden]') ? e.innerText.trim() : '';";
    let v = browser.execute(script, vec![json!(id)]).await.unwrap();
    v.as_str().unwrap_or_default().to_owned()
}

/// Waits until `check` holds on the element's text; how long it took.
pub async fn wait_text(
    browser: &Client,
    id: &str,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let t = text(browser, id).await;
        if check(&t) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < DEADLINE,
            "#{id} never showed {what}; it shows {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn click(browser: &Client, id: &str) {
    let el = browser.find(Locator::Id(id)).await.unwrap();
    el.click().await.unwrap();
}

/// Clicks an action, then the dialog's Confirm.
pub async fn click_and_confirm(browser: &Client, id: &str) {
    click(browser, id).await;
    let open = "return document.getElementById('confirm').open;";
    let started = Instant::now();
    while browser.execute(open, vec![]).await.unwrap() != json!(true) {
        assert!(started.elapsed() < DEADLINE, "no confirmation dialog");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    click(browser, "confirm-ok").await;
}

pub async fn sign_in(browser: &Client, token: &str) {
    let input = browser.find(Locator::Id("token-input")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(token).await.unwrap();
    click(browser, "token-submit").await;
}

/// Opens the page at `url` and waits for its token field.
pub async fn open(browser: &Client, url: &str) {
    browser.goto(url).await.unwrap();
    browser
        .wait()
        .at_most(DEADLINE)
        .for_element(Locator::Id("token-input"))
        .await
        .unwrap();
}

/// A fresh Chromium profile folder for the test `name`, under the tests'
/// temporary folder.
pub fn profile(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("chromium-profile-{name}-{}", std::process::id()))
}

/// `target/`, where screenshots are saved.
pub fn out_dir() -> PathBuf {
    // The tests' own temporary folder is target/tmp.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_owned()
}
