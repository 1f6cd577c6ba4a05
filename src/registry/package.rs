//! A Lambda deployment package: `Code.ZipFile`, a zip holding the `.wasm` and optionally a
//! `function.toml`, with Lambda's own fields laid over it (`MemorySize` → `limits.memory`,
//! `Timeout` → `limits.timeout`, `Environment.Variables` → `[env]`, `Handler` → the `.wasm`
//! in the zip, `Runtime`/`Description`/`Role` → `[lambda]`). Pure: bytes in, a manifest's
//! text and the handler's bytes out, for the registry's all-or-nothing deploy; every error
//! names the entry or field at fault.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};

/// Lambda's limits: 50 MB zipped for a direct upload, 250 MB unzipped.
pub const MAX_ZIPPED: usize = 50 << 20;
pub const MAX_UNZIPPED: u64 = 250 << 20;
/// Entries a package may hold.
pub const MAX_ENTRIES: usize = 10_000;
pub const MANIFEST: &str = "function.toml";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PackageError {
    #[error("Code.ZipFile is not a zip file: {0}")]
    NotZip(String),
    #[error(
        "Code.ZipFile is {size} bytes, over Lambda's limit of {MAX_ZIPPED} for a direct upload"
    )]
    TooLarge { size: usize },
    #[error("Code.ZipFile has {0} entries, over the limit of {MAX_ENTRIES}")]
    TooManyEntries(usize),
    #[error("zip entry {0:?}: a path outside the package")]
    PathEscape(String),
    #[error("zip entry {entry:?}: unpacks past the {MAX_UNZIPPED}-byte limit for a package (a zip bomb?)")]
    Bomb { entry: String },
    #[error("zip entry {entry:?}: {message}")]
    Entry { entry: String, message: String },
    #[error("the package holds no .wasm file")]
    NoWasm,
    #[error("Handler {handler:?}: {message}")]
    Handler { handler: String, message: String },
    #[error("{field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
}

/// What a zip holds that matters: its `function.toml` and its `.wasm` files, by path.
#[derive(Debug, Default)]
pub struct Package {
    pub manifest: Option<String>,
    pub wasm: BTreeMap<String, Vec<u8>>,
}

impl Package {
    /// Read a zip, checking every entry's path and the sizes as they are read (a header's
    /// sizes may lie).
    pub fn open(zip: &[u8]) -> Result<Package, PackageError> {
        if zip.len() > MAX_ZIPPED {
            return Err(PackageError::TooLarge { size: zip.len() });
        }
        let mut a = zip::ZipArchive::new(Cursor::new(zip))
            .map_err(|e| PackageError::NotZip(e.to_string()))?;
        if a.len() > MAX_ENTRIES {
            return Err(PackageError::TooManyEntries(a.len()));
        }
        let mut out = Package::default();
        let mut total: u64 = 0;
        for i in 0..a.len() {
            let mut f = a
                .by_index(i)
                .map_err(|e| PackageError::NotZip(format!("entry {i}: {e}")))?;
            let raw = f.name().to_string();
            let Some(path) = f.enclosed_name() else {
                return Err(PackageError::PathEscape(raw));
            };
            if f.is_dir() {
                continue;
            }
            let path = path.to_string_lossy().replace('\\', "/");
            let wanted = path == MANIFEST || path.ends_with(".wasm");
            total = total.saturating_add(f.size());
            if total > MAX_UNZIPPED {
                return Err(PackageError::Bomb { entry: raw });
            }
            if !wanted {
                continue;
            }
            // Read at most what is left of the limit, plus one byte to see it passed.
            let budget = MAX_UNZIPPED - (total - f.size());
            let mut bytes = Vec::new();
            (&mut f)
                .take(budget + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| PackageError::Entry {
                    entry: raw.clone(),
                    message: e.to_string(),
                })?;
            if bytes.len() as u64 > budget || bytes.len() as u64 != f.size() {
                return Err(PackageError::Bomb { entry: raw });
            }
            if path == MANIFEST {
                let text = String::from_utf8(bytes).map_err(|_| PackageError::Entry {
                    entry: raw,
                    message: "not UTF-8 text".into(),
                })?;
                out.manifest = Some(text);
            } else {
                out.wasm.insert(path, bytes);
            }
        }
        if out.wasm.is_empty() {
            return Err(PackageError::NoWasm);
        }
        Ok(out)
    }

