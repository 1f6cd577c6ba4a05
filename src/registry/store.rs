//! The embedded store of deployments: SQLite (rusqlite, bundled) in the state dir, plus the
//! deployed `.wasm` files as content-addressed blobs beside it.
//!
//! A function version is immutable: its row names the manifest text and the blob's SHA-256, so
//! a restart redeploys exactly what was deployed, even when the source files have changed
//! or are gone.

use std::path::{Path, PathBuf};

use crate::control::vertical::quota::QuotaUpdate;
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};
use surge_runtime::Kind;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store {path}: {source}")]
    Sql {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state store blob {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One deployed function version as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFunction {
    pub name: String,
    pub version: u64,
    /// The manifest's path when it was deployed, for messages only.
    pub manifest_file: String,
    pub manifest: String,
    pub wasm_sha256: String,
    /// The kind detected at deploy: with the hash, it names the compiled artifact. None: a
    /// kind this build does not know; the blob is compiled and its kind detected again.
    pub kind: Option<Kind>,
    pub deployed_at_unix: i64,
}

/// Lambda's concurrency controls of one function, in executions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Concurrency {
    /// `PutFunctionConcurrency`: the most invocations at once (None: no cap).
    pub reserved: Option<u32>,
    /// `PutProvisionedConcurrencyConfig`: executions kept warm (None: none).
    pub provisioned: Option<u32>,
}

pub struct Store {
    db_path: PathBuf,
    blob_dir: PathBuf,
    conn: Mutex<Connection>,
}

impl Store {
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        let blob_dir = state_dir.join("blobs");
        std::fs::create_dir_all(&blob_dir).map_err(|source| StoreError::Io {
            path: blob_dir.clone(),
            source,
        })?;
        let db_path = state_dir.join("surge.db");
        let sql = |source| StoreError::Sql {
            path: db_path.clone(),
            source,
        };
        let conn = Connection::open(&db_path).map_err(sql)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS functions (
                 name TEXT PRIMARY KEY,
                 version INTEGER NOT NULL,
                 manifest_file TEXT NOT NULL,
                 manifest TEXT NOT NULL,
                 wasm_sha256 TEXT NOT NULL,
                 kind TEXT NOT NULL,
                 deployed_at INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS version_counters (
                 name TEXT PRIMARY KEY,
                 last_version INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS quota_pins (
                 name TEXT PRIMARY KEY,
                 memory_bytes INTEGER,
                 cpu_millicores INTEGER
             );
             CREATE TABLE IF NOT EXISTS concurrency (
                 name TEXT PRIMARY KEY,
                 reserved INTEGER,
                 provisioned INTEGER
             );
             CREATE TABLE IF NOT EXISTS cluster_meta (
                 key TEXT PRIMARY KEY,
                 value INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS keepalive_state (
                 name TEXT PRIMARY KEY,
                 policy TEXT NOT NULL,
                 state TEXT NOT NULL
             );",
        )
        .map_err(sql)?;
        Ok(Store {
            db_path,
            blob_dir,
            conn: Mutex::new(conn),
        })
    }

    fn sql(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sql {
            path: self.db_path.clone(),
            source,
        }
    }

    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.blob_dir.join(format!("{sha256}.wasm"))
    }

    /// Write a blob atomically (temp file + rename); an existing blob is kept as is.
    pub fn put_blob(&self, sha256: &str, bytes: &[u8]) -> Result<PathBuf, StoreError> {
        let path = self.blob_path(sha256);
        if path.exists() {
            return Ok(path);
        }
        let tmp = self
            .blob_dir
            .join(format!(".{sha256}.{}.tmp", std::process::id()));
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        surge_runtime::artifact::write_synced(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(path)
    }

    /// The etcd revision the functions table reflects, in a cluster (0: none yet).
    pub fn cluster_revision(&self) -> Result<i64, StoreError> {
        let conn = self.conn.lock();
        conn.query_row(
            "SELECT value FROM cluster_meta WHERE key = 'revision'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map(|v| v.unwrap_or(0))
        .map_err(|e| self.sql(e))
    }

    pub fn set_cluster_revision(&self, revision: i64) -> Result<(), StoreError> {
        self.conn
            .lock()
            .execute(
                "INSERT INTO cluster_meta (key, value) VALUES ('revision', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = ?1",
                params![revision],
            )
            .map(|_| ())
            .map_err(|e| self.sql(e))
    }

    /// The next version number for `name`: versions never repeat, even across removes.
    pub fn next_version(&self, name: &str) -> Result<u64, StoreError> {
        let conn = self.conn.lock();
        let last: Option<i64> = conn
            .query_row(
                "SELECT last_version FROM version_counters WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        Ok(last.unwrap_or(0) as u64 + 1)
    }

    /// Record `f` as the live version of its function, in one transaction.
    pub fn put(&self, f: &StoredFunction) -> Result<(), StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(|e| self.sql(e))?;
        tx.execute(
            "INSERT INTO functions (name, version, manifest_file, manifest, wasm_sha256, kind, deployed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(name) DO UPDATE SET version = ?2, manifest_file = ?3, manifest = ?4,
                 wasm_sha256 = ?5, kind = ?6, deployed_at = ?7",
            params![f.name, f.version as i64, f.manifest_file, f.manifest, f.wasm_sha256, f.kind.map_or("", Kind::as_str), f.deployed_at_unix],
        )
        .map_err(|e| self.sql(e))?;
        tx.execute(
            "INSERT INTO version_counters (name, last_version) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET last_version = MAX(last_version, ?2)",
            params![f.name, f.version as i64],
        )
        .map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))
    }

    pub fn remove(&self, name: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(|e| self.sql(e))?;
        let n = tx
            .execute("DELETE FROM functions WHERE name = ?1", params![name])
            .map_err(|e| self.sql(e))?;
        tx.execute("DELETE FROM quota_pins WHERE name = ?1", params![name])
            .map_err(|e| self.sql(e))?;
        tx.execute("DELETE FROM keepalive_state WHERE name = ?1", params![name])
            .map_err(|e| self.sql(e))?;
        tx.execute("DELETE FROM concurrency WHERE name = ?1", params![name])
            .map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(n > 0)
    }

    /// The quota dimensions a manual resize pinned for `name` (they outlive versions).
    pub fn pins(&self, name: &str) -> Result<QuotaUpdate, StoreError> {
        let conn = self.conn.lock();
        let row: Option<(Option<i64>, Option<i64>)> = conn
            .query_row(
                "SELECT memory_bytes, cpu_millicores FROM quota_pins WHERE name = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        let (m, c) = row.unwrap_or((None, None));
        Ok(QuotaUpdate {
            memory_bytes: m.map(|v| v as u64),
            cpu_millicores: c.map(|v| v as u64),
        })
    }

    pub fn put_pins(&self, name: &str, p: &QuotaUpdate) -> Result<(), StoreError> {
        let conn = self.conn.lock();
        conn.execute(
            "INSERT INTO quota_pins (name, memory_bytes, cpu_millicores) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET memory_bytes = ?2, cpu_millicores = ?3",
            params![
                name,
                p.memory_bytes.map(|v| v as i64),
                p.cpu_millicores.map(|v| v as i64)
            ],
        )
        .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Lambda's reserved and provisioned concurrency set for `name` (they outlive versions).
    pub fn concurrency(&self, name: &str) -> Result<Concurrency, StoreError> {
        let conn = self.conn.lock();
        let row: Option<(Option<i64>, Option<i64>)> = conn
            .query_row(
                "SELECT reserved, provisioned FROM concurrency WHERE name = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        let (r, p) = row.unwrap_or((None, None));
        Ok(Concurrency {
            reserved: r.map(|v| v as u32),
            provisioned: p.map(|v| v as u32),
        })
    }

    pub fn put_concurrency(&self, name: &str, c: &Concurrency) -> Result<(), StoreError> {
        let conn = self.conn.lock();
        conn.execute(
            "INSERT INTO concurrency (name, reserved, provisioned) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET reserved = ?2, provisioned = ?3",
            params![name, c.reserved, c.provisioned],
        )
        .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// The keep-alive policy's state last kept for `name`, if it was kept for `policy` (a
    /// row that does not parse reads as none: the policy starts afresh).
    pub fn keepalive_state(
        &self,
        name: &str,
        policy: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let conn = self.conn.lock();
        let row: Option<String> = conn
            .query_row(
                "SELECT state FROM keepalive_state WHERE name = ?1 AND policy = ?2",
                params![name, policy],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        Ok(row.and_then(|s| serde_json::from_str(&s).ok()))
    }

    /// Keep the policies' states, in one transaction: (function, policy, state).
    pub fn put_keepalive_states(
        &self,
        rows: &[(String, String, serde_json::Value)],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(|e| self.sql(e))?;
        for (name, policy, state) in rows {
            tx.execute(
                "INSERT INTO keepalive_state (name, policy, state) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO UPDATE SET policy = ?2, state = ?3",
                params![name, policy, state.to_string()],
            )
            .map_err(|e| self.sql(e))?;
        }
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(())
    }

    pub fn list(&self) -> Result<Vec<StoredFunction>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare(
                "SELECT name, version, manifest_file, manifest, wasm_sha256, kind, deployed_at
                 FROM functions ORDER BY name",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StoredFunction {
                    name: r.get(0)?,
                    version: r.get::<_, i64>(1)? as u64,
                    manifest_file: r.get(2)?,
                    manifest: r.get(3)?,
                    wasm_sha256: r.get(4)?,
                    kind: r.get::<_, String>(5)?.parse().ok(),
                    deployed_at_unix: r.get(6)?,
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, version: u64) -> StoredFunction {
        StoredFunction {
            name: name.into(),
            version,
            manifest_file: "functions/a/function.toml".into(),
            manifest: "name = \"a\"".into(),
            wasm_sha256: "ab".repeat(32),
            kind: Some(Kind::Event),
            deployed_at_unix: 1,
        }
    }

    #[test]
    fn survives_reopen_and_versions_never_repeat() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            assert_eq!(s.next_version("a").unwrap(), 1);
            s.put(&f("a", 1)).unwrap();
            s.put(&f("b", 1)).unwrap();
            assert_eq!(s.next_version("a").unwrap(), 2);
            s.put(&f("a", 2)).unwrap();
            assert!(s.remove("b").unwrap());
            assert!(!s.remove("b").unwrap());
            let p = s.put_blob("cafe", b"\0asm").unwrap();
            assert_eq!(std::fs::read(p).unwrap(), b"\0asm");
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.list().unwrap(), vec![f("a", 2)]);
        assert_eq!(
            s.next_version("b").unwrap(),
            2,
            "a removed name keeps counting"
        );
    }

    #[test]
    fn a_kind_this_build_does_not_know_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.put(&f("a", 1)).unwrap();
        s.put(&f("b", 1)).unwrap();
        s.conn
            .lock()
            .execute("UPDATE functions SET kind = 'grpc' WHERE name = 'a'", [])
            .unwrap();
        let listed = s.list().unwrap();
        assert_eq!(
            listed,
            vec![
                StoredFunction {
                    kind: None,
                    ..f("a", 1)
                },
                f("b", 1)
            ]
        );
    }
}
