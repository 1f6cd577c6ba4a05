//! The queue's store: SQLite (`<state_dir>/queue.db`, WAL, `synchronous = FULL`) beside the
//! registry's, with its own connections so that queue traffic never waits on a deploy.
//!
//! - `events`: every accepted event not yet ended, with its payload and schedule.
//! - `dead_letters`: the built-in dead-letter store: records of events that ended, kept
//!   for `surge dlq`, with the original payload for a replay.
//! - `invoke_configs`: each function's `FunctionEventInvokeConfig` set through the API.
//!
//! All writes go through one writer thread that commits whatever has piled up in one
//! transaction: under load, one fsync covers many events (group commit). A write is
//! acknowledged only after its commit is durable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use tokio::sync::oneshot;

use super::config::InvokeConfig;

#[derive(Debug, thiserror::Error)]
pub enum QueueStoreError {
    #[error("event queue {path}: {message}")]
    Sql { path: PathBuf, message: String },
    #[error("event queue {path}: the writer thread has stopped")]
    Stopped { path: PathBuf },
}

/// One accepted event as stored (its payload read apart, when it is delivered).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub id: i64,
    pub function: String,
    pub request_id: String,
    pub enqueued_ms: i64,
    pub due_ms: i64,
    pub attempts: u32,
    pub throttles: u32,
    /// The last attempt's answer (`record::Response::to_json`).
    pub last: Option<String>,
}

/// An event to add.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub function: String,
    pub request_id: String,
    pub payload: Bytes,
    pub enqueued_ms: i64,
}

/// An entry of the dead-letter store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Letter {
    pub id: i64,
    pub function: String,
    pub request_id: String,
    pub condition: String,
    pub attempts: u32,
    /// The ARN it was addressed to; empty: no destination was configured.
    pub destination: String,
    pub at_ms: i64,
    /// The destination record, JSON.
    pub record: String,
}

/// How an event leaves the queue: deleted, with a letter and/or a forwarded event (a
/// destination function's record) written in the same transaction.
pub struct Finish {
    pub letter: Option<Letter>,
    pub forward: Option<NewEvent>,
    /// The payload kept with the letter, for a replay.
    pub payload: Bytes,
}

type Work = Box<dyn FnMut(&Transaction<'_>) -> rusqlite::Result<()> + Send>;
type Done = Box<dyn FnOnce(Result<(), String>) + Send>;

struct Job {
    work: Work,
    done: Option<Done>,
}

/// The most jobs one transaction takes.
const BATCH: usize = 512;

pub struct QueueStore {
    path: PathBuf,
    read: Mutex<Connection>,
    writer: std::sync::mpsc::Sender<Job>,
}

fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA busy_timeout = 10000;",
    )?;
    Ok(c)
}

impl QueueStore {
    pub fn open(state_dir: &Path) -> Result<Self, QueueStoreError> {
        let path = state_dir.join("queue.db");
        let sql = |e: rusqlite::Error| QueueStoreError::Sql {
            path: path.clone(),
            message: e.to_string(),
        };
        let mut w = open_conn(&path).map_err(sql)?;
        w.execute_batch(
            "CREATE TABLE IF NOT EXISTS events (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 function TEXT NOT NULL,
                 request_id TEXT NOT NULL,
                 payload BLOB NOT NULL,
                 enqueued_ms INTEGER NOT NULL,
                 due_ms INTEGER NOT NULL,
                 attempts INTEGER NOT NULL DEFAULT 0,
                 throttles INTEGER NOT NULL DEFAULT 0,
                 last TEXT
             );
             CREATE TABLE IF NOT EXISTS dead_letters (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 function TEXT NOT NULL,
                 request_id TEXT NOT NULL,
                 condition TEXT NOT NULL,
                 attempts INTEGER NOT NULL,
                 destination TEXT NOT NULL,
                 at_ms INTEGER NOT NULL,
                 payload BLOB NOT NULL,
                 record TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS dead_letters_by_function ON dead_letters (function, id);
             CREATE TABLE IF NOT EXISTS invoke_configs (
                 function TEXT PRIMARY KEY,
                 config TEXT NOT NULL,
                 modified_ms INTEGER NOT NULL
             );",
        )
        .map_err(sql)?;
        // The writer never checkpoints: a checkpoint fsyncs the database file, and every
        // event waiting for its commit would wait for that too. A thread of its own copies
        // the WAL back, PASSIVE (it never blocks the writer), once a second.
        w.execute_batch("PRAGMA wal_autocheckpoint = 0;")
            .map_err(sql)?;
        let checkpoints = open_conn(&path).map_err(sql)?;
        std::thread::Builder::new()
            .name("surge-queue-checkpoint".into())
            .spawn(move || checkpointer(&checkpoints))
            .map_err(|e| QueueStoreError::Sql {
                path: path.clone(),
                message: format!("starting the checkpoint thread: {e}"),
            })?;
        let read = open_conn(&path).map_err(sql)?;
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("surge-queue-writer".into())
            .spawn(move || writer(&mut w, rx))
            .map_err(|e| QueueStoreError::Sql {
                path: path.clone(),
                message: format!("starting the writer thread: {e}"),
            })?;
        Ok(QueueStore {
            path,
            read: Mutex::new(read),
            writer: tx,
        })
    }

