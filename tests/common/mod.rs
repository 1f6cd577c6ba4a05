//! Test harness: a real `surge serve` process on 127.0.0.1:0 with its own state dir, its own
//! cgroup subtree and the example functions, and a plain HTTP/1.1 client on a real socket.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const SURGE: &str = env!("CARGO_BIN_EXE_surge");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compiled artifacts are shared by every test host: an 18 MB component compiles once.
pub fn shared_cache() -> PathBuf {
    repo().join("target").join("surge-test-cache")
}

/// True when this process can create cgroups (root on a writable cgroupfs).
pub fn cgroups_writable() -> Result<(), String> {
    let probe = Command::new(SURGE).arg("--version").output();
    if probe.is_err() {
        return Err("surge binary missing".into());
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
    let mem = own
        .lines()
        .find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, c, path) = (p.next()?, p.next()?, p.next()?);
            (c.split(',').any(|c| c == "memory") || c.is_empty()).then(|| path.to_string())
        })
        .ok_or("no memory cgroup in /proc/self/cgroup")?;
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let base = if v2 {
        PathBuf::from("/sys/fs/cgroup")
    } else {
        PathBuf::from("/sys/fs/cgroup/memory")
    };
    // Unique per call: tests probe from several threads at once, and a shared name made
    // one probe fail on the other's directory (and its test skip, or run without cgroups).
    static PROBES: AtomicU32 = AtomicU32::new(0);
    let dir = base.join(mem.trim_start_matches('/')).join(format!(
        "surge-probe-{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let _ = std::fs::remove_dir(&dir);
    Ok(())
}

/// Say a test is skipped, and why, in a way CI logs show.
pub fn skip(test: &str, why: &str) {
    // Straight to fd 2: libtest captures print!/eprint!, and a skip must show in CI's log.
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {why}");
}

static HOSTS: AtomicU32 = AtomicU32::new(0);

/// Host config lines that give the Lambda control plane the key pair the SDK tests sign
/// with (`test` / `test`, as LocalStack's examples use).
pub const LAMBDA_KEYS: &str = "[lambda]\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\n";

pub struct Host {
    child: Option<Child>,
    /// Whether `spawn` waits for the `ready:` line (else only for `listening on`).
    wait_ready: bool,
    /// Set once the host printed `ready:` (a host started without waiting for it).
    pub ready: Arc<AtomicBool>,
    pub url: String,
    pub addr: String,
    pub dir: tempfile::TempDir,
    pub subtree: String,
    /// More arguments for `surge serve`; with any, the host logs at `info` into
    /// `<dir>/serve.log` (see [`Host::stderr_so_far`]) instead of the test's stderr.
    pub serve_args: Vec<String>,
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

impl Host {
    /// A host serving copies of the named example functions.
    pub fn start(functions: &[&str]) -> Host {
        Self::start_with(functions, "")
    }

    pub fn start_with(functions: &[&str], extra_config: &str) -> Host {
        let n = HOSTS.fetch_add(1, Ordering::Relaxed);
        let subtree = format!("surge-test-{}-{n}", std::process::id());
        Self::start_in(functions, extra_config, subtree)
    }

    /// A host serving copies of the named functions with their `[scaling]` table replaced by
    /// `scaling` (TOML lines).
    pub fn start_scaled(functions: &[&str], extra_config: &str, scaling: &str) -> Host {
        let n = HOSTS.fetch_add(1, Ordering::Relaxed);
        let subtree = format!("surge-test-{}-{n}", std::process::id());
        Self::start_edited(functions, extra_config, subtree, &|m: String| {
            replace_table(&m, "scaling", scaling)
        })
    }

    /// A host serving copies of the named functions, each manifest rewritten by `edit`.
    pub fn start_custom(
        functions: &[&str],
        extra_config: &str,
        edit: &dyn Fn(String) -> String,
    ) -> Host {
        let n = HOSTS.fetch_add(1, Ordering::Relaxed);
        let subtree = format!("surge-test-{}-{n}", std::process::id());
        Self::start_edited(functions, extra_config, subtree, edit)
    }

    /// A host whose sandboxes go under another host's cgroup subtree.
    pub fn start_sharing_cgroups_with(other: &Host) -> Host {
        Self::start_in(&[], "", other.subtree.clone())
    }

    fn start_in(functions: &[&str], extra_config: &str, subtree: String) -> Host {
        Self::start_edited(functions, extra_config, subtree, &|m| m)
    }

    /// A host serving copies of the named functions, returned as soon as it listens, with a
    /// compile cache of its own: its functions are still compiling and deploying. `ready`
    /// turns true at its `ready:` line.
    pub fn start_listening(functions: &[&str]) -> Host {
        let n = HOSTS.fetch_add(1, Ordering::Relaxed);
        let subtree = format!("surge-test-{}-{n}", std::process::id());
        Self::build(functions, "", subtree, &|m| m, false, &[])
    }

    fn start_edited(
        functions: &[&str],
        extra_config: &str,
        subtree: String,
        edit: &dyn Fn(String) -> String,
    ) -> Host {
        Self::build(functions, extra_config, subtree, edit, true, &[])
    }

    fn build(
        functions: &[&str],
        extra_config: &str,
        subtree: String,
        edit: &dyn Fn(String) -> String,
        wait_ready: bool,
        serve_args: &[&str],
    ) -> Host {
        let dir = tempfile::tempdir().expect("tempdir");
        let fdir = dir.path().join("functions");
        std::fs::create_dir_all(&fdir).unwrap();
        for f in functions {
            copy_function(f, &fdir.join(f));
            let m = fdir.join(f).join("function.toml");
            let text = std::fs::read_to_string(&m).unwrap();
            std::fs::write(&m, edit(text)).unwrap();
        }
        let required = cgroups_writable().is_ok();
        let cache = if wait_ready {
            shared_cache()
        } else {
            dir.path().join("cache")
        };
        let config = format!(
            "listen = \"127.0.0.1:0\"\nfunctions_dir = {:?}\nstate_dir = {:?}\ncache_dir = {:?}\n{extra_config}\n[cgroup]\nsubtree = {subtree:?}\nrequired = {required}\n",
            fdir,
            dir.path().join("state"),
            cache,
        );
        std::fs::write(dir.path().join("surge.toml"), config).unwrap();
        let mut h = Host {
            child: None,
            wait_ready,
            ready: Arc::new(AtomicBool::new(false)),
            url: String::new(),
            addr: String::new(),
            dir,
            subtree,
            serve_args: serve_args.iter().map(|a| a.to_string()).collect(),
        };
        h.spawn();
        h
    }

    /// A host started with more `surge serve` arguments (e.g. `--log-format json`), its
    /// stderr at `info` kept for [`Host::stderr_so_far`].
    pub fn start_with_args(functions: &[&str], extra_config: &str, args: &[&str]) -> Host {
        let n = HOSTS.fetch_add(1, Ordering::Relaxed);
        let subtree = format!("surge-test-{}-{n}", std::process::id());
        Self::build(functions, extra_config, subtree, &|m| m, true, args)
    }

    /// What the host wrote on stderr so far (a host from [`Host::start_with_args`]).
    pub fn stderr_so_far(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(SURGE);
        cmd.arg("serve")
            .arg("--config")
            .arg(self.dir.path().join("surge.toml"))
            .args(&self.serve_args)
            .env("RUST_LOG", "warn")
            .env_remove("SURGE_ADMIN_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if !self.serve_args.is_empty() {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join("serve.log"))
                .expect("serve.log");
            cmd.env("RUST_LOG", "info").stderr(log);
        }
        let mut child = cmd.spawn().expect("spawn surge serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut url = None;
        let ready = self.ready.clone();
        ready.store(false, Ordering::Release);
        for line in lines.by_ref() {
            let line = line.expect("read serve output");
            if let Some(u) = line.strip_prefix("listening on ") {
                url = Some(u.trim().to_string());
                if !self.wait_ready {
                    break;
                }
            }
            if line.starts_with("ready:") {
                assert!(line.ends_with(", 0 failed"), "host start: {line}");
                ready.store(true, Ordering::Release);
                break;
            }
        }
        // Keep draining stdout so the host never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.starts_with("ready:") {
                    ready.store(true, Ordering::Release);
                }
            }
        });
        let url = url.expect("surge serve printed its address");
        self.addr = url.trim_start_matches("http://").to_string();
        self.url = url;
        self.child = Some(child);
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.state_dir().join("admin-token"))
            .expect("admin token")
            .trim()
            .to_string()
    }

    /// Stop (SIGTERM, graceful) and start again on the same state.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// SIGKILL the host, at whatever moment it is in, and start it again on the same state.
    pub fn kill_and_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawn();
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            for _ in 0..200 {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            let _ = writeln!(
                std::io::stderr(),
                "host {} did not stop within 5 s of SIGTERM: killed (its cgroups stay behind)",
                self.subtree
            );
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Run the CLI against this host: (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(SURGE)
            .args(args)
            .arg("--state-dir")
            .arg(self.state_dir())
            .env_remove("SURGE_URL")
            .env_remove("SURGE_ADMIN_TOKEN")
            .output()
            .expect("run surge cli");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        http(&self.addr, method, path, headers, body)
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], b"")
    }

    pub fn post(&self, path: &str, body: &[u8]) -> Reply {
        self.request("POST", path, &[], body)
    }

    pub fn invoke(&self, name: &str, body: &[u8]) -> Reply {
        self.post(&format!("/2015-03-31/functions/{name}/invocations"), body)
    }

    pub fn admin(&self, method: &str, path: &str) -> Reply {
        let auth = format!("Bearer {}", self.token());
        self.request(method, path, &[("authorization", &auth)], b"")
    }

    /// The function's entry in `GET /admin/v1/functions`.
    pub fn function(&self, name: &str) -> Option<serde_json::Value> {
        let r = self.admin("GET", "/admin/v1/functions");
        assert_eq!(r.status, 200, "{}", r.text());
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .cloned()
    }

    pub fn sandbox_pid(&self, name: &str) -> Option<u32> {
        self.function(name)
            .and_then(|f| f["sandbox_pid"].as_u64())
            .map(|p| p as u32)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Poll `f` every 20 ms until it holds; fail naming `what` after `limit`. Returns how long
/// it took.
pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t = std::time::Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    t.elapsed()
}

