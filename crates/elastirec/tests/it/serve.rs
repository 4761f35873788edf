//! `elastirec serve` end to end: the demo's lake, the real binary on a real socket, the API over
//! HTTP, `show` in the terminal, and the dashboard in headless Chromium driven over WebDriver
//! (chromedriver), which saves a screenshot. `./scripts/test` installs Chromium when it is
//! missing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::harness::{bin, ok, read_json};

pub(crate) const TOKEN: &str = "demo-token-123";

/// Kills a child process when dropped (a failing test must not leave a server running).
pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 exchange with `Connection: close`: (status, body).
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    // Read the head, then as much body as it announces (a server may keep the connection open
    // despite `Connection: close`, so reading to the end is not enough).
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "{addr} closed before a response head");
        raw.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
    let status = head[9..12].parse().unwrap();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().unwrap());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let have = raw.len() - end - 4;
        let done = match length {
            Some(n) => have >= n,
            None if chunked => raw[end + 4..].windows(5).any(|w| w == b"0\r\n\r\n"),
            None => false,
        };
        if done {
            break;
        }
        let n = s.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
    }
    let mut body = raw[end + 4..].to_vec();
    if let Some(n) = length {
        body.truncate(n);
    } else if chunked {
        body = dechunk(&body);
    }
    (status, String::from_utf8(body).unwrap())
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
}

pub(crate) fn api(addr: &str, path: &str) -> (u16, Value) {
    let auth = format!("Bearer {TOKEN}");
    let (status, body) = http(addr, "GET", path, &[("Authorization", &auth)], "");
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")),
    )
}

/// Starts `elastirec serve --port 0` on a lake and returns it with its address.
pub(crate) fn start_server(lake: &Path) -> (Killed, String) {
    let mut child = bin()
        .arg("--lake")
        .arg(lake)
        .args(["serve", "--port", "0"])
        .env("ELASTIREC_SERVE__TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("elastirec serve starts");
    let stdout = child.stdout.take().unwrap();
    let guard = Killed(child);
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("serve prints where it listens")
            .unwrap();
        if let Some(rest) = line.strip_prefix("listening on http://") {
            break rest.split('/').next().unwrap().to_string();
        }
    };
    (guard, addr)
}

/// The address `serve` printed, read from its stdout.
fn listening_on(child: &mut Child) -> String {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines
            .next()
            .expect("serve prints where it listens")
            .unwrap();
        if let Some(rest) = line.strip_prefix("listening on http://") {
            return rest.split('/').next().unwrap().to_string();
        }
    }
}

#[test]
fn the_token_stays_out_of_argv_and_an_exposed_port_needs_one() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    // A lake (serve refuses a place that is not one), nothing published yet.
    crate::harness::ok(
        &lake,
        &[
            "simulate",
            "--days",
            "1",
            "--users",
            "20",
            "--items",
            "10",
            "--events-per-day",
            "50",
        ],
    );
    // A token on the command line is refused: `ps` would show it.
    let out = bin()
        .arg("--lake")
        .arg(&lake)
        .args(["serve", "--port", "0", "--token", "in-argv-secret"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ELASTIREC_SERVE__TOKEN"), "{err}");
    assert!(err.contains("--token-file"), "{err}");
    assert!(!err.contains("in-argv-secret"), "{err}");

    // Every address but loopback needs a token, or the explicit --insecure-no-token.
    let out = bin()
        .arg("--lake")
        .arg(&lake)
        .args(["serve", "--port", "0", "--host", "0.0.0.0"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "served 0.0.0.0 without a token");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without a token"), "{err}");
    assert!(err.contains("--insecure-no-token"), "{err}");
    let mut child = bin()
        .arg("--lake")
        .arg(&lake)
        .args([
            "serve",
            "--port",
            "0",
            "--host",
            "0.0.0.0",
            "--insecure-no-token",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = listening_on(&mut child);
    let port = addr.rsplit(':').next().unwrap();
    let (status, _) = http(&format!("127.0.0.1:{port}"), "GET", "/v1/runs", &[], "");
    assert_eq!(status, 200, "--insecure-no-token serves without a token");
    drop(Killed(child));

    // --token-file: the token is required, and is in neither the arguments nor the output.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "file-secret-777\n").unwrap();
    let mut child = bin()
        .arg("--lake")
        .arg(&lake)
        .args(["serve", "--port", "0", "--host", "0.0.0.0", "--token-file"])
        .arg(&token_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = listening_on(&mut child);
    let port = addr.rsplit(':').next().unwrap();
    let local = format!("127.0.0.1:{port}");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains("file-secret-777"),
        "the token is in the process arguments"
    );
    assert_eq!(http(&local, "GET", "/v1/runs", &[], "").0, 401);
    let auth = [("Authorization", "Bearer file-secret-777")];
    assert_eq!(http(&local, "GET", "/v1/runs", &auth, "").0, 200);
    let mut child = Killed(child);
    let _ = child.0.kill();
    let _ = child.0.wait();
    let mut stderr = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(!stderr.contains("file-secret-777"), "{stderr}");
}

/// A minimal WebDriver client for chromedriver.
struct Browser {
    driver: String,
    session: String,
    _chromedriver: Killed,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    fn start() -> Browser {
        for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: ./scripts/test installs it (apt-get install chromium chromium-driver)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let guard = Killed(child);
        let driver = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&driver).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1800"]
            }
        }}});
        let (status, body) = http(
            &driver,
            "POST",
            "/session",
            &[("Content-Type", "application/json")],
            &caps.to_string(),
        );
        assert_eq!(status, 200, "new session: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let session = v["value"]["sessionId"].as_str().unwrap().to_string();
        Browser {
            driver,
            session,
            _chromedriver: guard,
        }
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let text = if method == "GET" {
            String::new()
        } else {
            body.to_string()
        };
        let (status, out) = http(
            &self.driver,
            method,
            &path,
            &[("Content-Type", "application/json")],
            &text,
        );
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        assert_eq!(status, 200, "{method} {path}: {out}");
        v["value"].clone()
    }

    fn open(&self, url: &str) {
        self.call("POST", "/url", json!({"url": url}));
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        v[ELEMENT].as_str().unwrap().to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            json!({"text": text}),
        );
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.call("POST", &format!("/element/{e}/click"), json!({}));
    }

    fn eval(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    /// Polls a script until it returns something truthy.
    fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.eval(script);
            if !(v.is_null() || v == json!(false)) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self, to: &Path) {
        let v = self.call("GET", "/screenshot", Value::Null);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(to, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.session);
        let _ = std::panic::catch_unwind(|| http(&self.driver, "DELETE", &path, &[], ""));
    }
}

