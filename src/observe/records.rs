//! Invocation records: one per invocation, on any surface, as Lambda's `START` / `END` /
//! `REPORT` lines give one. They are kept in `<state_dir>/logs.db` (SQLite), bounded per
//! function by count, by bytes and by age, and survive restarts.
//!
//! The data path never waits on disk: [`Records::submit`] puts the invocation on a bounded
//! channel (`try_send`; a full channel drops the record and counts it in
//! `surge_log_records_dropped_total`) and returns. One writer thread takes whatever has
//! piled up (it rests 10 ms after each batch, so that under load a sender never has to
//! wake it), decodes the guest's log, commits it in one transaction, prunes what went over
//! a bound, and only then hands the records to followers (`surge logs --follow`), so a
//! followed record is a stored one.
//!
//! A read first sends a barrier through the same channel: it sees every invocation that
//! ended before it was asked. Commits are `synchronous = NORMAL` (WAL): a host killed with
//! SIGKILL keeps every committed record, but one that loses power may lose the last
//! commits. Records are diagnostics, not the function's output.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use parking_lot::Mutex;
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot};

#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("invocation records {path}: {message}")]
    Sql { path: PathBuf, message: String },
    #[error("invocation records {path}: the writer thread has stopped")]
    Stopped { path: PathBuf },
}

/// What the store keeps, per function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Records older than this (by their end) are deleted.
    pub retention: Duration,
    /// At most this many records...
    pub max_records: u64,
    /// ... and this many bytes of them (their JSON), per function.
    pub max_bytes: u64,
    /// Bytes of the guest's stderr one record keeps (its tail).
    pub max_log: usize,
}

/// One invocation as the data path saw it: cheap to build (no decoding, no formatting
/// beyond the request id the caller already has).
#[derive(Clone, Debug)]
pub struct Invocation {
    pub request_id: String,
    pub function: String,
    pub version: u64,
    pub sandbox_pid: Option<u32>,
    /// When it arrived, Unix ms.
    pub start_ms: i64,
    pub duration: Duration,
    /// It arrived with no instance ready and waited `init` for a start.
    pub cold: bool,
    pub init: Option<Duration>,
    /// `ok`, `error`, `timeout`, `memory`, `trap` (the sandbox's verdict), or the host's:
    /// `throttled`, `unavailable`, `too_large`, `failed`, `dropped` (the client left).
    pub outcome: &'static str,
    /// The HTTP status the function answered with (an event handler's is 200), or the one
    /// its route answers for the host's error.
    pub status: u16,
    /// The instance's peak linear memory, when the sandbox reported it.
    pub max_memory_bytes: Option<u64>,
    /// The configured memory per instance (Lambda's "Memory Size").
    pub memory_size_bytes: u64,
    pub message: Option<String>,
    /// The tail of the guest's stderr, base64 as the sandbox sent it (decoded off the
    /// data path, by the writer).
    pub log_base64: Option<String>,
}

/// One stored record: the admin API's and `surge logs --json`'s form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The store's sequence number: later records have larger ones.
    pub seq: i64,
    pub request_id: String,
    pub function: String,
    pub version: u64,
    pub sandbox_pid: Option<u32>,
    pub start_ms: i64,
    pub end_ms: i64,
    pub duration_ms: f64,
    pub cold_start: bool,
    pub init_ms: Option<f64>,
    pub outcome: String,
    pub status: u16,
    pub max_memory_bytes: Option<u64>,
    pub memory_size_bytes: u64,
    pub message: Option<String>,
    /// The guest's stderr (its last `max_log` bytes), lossily UTF-8.
    pub log: String,
}

impl Record {
    /// Whether the invocation failed, however (what `--errors` keeps).
    pub fn failed(&self) -> bool {
        self.outcome != "ok" || self.status >= 400
    }

    fn of(inv: Invocation, max_log: usize) -> Record {
        let log = inv
            .log_base64
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .map(|raw| {
                let tail = &raw[raw.len().saturating_sub(max_log)..];
                String::from_utf8_lossy(tail).into_owned()
            })
            .unwrap_or_default();
        let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        Record {
            seq: 0,
            request_id: inv.request_id,
            function: inv.function,
            version: inv.version,
            sandbox_pid: inv.sandbox_pid,
            start_ms: inv.start_ms,
            end_ms: inv.start_ms + inv.duration.as_millis() as i64,
            duration_ms: ms(inv.duration),
            cold_start: inv.cold,
            init_ms: inv.init.map(ms),
            outcome: inv.outcome.to_string(),
            status: inv.status,
            max_memory_bytes: inv.max_memory_bytes,
            memory_size_bytes: inv.memory_size_bytes,
            message: inv.message,
            log,
        }
    }
}