/// A number from the function's entry in the admin API.
pub fn num(h: &Host, name: &str, key: &str) -> u64 {
    h.function(name).expect("deployed")[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in status"))
}

/// `text` with its `[table]` section (up to the next table) replaced by `body`.
pub fn replace_table(text: &str, table: &str, body: &str) -> String {
    let header = format!("[{table}]");
    let Some(start) = text.find(&header) else {
        return format!("{text}\n{header}\n{body}\n");
    };
    let rest = &text[start + header.len()..];
    let end = rest
        .find("\n[")
        .map(|i| start + header.len() + i + 1)
        .unwrap_or(text.len());
    format!("{}{header}\n{body}\n{}", &text[..start], &text[end..])
}

/// Copy an example function's manifest and built .wasm.
pub fn copy_function(name: &str, to: &Path) {
    let from = repo().join("functions").join(name);
    std::fs::create_dir_all(to).unwrap();
    for file in ["function.toml".to_string(), format!("{name}.wasm")] {
        let src = from.join(&file);
        assert!(
            src.exists(),
            "{} is missing: build the examples first (functions/build.sh)",
            src.display()
        );
        std::fs::copy(&src, to.join(&file)).unwrap();
    }
}

/// One HTTP/1.1 request on a fresh connection.
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    try_http(addr, method, path, headers, body, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// The same, with an error instead of a panic (for a host that may be gone), the answer
/// awaited at most `read`. A host that closes before reading the whole body (it refused
/// it) still has its answer read.
pub fn try_http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    read: Duration,
) -> Result<Reply, String> {
    let sock: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(read)).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write {addr}: {e}"))?;
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let read = s.read_to_end(&mut raw);
    parse_response(&raw).map_err(|e| match read {
        Err(r) => format!("read {addr}: {r}"),
        Ok(_) => format!("{addr}: {e}"),
    })
}

fn parse_response(raw: &[u8]) -> Result<Reply, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no complete response head")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("a bad status line")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        })
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
        if size == 0 || b.len() < i + 2 + size {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[(i + 4 + size).min(b.len())..];
    }
    out
}

/// The tools venv's python (scripts/test.sh fills it) if it can `import module`; else why
/// not, for a skip.
pub fn tools_python(module: &str) -> Result<String, String> {
    let tools = std::env::var("SURGE_TOOLS_DIR").unwrap_or_else(|_| {
        format!(
            "{}/.cache/surge-tools",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let py = format!("{tools}/venv/bin/python");
    let ok = std::process::Command::new(&py)
        .args(["-c", &format!("import {module}")])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(py)
    } else {
        Err(format!(
            "{py} has no {module} (scripts/test.sh installs it)"
        ))
    }
}