    /// The handler's path in the package and its bytes: the manifest's `handler`, else
    /// Lambda's `Handler` when it names a `.wasm`, else the package's only `.wasm`.
    pub fn handler(
        &self,
        manifest_handler: Option<&str>,
        lambda_handler: Option<&str>,
    ) -> Result<(String, &[u8]), PackageError> {
        let pick = |name: &str, what: &str| {
            let key = name.trim_start_matches("./");
            self.wasm
                .get(key)
                .map(|b| (key.to_string(), b.as_slice()))
                .ok_or_else(|| PackageError::Handler {
                    handler: name.to_string(),
                    message: format!(
                        "{what} names no .wasm in the package (it holds {})",
                        self.wasm.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                })
        };
        if let Some(h) = manifest_handler {
            return pick(h, "function.toml's handler");
        }
        match lambda_handler {
            Some(h) if h.ends_with(".wasm") => pick(h, "it"),
            _ if self.wasm.len() == 1 => {
                let (k, v) = self.wasm.iter().next().expect("one");
                Ok((k.clone(), v.as_slice()))
            }
            h => Err(PackageError::Handler {
                handler: h.unwrap_or("").to_string(),
                message: format!(
                    "the package holds {} .wasm files: Handler must name one ({})",
                    self.wasm.len(),
                    self.wasm.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            }),
        }
    }
}

/// Lambda's fields of CreateFunction / UpdateFunctionConfiguration, as given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LambdaFields {
    pub handler: Option<String>,
    pub memory_mb: Option<u64>,
    pub timeout_s: Option<u64>,
    pub env: Option<BTreeMap<String, String>>,
    pub runtime: Option<String>,
    pub description: Option<String>,
    pub role: Option<String>,
}

/// Lambda's bounds: 128 MB to 10,240 MB, 1 s to 900 s.
pub const MEMORY_MB: (u64, u64) = (128, 10_240);
pub const TIMEOUT_S: (u64, u64) = (1, 900);

impl LambdaFields {
    pub fn check(&self) -> Result<(), PackageError> {
        if let Some(m) = self.memory_mb {
            if !(MEMORY_MB.0..=MEMORY_MB.1).contains(&m) {
                return Err(PackageError::Field {
                    field: "MemorySize",
                    message: format!("{m} is outside {} to {} MB", MEMORY_MB.0, MEMORY_MB.1),
                });
            }
        }
        if let Some(t) = self.timeout_s {
            if !(TIMEOUT_S.0..=TIMEOUT_S.1).contains(&t) {
                return Err(PackageError::Field {
                    field: "Timeout",
                    message: format!("{t} is outside {} to {} seconds", TIMEOUT_S.0, TIMEOUT_S.1),
                });
            }
        }
        Ok(())
    }
}

/// A manifest's text: `base` (the package's or the live version's `function.toml`, if
/// any) with `name`, the handler's path and Lambda's fields laid over it. The registry's
/// deploy then checks the whole of it.
pub fn manifest_text(
    base: Option<&str>,
    name: &str,
    handler: Option<&str>,
    f: &LambdaFields,
) -> Result<String, PackageError> {
    let field = |message: String| PackageError::Field {
        field: "function.toml",
        message,
    };
    let mut t: toml::Table = match base {
        Some(text) => toml::from_str(text).map_err(|e| field(e.to_string()))?,
        None => toml::Table::new(),
    };
    if let Some(other) = t.get("name").and_then(|v| v.as_str()) {
        if other != name {
            return Err(field(format!(
                "it names function {other:?}, and the request names {name:?}"
            )));
        }
    }
    t.insert("name".into(), name.into());
    if let Some(h) = handler {
        t.insert("handler".into(), h.into());
    }
    fn table<'t>(t: &'t mut toml::Table, key: &str) -> Result<&'t mut toml::Table, PackageError> {
        t.entry(key)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| PackageError::Field {
                field: "function.toml",
                message: format!("`{key}` is not a table"),
            })
    }
    if let Some(m) = f.memory_mb {
        table(&mut t, "limits")?.insert("memory".into(), format!("{m}Mi").into());
    }
    if let Some(s) = f.timeout_s {
        table(&mut t, "limits")?.insert("timeout".into(), format!("{s}s").into());
    }
    if let Some(env) = &f.env {
        let e = table(&mut t, "env")?;
        e.clear();
        for (k, v) in env {
            e.insert(k.clone(), v.clone().into());
        }
    }
    for (key, v) in [
        ("runtime", &f.runtime),
        ("description", &f.description),
        ("role", &f.role),
    ] {
        if let Some(v) = v {
            table(&mut t, "lambda")?.insert(key.into(), v.clone().into());
        }
    }
    toml::to_string(&t).map_err(|e| field(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let o = zip::write::SimpleFileOptions::default();
        for (name, bytes) in entries {
            w.start_file(*name, o).unwrap();
            w.write_all(bytes).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn packages_and_their_errors() {
        let p = Package::open(&zip_of(&[("fn.wasm", b"\0asm"), ("README", b"x")])).unwrap();
        assert_eq!(p.handler(None, Some("index.handler")).unwrap().0, "fn.wasm");
        assert_eq!(p.handler(None, None).unwrap().1, b"\0asm");
        let e = p.handler(None, Some("other.wasm")).unwrap_err().to_string();
        assert!(e.contains("\"other.wasm\"") && e.contains("fn.wasm"), "{e}");

        let two = Package::open(&zip_of(&[("a.wasm", b"1"), ("b/c.wasm", b"2")])).unwrap();
        assert_eq!(two.handler(None, Some("b/c.wasm")).unwrap().1, b"2");
        assert!(two
            .handler(None, Some("x.handler"))
            .unwrap_err()
            .to_string()
            .contains("2 .wasm files"));

        assert_eq!(
            Package::open(&zip_of(&[("README", b"x")])).unwrap_err(),
            PackageError::NoWasm
        );
        assert!(matches!(
            Package::open(b"not a zip"),
            Err(PackageError::NotZip(_))
        ));
        assert_eq!(
            Package::open(&zip_of(&[("../evil.wasm", b"x")])).unwrap_err(),
            PackageError::PathEscape("../evil.wasm".into())
        );
        assert_eq!(
            Package::open(&zip_of(&[("/etc/evil.wasm", b"x")])).unwrap_err(),
            PackageError::PathEscape("/etc/evil.wasm".into())
        );
        // 300 MB of zeros deflates to a few hundred KB: refused by its declared size, before
        // anything is unpacked.
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file(
            "bomb.wasm",
            zip::write::SimpleFileOptions::default().large_file(true),
        )
        .unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..300 {
            w.write_all(&zeros).unwrap();
        }
        let bomb = w.finish().unwrap().into_inner();
        assert!(bomb.len() < MAX_ZIPPED);
        assert_eq!(
            Package::open(&bomb).unwrap_err(),
            PackageError::Bomb {
                entry: "bomb.wasm".into()
            }
        );
    }

    #[test]
    fn lambda_fields_over_a_manifest() {
        let f = LambdaFields {
            memory_mb: Some(256),
            timeout_s: Some(3),
            env: Some([("A".to_string(), "1".to_string())].into()),
            runtime: Some("provided.al2023".into()),
            ..Default::default()
        };
        let text = manifest_text(
            Some("name = \"x\"\nhandler = \"old.wasm\"\n[env]\nB = \"2\"\n"),
            "x",
            Some("new.wasm"),
            &f,
        )
        .unwrap();
        let t: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(t["handler"].as_str(), Some("new.wasm"));
        assert_eq!(t["limits"]["memory"].as_str(), Some("256Mi"));
        assert_eq!(t["limits"]["timeout"].as_str(), Some("3s"));
        assert_eq!(
            t["env"].as_table().unwrap().len(),
            1,
            "Environment replaces [env]"
        );
        assert_eq!(t["lambda"]["runtime"].as_str(), Some("provided.al2023"));
        let e = manifest_text(Some("name = \"y\"\nhandler = \"a.wasm\"\n"), "x", None, &f)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"y\"") && e.contains("\"x\""), "{e}");
        let bad = LambdaFields {
            memory_mb: Some(64),
            ..Default::default()
        };
        assert!(bad
            .check()
            .unwrap_err()
            .to_string()
            .starts_with("MemorySize: 64"));
    }
}