/// Which records a read wants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub function: String,
    /// Only records that ended at or after this, Unix ms.
    pub since_ms: Option<i64>,
    /// Only failed invocations.
    pub errors: bool,
    /// The last this many (oldest first).
    pub limit: usize,
}

impl Query {
    pub fn matches(&self, r: &Record) -> bool {
        r.function == self.function
            && self.since_ms.is_none_or(|s| r.end_ms >= s)
            && (!self.errors || r.failed())
    }
}

/// The store's figures for `/metrics` and the bounds test.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub records: u64,
    pub bytes: u64,
    /// Dropped on the data path because the writer was behind.
    pub dropped: u64,
    /// Deleted by a bound (count, bytes or age).
    pub pruned: u64,
}

enum Msg {
    Record(Box<Invocation>),
    Barrier(oneshot::Sender<()>),
    Stop(oneshot::Sender<()>),
}

/// Invocations waiting for the writer at most; past it the data path drops the record
/// rather than wait (a burst of ~65k before one commit: the writer is far behind).
const CHANNEL: usize = 65_536;
/// The most records one transaction takes.
const BATCH: usize = 4096;
/// A full disk fails every batch: say so a few times a minute, not at every one.
static RECORDS_WRITE: surge_runtime::ratelimit::RateLimit =
    surge_runtime::ratelimit::RateLimit::new(3, Duration::from_secs(60));
/// After a batch the writer rests this long before it looks again, so that under load the
/// data path's `try_send` finds it not waiting on the channel (no wake-up, no context
/// switch per record) and the next batch is larger. Bounds a follower's and a read's wait.
const BATCH_PAUSE: Duration = Duration::from_millis(10);
/// How often records past their retention are deleted.
const AGE_CHECK: Duration = Duration::from_secs(60);
/// A function over a bound is pruned to this fraction of it, so that pruning runs once
/// per many batches rather than at every one.
const PRUNE_TO: f64 = 0.9;

pub struct Records {
    path: PathBuf,
    tx: SyncSender<Msg>,
    read: Mutex<Connection>,
    follow: broadcast::Sender<Arc<Record>>,
    dropped: AtomicU64,
    shared: Arc<Shared>,
}

/// What the writer publishes for `stats`.
#[derive(Default)]
struct Shared {
    records: AtomicU64,
    bytes: AtomicU64,
    pruned: AtomicU64,
}

fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA busy_timeout = 10000;",
    )?;
    Ok(c)
}

impl Records {
    /// Open (or create) `<state_dir>/logs.db` and start its writer thread.
    pub fn open(state_dir: &Path, bounds: Bounds) -> Result<Arc<Self>, RecordsError> {
        let path = state_dir.join("logs.db");
        let sql = |e: rusqlite::Error| RecordsError::Sql {
            path: path.clone(),
            message: e.to_string(),
        };
        let w = open_conn(&path).map_err(sql)?;
        w.execute_batch(
            "CREATE TABLE IF NOT EXISTS records (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 function TEXT NOT NULL,
                 end_ms INTEGER NOT NULL,
                 failed INTEGER NOT NULL,
                 bytes INTEGER NOT NULL,
                 body TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS records_by_function ON records (function, seq);",
        )
        .map_err(sql)?;
        let read = open_conn(&path).map_err(sql)?;
        let shared = Arc::new(Shared::default());
        let mut writer = Writer::new(w, bounds, shared.clone()).map_err(sql)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(CHANNEL);
        let (follow, _) = broadcast::channel(1024);
        let fanout = follow.clone();
        std::thread::Builder::new()
            .name("surge-records".into())
            .spawn(move || writer.run(rx, fanout))
            .map_err(|e| RecordsError::Sql {
                path: path.clone(),
                message: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Arc::new(Records {
            path,
            tx,
            read: Mutex::new(read),
            follow,
            dropped: AtomicU64::new(0),
            shared,
        }))
    }

    /// Hand an invocation to the writer. Never blocks: a full channel drops it (counted).
    pub fn submit(&self, inv: Invocation) {
        match self.tx.try_send(Msg::Record(Box::new(inv))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Wait until every invocation submitted before this call is stored.
    pub async fn settle(&self) -> Result<(), RecordsError> {
        let (done, wait) = oneshot::channel();
        let stopped = || RecordsError::Stopped {
            path: self.path.clone(),
        };
        // The channel may be full: wait for room off the runtime's threads.
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || tx.send(Msg::Barrier(done)))
            .await
            .map_err(|_| stopped())?
            .map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())
    }

    /// The records `q` asks for, oldest first: every invocation that ended before the call.
    pub async fn query(self: &Arc<Self>, q: Query) -> Result<Vec<Record>, RecordsError> {
        self.settle().await?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.read_now(&q))
            .await
            .map_err(|_| RecordsError::Stopped {
                path: self.path.clone(),
            })?
    }