/// Where the screenshot goes: `ELASTIREC_SCREENSHOT`, or the test target's scratch folder.
fn screenshot_path() -> PathBuf {
    std::env::var_os("ELASTIREC_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png"))
}

#[test]
fn the_demo_lake_is_served_shown_and_browsed() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    ok(&lake, &["demo"]);

    // The API over a real socket.
    let (_server, addr) = start_server(&lake);
    let (status, health) = {
        let (s, b) = http(&addr, "GET", "/healthz", &[], "");
        (s, serde_json::from_str::<Value>(&b).unwrap())
    };
    assert_eq!(status, 200);
    assert_eq!(health["model_date"], "2024-01-30");
    let (status, recs) = api(&addr, "/v1/users/1/recommendations?k=5");
    assert_eq!(status, 200, "{recs}");
    assert_eq!(recs["items"].as_array().unwrap().len(), 5);
    assert_eq!(recs["fallback"], false);
    let first_title = recs["items"][0]["title"].as_str().unwrap().to_string();
    assert!(first_title.starts_with("Item "), "{first_title}");
    let (status, unknown) = api(&addr, "/v1/users/987654321/recommendations");
    assert_eq!(status, 200);
    assert_eq!(unknown["fallback"], true);
    for (path, want) in [
        ("/v1/users/1/recommendations?k=11", 400),
        // Any string is an id; a control character is not.
        ("/v1/users/a%0Ab/recommendations", 400),
        ("/v1/nothing", 404),
    ] {
        let (status, body) = api(&addr, path);
        assert_eq!(status, want, "{path}: {body}");
        assert!(body["error"]["message"].is_string(), "{path}: {body}");
    }
    let (status, body) = http(&addr, "GET", "/v1/runs", &[], "");
    assert_eq!(status, 401, "{body}");

    // The terminal view of the same lookup.
    let shown = ok(&lake, &["show", "--user", "1", "--k", "5"]);
    assert!(shown.contains("night 2024-01-30"), "{shown}");
    assert!(shown.contains(&first_title), "{shown}");
    assert!(shown.contains("history ("), "{shown}");

    // The dashboard in a real browser.
    let browser = Browser::start();
    browser.open(&format!("http://{addr}/"));
    browser.wait_for(
        "the token prompt",
        "return !document.getElementById('token-panel').hidden",
    );
    browser.type_into("#token-input", TOKEN);
    browser.click("#token-form button");
    browser.wait_for(
        "the dashboard",
        "return document.body.dataset.ready === 'true'",
    );

    // The grid shows exactly the nights and states of the run records.
    let cells = browser.eval(
        "return [...document.querySelectorAll('#grid td.cell')]\
         .map(c => [c.dataset.night, c.dataset.step, c.dataset.state])",
    );
    // One row per step any night ran (the demo evaluates one night), "missing" where a night
    // did not run that step.
    let start: elastirec_core::Night = "2024-01-01".parse().unwrap();
    let records: Vec<Value> = start
        .through(start.plus_days(29))
        .map(|night| read_json(&lake, &elastirec_core::layout::run_record(night)))
        .collect();
    let mut steps: Vec<String> = Vec::new();
    for r in &records {
        for s in r["steps"].as_array().unwrap() {
            let name = s["name"].as_str().unwrap().to_string();
            if !steps.contains(&name) {
                steps.push(name);
            }
        }
    }
    let mut expected = Vec::new();
    for r in &records {
        for name in &steps {
            let state = r["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == name.as_str())
                .map_or(json!("missing"), |s| s["state"].clone());
            expected.push(json!([r["night"], name, state]));
        }
    }
    let mut got: Vec<Value> = cells.as_array().unwrap().clone();
    got.sort_by_key(|v| v.to_string());
    expected.sort_by_key(|v| v.to_string());
    assert_eq!(got, expected, "grid cells vs run records");
    assert_eq!(got.len(), 30 * steps.len());
    let nightly = ["ingest", "prepare", "train", "recommend"];
    assert!(
        got.iter()
            .filter(|c| nightly.contains(&c[1].as_str().unwrap()))
            .all(|c| c[2] == "succeeded"),
        "every nightly step of the demo succeeded"
    );

    // A night's details.
    browser.click("#grid thead th[data-night='2024-01-23']");
    let steps = browser.wait_for(
        "the night's steps",
        "const t = document.getElementById('night-steps'); \
         return t && [...t.querySelectorAll('tbody tr')].map(r => r.cells[0].textContent)",
    );
    let record = read_json(
        &lake,
        &elastirec_core::layout::run_record("2024-01-23".parse().unwrap()),
    );
    let recorded: Vec<Value> = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].clone())
        .collect();
    assert_eq!(steps, json!(recorded), "the night's steps as recorded");
    assert!(
        recorded.contains(&json!("evaluate")),
        "the demo evaluated 2024-01-23"
    );
    let detail = browser.eval("return document.getElementById('night-detail').textContent");
    assert!(
        detail.as_str().unwrap().contains("NDCG@10"),
        "the evaluated night shows its scores: {detail}"
    );

    // Plots are drawn.
    let plotted = browser.eval(
        "return ['plot-cost','plot-ndcg','plot-rows'].map(id => document.querySelectorAll('#' + id + ' svg [data-series]').length)",
    );
    for n in plotted.as_array().unwrap() {
        assert!(n.as_u64().unwrap() > 0, "every plot has marks: {plotted}");
    }

    // The user lookup.
    browser.type_into("#user-id", "1");
    browser.click("#lookup");
    let titles = browser.wait_for(
        "the recommendations",
        "const t = document.getElementById('recs-table'); \
         return t && [...t.querySelectorAll('tbody tr')].map(r => r.cells[1].textContent)",
    );
    let titles = titles.as_array().unwrap();
    assert_eq!(titles.len(), 10);
    assert_eq!(titles[0], first_title.as_str());
    let history_rows = browser.eval("return document.querySelectorAll('#history tbody tr').length");
    assert!(history_rows.as_u64().unwrap() > 0, "history shown");

    // The "try it" box: user 1 did one more thing today (their first recommended item); the
    // list is folded in and is the one the API gives for the same request.
    let given = recs["items"][0]["item_id"].as_str().unwrap().to_string();
    browser.type_into("#try-items", &given);
    browser.click("#try");
    let tried = browser.wait_for(
        "the folded-in list",
        "const t = document.getElementById('try-table'); \
         return t && [...t.querySelectorAll('tbody tr')].map(r => [r.cells[1].textContent, r.cells[4].textContent])",
    );
    let auth = format!("Bearer {TOKEN}");
    let request = json!({"user_id": "1", "items": [{"item_id": given}], "k": 10}).to_string();
    let (status, made) = http(
        &addr,
        "POST",
        "/v1/recommendations",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &request,
    );
    assert_eq!(status, 200, "{made}");
    let made: Value = serde_json::from_str(&made).unwrap();
    let want: Vec<Value> = made["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| json!([i["item_id"], i["source"]]))
        .collect();
    assert_eq!(tried, json!(want), "the box shows the API's fold-in");
    assert_eq!(want.len(), 10);
    assert_eq!(want[0][1], "fold-in", "{made}");
    assert!(
        want.iter().all(|i| i[0] != given.as_str()),
        "the given item is not offered back: {made}"
    );

    let shot = screenshot_path();
    browser.screenshot(&shot);
    println!("dashboard screenshot: {}", shot.display());
}