    fn sql(&self, e: impl std::fmt::Display) -> QueueStoreError {
        QueueStoreError::Sql {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Run `f` in the writer's next transaction; resolves once it is committed.
    async fn write<T: Send + 'static>(
        &self,
        mut f: impl FnMut(&Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, QueueStoreError> {
        let slot = Arc::new(Mutex::new(None));
        let put = slot.clone();
        let (ack, done) = oneshot::channel();
        let job = Job {
            work: Box::new(move |tx| {
                *put.lock() = Some(f(tx)?);
                Ok(())
            }),
            done: Some(Box::new(move |r: Result<(), String>| {
                let _ = ack.send(r.map(|()| slot.lock().take()));
            })),
        };
        let stopped = || QueueStoreError::Stopped {
            path: self.path.clone(),
        };
        self.writer.send(job).map_err(|_| stopped())?;
        match done.await.map_err(|_| stopped())? {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(stopped()),
            Err(e) => Err(self.sql(e)),
        }
    }

    /// Run `f` in a coming transaction, without waiting for it (what it records may be
    /// lost to a crash, and nothing depends on it).
    fn write_later(
        &self,
        f: impl FnMut(&Transaction<'_>) -> rusqlite::Result<()> + Send + 'static,
    ) {
        let _ = self.writer.send(Job {
            work: Box::new(f),
            done: None,
        });
    }

    pub async fn insert(&self, events: Vec<NewEvent>) -> Result<Vec<i64>, QueueStoreError> {
        self.write(move |tx| {
            events
                .iter()
                .map(|e| insert(tx, e, e.enqueued_ms))
                .collect()
        })
        .await
    }

    /// An attempt starts: counted before it runs, so an attempt a crash cut short still
    /// counts in `approximateInvokeCount`.
    pub fn started(&self, id: i64) {
        self.write_later(move |tx| {
            tx.execute(
                "UPDATE events SET attempts = attempts + 1 WHERE id = ?1",
                [id],
            )
            .map(drop)
        });
    }

    /// Back into the queue until `due_ms`, with its counts as they now are.
    pub async fn reschedule(
        &self,
        id: i64,
        due_ms: i64,
        attempts: u32,
        throttles: u32,
        last: Option<String>,
    ) -> Result<(), QueueStoreError> {
        self.write(move |tx| {
            tx.execute(
                "UPDATE events SET due_ms = ?2, attempts = ?3, throttles = ?4,
                     last = COALESCE(?5, last)
                 WHERE id = ?1",
                params![id, due_ms, attempts, throttles, last],
            )
            .map(drop)
        })
        .await
    }

    /// Delete event `id`, and write its letter and forwarded event, in one transaction.
    /// Answers the forwarded event's id.
    pub async fn finish(&self, id: i64, f: Finish) -> Result<Option<i64>, QueueStoreError> {
        self.write(move |tx| {
            tx.execute("DELETE FROM events WHERE id = ?1", [id])?;
            if let Some(l) = &f.letter {
                insert_letter(tx, l, &f.payload)?;
            }
            f.forward
                .as_ref()
                .map(|e| insert(tx, e, e.enqueued_ms))
                .transpose()
        })
        .await
    }

    /// Move letters of `function` back into the queue (all, or the one `id`), due now and
    /// with a fresh age: answers the new rows.
    pub async fn replay(
        &self,
        function: &str,
        id: Option<i64>,
        now_ms: i64,
    ) -> Result<Vec<Row>, QueueStoreError> {
        let function = function.to_string();
        self.write(move |tx| {
            let mut rows = Vec::new();
            {
                let mut q = tx.prepare(
                    "SELECT id, request_id, payload FROM dead_letters
                     WHERE function = ?1 AND (?2 IS NULL OR id = ?2) ORDER BY id",
                )?;
                let found = q
                    .query_map(params![function, id], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, Vec<u8>>(2)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                for (letter, request_id, payload) in found {
                    let e = NewEvent {
                        function: function.clone(),
                        request_id: request_id.clone(),
                        payload: Bytes::from(payload),
                        enqueued_ms: now_ms,
                    };
                    let new = insert(tx, &e, now_ms)?;
                    tx.execute("DELETE FROM dead_letters WHERE id = ?1", [letter])?;
                    rows.push(Row {
                        id: new,
                        function: function.clone(),
                        request_id,
                        enqueued_ms: now_ms,
                        due_ms: now_ms,
                        attempts: 0,
                        throttles: 0,
                        last: None,
                    });
                }
            }
            Ok(rows)
        })
        .await
    }

    /// Delete the letters of `function`: answers how many.
    pub async fn purge(&self, function: &str) -> Result<u64, QueueStoreError> {
        let function = function.to_string();
        self.write(move |tx| {
            tx.execute("DELETE FROM dead_letters WHERE function = ?1", [&function])
                .map(|n| n as u64)
        })
        .await
    }

    pub async fn put_config(
        &self,
        function: &str,
        config: Option<(InvokeConfig, i64)>,
    ) -> Result<(), QueueStoreError> {
        let function = function.to_string();
        self.write(move |tx| {
            match &config {
                Some((c, at)) => tx.execute(
                    "INSERT INTO invoke_configs (function, config, modified_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT(function) DO UPDATE SET config = ?2, modified_ms = ?3",
                    params![
                        function,
                        serde_json::to_string(c).expect("serializable"),
                        at
                    ],
                )?,
                None => tx.execute(
                    "DELETE FROM invoke_configs WHERE function = ?1",
                    [&function],
                )?,
            };
            Ok(())
        })
        .await
    }

    /// Every event in the queue (at start: none is in flight then).
    pub fn events(&self) -> Result<Vec<Row>, QueueStoreError> {
        let c = self.read.lock();
        let mut q = c
            .prepare(
                "SELECT id, function, request_id, enqueued_ms, due_ms, attempts, throttles, last
                 FROM events ORDER BY id",
            )
            .map_err(|e| self.sql(e))?;
        let rows = q
            .query_map([], |r| {
                Ok(Row {
                    id: r.get(0)?,
                    function: r.get(1)?,
                    request_id: r.get(2)?,
                    enqueued_ms: r.get(3)?,
                    due_ms: r.get(4)?,
                    attempts: r.get(5)?,
                    throttles: r.get(6)?,
                    last: r.get(7)?,
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    pub fn payload(&self, id: i64) -> Result<Option<Bytes>, QueueStoreError> {
        let c = self.read.lock();
        c.query_row("SELECT payload FROM events WHERE id = ?1", [id], |r| {
            r.get::<_, Vec<u8>>(0)
        })
        .optional()
        .map(|p| p.map(Bytes::from))
        .map_err(|e| self.sql(e))
    }

    /// Letters of `function` after id `after`, oldest first, at most `limit`.
    pub fn letters(
        &self,
        function: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Letter>, QueueStoreError> {
        let c = self.read.lock();
        let mut q = c
            .prepare(
                "SELECT id, function, request_id, condition, attempts, destination, at_ms, record
                 FROM dead_letters WHERE function = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )
            .map_err(|e| self.sql(e))?;
        let rows = q
            .query_map(params![function, after, limit as i64], |r| {
                Ok(Letter {
                    id: r.get(0)?,
                    function: r.get(1)?,
                    request_id: r.get(2)?,
                    condition: r.get(3)?,
                    attempts: r.get(4)?,
                    destination: r.get(5)?,
                    at_ms: r.get(6)?,
                    record: r.get(7)?,
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    /// Letters per function.
    pub fn letter_counts(&self) -> Result<HashMap<String, u64>, QueueStoreError> {
        let c = self.read.lock();
        let mut q = c
            .prepare("SELECT function, COUNT(*) FROM dead_letters GROUP BY function")
            .map_err(|e| self.sql(e))?;
        let rows = q
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    /// The configs set through the API: function → (config, last modified, Unix ms). A
    /// row that does not parse is skipped, with a warning.
    pub fn configs(&self) -> Result<HashMap<String, (InvokeConfig, i64)>, QueueStoreError> {
        let c = self.read.lock();
        let mut q = c
            .prepare("SELECT function, config, modified_ms FROM invoke_configs")
            .map_err(|e| self.sql(e))?;
        let rows = q
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = HashMap::new();
        for row in rows {
            let (f, text, at) = row.map_err(|e| self.sql(e))?;
            match serde_json::from_str::<InvokeConfig>(&text) {
                Ok(c) => {
                    out.insert(f, (c, at));
                }
                Err(e) => {
                    tracing::warn!(function = %f, error = %e, "unreadable event-invoke config skipped")
                }
            }
        }
        Ok(out)
    }
}

fn insert(tx: &Transaction<'_>, e: &NewEvent, due_ms: i64) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO events (function, request_id, payload, enqueued_ms, due_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            e.function,
            e.request_id,
            &e.payload[..],
            e.enqueued_ms,
            due_ms
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

fn insert_letter(tx: &Transaction<'_>, l: &Letter, payload: &[u8]) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO dead_letters (function, request_id, condition, attempts, destination, at_ms, payload, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![l.function, l.request_id, l.condition, l.attempts, l.destination, l.at_ms, payload, l.record],
    )
    .map(drop)
}

/// Copy the WAL back into the database every second, without blocking the writer. The
/// thread ends with the process.
fn checkpointer(conn: &Connection) {
    loop {
        std::thread::park_timeout(std::time::Duration::from_secs(1));
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!(error = %e, "event queue checkpoint");
        }
    }
}

/// The writer thread: one transaction for everything queued since the last commit. When a
/// batch fails, each job is tried again alone, so one bad write fails only itself.
fn writer(conn: &mut Connection, rx: std::sync::mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let run = |conn: &mut Connection, jobs: &mut [Job]| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            for j in jobs.iter_mut() {
                (j.work)(&tx)?;
            }
            tx.commit()
        };
        match run(conn, &mut batch) {
            Ok(()) => {
                for j in batch {
                    if let Some(d) = j.done {
                        d(Ok(()));
                    }
                }
            }
            Err(e) if batch.len() == 1 => {
                tracing::warn!(error = %e, "event queue write failed");
                if let Some(d) = batch.pop().and_then(|j| j.done) {
                    d(Err(e.to_string()));
                }
            }
            Err(_) => {
                for mut j in batch {
                    let r = run(conn, std::slice::from_mut(&mut j));
                    if let Err(e) = &r {
                        tracing::warn!(error = %e, "event queue write failed");
                    }
                    if let Some(d) = j.done {
                        d(r.map_err(|e| e.to_string()));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(f: &str, rid: &str) -> NewEvent {
        NewEvent {
            function: f.into(),
            request_id: rid.into(),
            payload: Bytes::from_static(b"{}"),
            enqueued_ms: 5,
        }
    }

    #[tokio::test]
    async fn events_letters_and_configs_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = QueueStore::open(dir.path()).unwrap();
            let ids = s
                .insert(vec![ev("a", "r1"), ev("a", "r2"), ev("b", "r3")])
                .await
                .unwrap();
            assert_eq!(ids.len(), 3);
            s.started(ids[0]);
            s.reschedule(ids[0], 99, 1, 0, Some("{}".into()))
                .await
                .unwrap();
            let letter = Letter {
                id: 0,
                function: "a".into(),
                request_id: "r2".into(),
                condition: "RetriesExhausted".into(),
                attempts: 3,
                destination: String::new(),
                at_ms: 7,
                record: "{}".into(),
            };
            let fwd = s
                .finish(
                    ids[1],
                    Finish {
                        letter: Some(letter),
                        forward: Some(ev("sink", "r4")),
                        payload: Bytes::from_static(b"{\"x\":1}"),
                    },
                )
                .await
                .unwrap();
            assert!(fwd.is_some());
            s.put_config(
                "a",
                Some((
                    InvokeConfig {
                        maximum_retry_attempts: Some(0),
                        ..Default::default()
                    },
                    11,
                )),
            )
            .await
            .unwrap();
        }
        let s = QueueStore::open(dir.path()).unwrap();
        let rows = s.events().unwrap();
        let names: Vec<_> = rows
            .iter()
            .map(|r| (r.request_id.as_str(), r.attempts, r.due_ms))
            .collect();
        assert_eq!(names, vec![("r1", 1, 99), ("r3", 0, 5), ("r4", 0, 5)]);
        assert_eq!(s.letter_counts().unwrap()["a"], 1);
        assert_eq!(s.configs().unwrap()["a"].1, 11);
        let replayed = s.replay("a", None, 1000).await.unwrap();
        assert_eq!(replayed.len(), 1);
        assert_eq!(
            s.payload(replayed[0].id).unwrap().unwrap(),
            &b"{\"x\":1}"[..]
        );
        assert!(s.letters("a", 0, 10).unwrap().is_empty());
        assert_eq!(s.purge("a").await.unwrap(), 0);
    }
}