    fn read_now(&self, q: &Query) -> Result<Vec<Record>, RecordsError> {
        let sql = |e: rusqlite::Error| RecordsError::Sql {
            path: self.path.clone(),
            message: e.to_string(),
        };
        let c = self.read.lock();
        let mut stmt = c
            .prepare_cached(
                "SELECT seq, body FROM records
                 WHERE function = ?1 AND end_ms >= ?2 AND failed >= ?3
                 ORDER BY seq DESC LIMIT ?4",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map(
                params![
                    q.function,
                    q.since_ms.unwrap_or(i64::MIN),
                    q.errors as i64,
                    q.limit.min(i64::MAX as usize) as i64
                ],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
            )
            .map_err(sql)?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, body) = row.map_err(sql)?;
            // A row this version cannot read (written by another) is skipped, not fatal.
            if let Ok(mut r) = serde_json::from_str::<Record>(&body) {
                r.seq = seq;
                out.push(r);
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Every record stored from now on, as it is stored. A follower that falls more than
    /// 1,024 records behind is told how many it missed (`RecvError::Lagged`).
    pub fn follow(&self) -> broadcast::Receiver<Arc<Record>> {
        self.follow.subscribe()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            records: self.shared.records.load(Ordering::Relaxed),
            bytes: self.shared.bytes.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            pruned: self.shared.pruned.load(Ordering::Relaxed),
        }
    }

    /// Store what is queued, then stop the writer (at shutdown).
    pub async fn close(&self) {
        let (done, wait) = oneshot::channel();
        let tx = self.tx.clone();
        let sent = tokio::task::spawn_blocking(move || tx.send(Msg::Stop(done))).await;
        if matches!(sent, Ok(Ok(()))) {
            let _ = wait.await;
        }
    }

    /// The database file and its WAL, bytes (what the bound holds on disk).
    pub fn disk_bytes(&self) -> u64 {
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        size(&self.path) + size(Path::new(&wal))
    }
}

/// Per function: records and bytes stored.
#[derive(Clone, Copy, Default)]
struct Held {
    records: u64,
    bytes: u64,
}

struct Writer {
    conn: Connection,
    bounds: Bounds,
    held: HashMap<String, Held>,
    shared: Arc<Shared>,
    last_age_check_ms: i64,
}

impl Writer {
    fn new(conn: Connection, bounds: Bounds, shared: Arc<Shared>) -> rusqlite::Result<Self> {
        let mut w = Writer {
            conn,
            bounds,
            held: HashMap::new(),
            shared,
            last_age_check_ms: 0,
        };
        w.prune_age(crate::aws::now_ms())?;
        // A smaller bound than the last run's applies at once.
        let names: Vec<String> = w.held.keys().cloned().collect();
        w.prune_bounds(&names)?;
        Ok(w)
    }

    fn recount(&mut self) -> rusqlite::Result<()> {
        self.held.clear();
        let mut stmt = self.conn.prepare(
            "SELECT function, COUNT(*), COALESCE(SUM(bytes), 0) FROM records GROUP BY function",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Held {
                    records: r.get::<_, i64>(1)? as u64,
                    bytes: r.get::<_, i64>(2)? as u64,
                },
            ))
        })?;
        for row in rows {
            let (f, h) = row?;
            self.held.insert(f, h);
        }
        drop(stmt);
        self.publish();
        Ok(())
    }

    fn publish(&self) {
        let (r, b) = self
            .held
            .values()
            .fold((0, 0), |(r, b), h| (r + h.records, b + h.bytes));
        self.shared.records.store(r, Ordering::Relaxed);
        self.shared.bytes.store(b, Ordering::Relaxed);
    }

    fn run(&mut self, rx: Receiver<Msg>, follow: broadcast::Sender<Arc<Record>>) {
        let mut batch: Vec<Record> = Vec::with_capacity(BATCH);
        let mut barriers = Vec::new();
        loop {
            let first = match rx.recv_timeout(AGE_CHECK) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    self.age_check();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut stop = None;
            let mut next = Some(first);
            while let Some(m) = next.take() {
                match m {
                    Msg::Record(inv) => batch.push(Record::of(*inv, self.bounds.max_log)),
                    Msg::Barrier(b) => barriers.push(b),
                    Msg::Stop(s) => {
                        stop = Some(s);
                        break;
                    }
                }
                if batch.len() < BATCH {
                    next = rx.try_recv().ok();
                }
            }
            let committed = !batch.is_empty();
            if committed {
                match self.commit(&mut batch) {
                    Ok(()) => {
                        if follow.receiver_count() == 0 {
                            batch.clear();
                        }
                        for r in batch.drain(..) {
                            let _ = follow.send(Arc::new(r));
                        }
                    }
                    Err(e) => {
                        if RECORDS_WRITE.allow() {
                            tracing::warn!(error = %e, records = batch.len(), "invocation records not stored");
                        }
                        batch.clear();
                    }
                }
            }
            for b in barriers.drain(..) {
                let _ = b.send(());
            }
            self.age_check();
            if let Some(s) = stop {
                let _ = s.send(());
                return;
            }
            // Only after work: an idle writer blocks on the channel, and the first record
            // of a quiet spell is stored at once.
            if committed {
                std::thread::park_timeout(BATCH_PAUSE);
            }
        }
    }

    fn age_check(&mut self) {
        let now = crate::aws::now_ms();
        if now - self.last_age_check_ms >= AGE_CHECK.as_millis() as i64 {
            if let Err(e) = self.prune_age(now) {
                tracing::warn!(error = %e, "invocation records: the age bound was not applied");
            }
        }
    }

    /// Store `batch` in one transaction, setting each record's sequence number, then prune
    /// the functions it took over a bound.
    fn commit(&mut self, batch: &mut [Record]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        let mut added: HashMap<&str, Held> = HashMap::new();
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO records (function, end_ms, failed, bytes, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for r in batch.iter_mut() {
                let body = serde_json::to_string(&*r).expect("a record serializes");
                ins.execute(params![
                    r.function,
                    r.end_ms,
                    r.failed() as i64,
                    body.len() as i64,
                    body
                ])?;
                r.seq = tx.last_insert_rowid();
                let h = added.entry(r.function.as_str()).or_default();
                h.records += 1;
                h.bytes += body.len() as u64;
            }
        }
        tx.commit()?;
        let mut over = Vec::new();
        for (f, a) in added {
            let h = self.held.entry(f.to_string()).or_default();
            h.records += a.records;
            h.bytes += a.bytes;
            if h.records > self.bounds.max_records || h.bytes > self.bounds.max_bytes {
                over.push(f.to_string());
            }
        }
        self.prune_bounds(&over)?;
        self.publish();
        Ok(())
    }

    /// Delete each function's oldest records until it holds at most `PRUNE_TO` of each bound.
    fn prune_bounds(&mut self, functions: &[String]) -> rusqlite::Result<()> {
        let keep_records = (self.bounds.max_records as f64 * PRUNE_TO) as u64;
        let keep_bytes = (self.bounds.max_bytes as f64 * PRUNE_TO) as u64;
        for f in functions {
            let Some(h) = self.held.get(f).copied() else {
                continue;
            };
            if h.records <= self.bounds.max_records && h.bytes <= self.bounds.max_bytes {
                continue;
            }
            // Walk the oldest rows until what is left is under both marks.
            let (mut records, mut bytes, mut last) = (h.records, h.bytes, None);
            {
                let mut stmt = self.conn.prepare_cached(
                    "SELECT seq, bytes FROM records WHERE function = ?1 ORDER BY seq",
                )?;
                let mut rows = stmt.query(params![f])?;
                while records > keep_records || bytes > keep_bytes {
                    let Some(row) = rows.next()? else { break };
                    last = Some(row.get::<_, i64>(0)?);
                    records -= 1;
                    bytes = bytes.saturating_sub(row.get::<_, i64>(1)? as u64);
                }
            }
            if let Some(last) = last {
                let n = self.conn.execute(
                    "DELETE FROM records WHERE function = ?1 AND seq <= ?2",
                    params![f, last],
                )?;
                self.shared.pruned.fetch_add(n as u64, Ordering::Relaxed);
                self.held.insert(f.clone(), Held { records, bytes });
            }
        }
        Ok(())
    }

    fn prune_age(&mut self, now_ms: i64) -> rusqlite::Result<()> {
        self.last_age_check_ms = now_ms;
        let cutoff = now_ms.saturating_sub(self.bounds.retention.as_millis() as i64);
        let n = self
            .conn
            .execute("DELETE FROM records WHERE end_ms < ?1", params![cutoff])?;
        self.shared.pruned.fetch_add(n as u64, Ordering::Relaxed);
        self.recount()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(function: &str, i: u64, outcome: &'static str) -> Invocation {
        Invocation {
            request_id: format!("req-{i}"),
            function: function.into(),
            version: 1,
            sandbox_pid: Some(42),
            start_ms: crate::aws::now_ms(),
            duration: Duration::from_micros(1500),
            cold: i == 0,
            init: (i == 0).then(|| Duration::from_millis(3)),
            outcome,
            status: 200,
            max_memory_bytes: Some(1 << 20),
            memory_size_bytes: 64 << 20,
            message: None,
            log_base64: Some(
                base64::engine::general_purpose::STANDARD.encode(format!("line {i}\n")),
            ),
        }
    }

    fn bounds() -> Bounds {
        Bounds {
            retention: Duration::from_secs(3600),
            max_records: 1000,
            max_bytes: 1 << 20,
            max_log: 4096,
        }
    }

    fn q(function: &str) -> Query {
        Query {
            function: function.into(),
            limit: usize::MAX,
            ..Default::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stores_reads_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let r = Records::open(dir.path(), bounds()).unwrap();
        let mut follower = r.follow();
        for i in 0..5 {
            r.submit(inv("echo", i, if i == 3 { "trap" } else { "ok" }));
        }
        r.submit(inv("other", 9, "ok"));
        let got = r.query(q("echo")).await.unwrap();
        assert_eq!(got.len(), 5);
        assert_eq!(got[0].request_id, "req-0");
        assert!(got[0].cold_start && got[0].init_ms == Some(3.0));
        assert_eq!(got[1].log, "line 1\n");
        assert!(got.windows(2).all(|w| w[0].seq < w[1].seq));
        let first = follower.recv().await.unwrap();
        assert_eq!(first.request_id, "req-0");
        let errors = r
            .query(Query {
                errors: true,
                ..q("echo")
            })
            .await
            .unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].outcome, "trap");
        let last2 = r
            .query(Query {
                limit: 2,
                ..q("echo")
            })
            .await
            .unwrap();
        assert_eq!(
            last2
                .iter()
                .map(|r| r.request_id.as_str())
                .collect::<Vec<_>>(),
            ["req-3", "req-4"]
        );
        r.close().await;
        drop(r);
        let again = Records::open(dir.path(), bounds()).unwrap();
        assert_eq!(again.query(q("echo")).await.unwrap().len(), 5);
        assert_eq!(again.stats().records, 6);
    }

    /// 100,000 invocations over three functions: each stays within its count bound, and
    /// the file within what the bounds allow.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stays_within_its_bounds_under_100k_invocations() {
        let dir = tempfile::tempdir().unwrap();
        let b = Bounds {
            max_records: 5_000,
            max_bytes: 4 << 20,
            ..bounds()
        };
        let r = Records::open(dir.path(), b).unwrap();
        let functions = ["a", "b", "c"];
        for i in 0..100_000u64 {
            let f = functions[(i % 3) as usize];
            // The data path never waits; the test does, so that nothing is dropped.
            if i % 10_000 == 0 {
                r.settle().await.unwrap();
            }
            r.submit(inv(f, i, "ok"));
        }
        r.settle().await.unwrap();
        let s = r.stats();
        assert_eq!(s.dropped, 0);
        assert!(s.records <= 3 * 5_000, "{s:?}");
        assert!(s.records >= 3 * 4_500, "pruned to 90 % of the bound: {s:?}");
        assert!(s.bytes <= 3 * (4 << 20), "{s:?}");
        for f in functions {
            let held = r.query(q(f)).await.unwrap();
            assert!(held.len() <= 5_000, "{f}: {}", held.len());
            // The newest are the ones kept.
            assert_eq!(held.last().unwrap().function, f);
            assert!(held.first().unwrap().seq > 50_000);
        }
        // On disk: the records' JSON plus SQLite's pages and index, within 4x.
        let disk = r.disk_bytes();
        assert!(disk < 4 * s.bytes.max(1), "{disk} bytes on disk for {s:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bytes_bound_and_age_bound() {
        let dir = tempfile::tempdir().unwrap();
        let r = Records::open(
            dir.path(),
            Bounds {
                max_bytes: 20_000,
                ..bounds()
            },
        )
        .unwrap();
        for i in 0..500 {
            r.submit(inv("echo", i, "ok"));
        }
        r.settle().await.unwrap();
        assert!(r.stats().bytes <= 20_000, "{:?}", r.stats());
        r.close().await;
        drop(r);
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Reopened with a retention every record is past: they go at once.
        let r = Records::open(
            dir.path(),
            Bounds {
                retention: Duration::ZERO,
                ..bounds()
            },
        )
        .unwrap();
        assert_eq!(r.stats().records, 0);
        assert!(r.query(q("echo")).await.unwrap().is_empty());
    }
}
