//! What a `.wasm` file is, whether surge can run it, and its compiled form.
//!
//! - [`inspect`] detects the kind from the binary and checks every import against what the
//!   sandbox links, naming the imports or exports that do not fit.
//! - [`CompileCache`] compiles each handler once per (content hash, engine settings) and keeps
//!   the precompiled artifact on disk; sandboxes map it with `deserialize_file`.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use crate::exec::{event, http, CheckError};
use crate::Kind;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{file}: not a WebAssembly binary (no \\0asm header)")]
    NotWasm { file: String },
    #[error("{file}: {detail}")]
    Invalid { file: String, detail: String },
    #[error("{file}: the manifest says kind = \"{declared}\" but the binary is a{} {detected} handler", if *.detected == "event" { "n" } else { "" })]
    KindMismatch {
        file: String,
        declared: &'static str,
        detected: &'static str,
    },
    #[error("{file}: unsupported imports: {imports}; surge links WASI preview1 for event handlers and WASI 0.2 plus wasi:http 0.2 for http components")]
    UnsupportedImports { file: String, imports: String },
    #[error("{file}: {what}")]
    MissingExport { file: String, what: String },
    #[error("compile cache {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The kind of a binary, from its header: a core module (version 1) is an event handler, a
/// component (layer 1) an http handler.
pub fn detect_kind(file: &str, bytes: &[u8]) -> Result<Kind, ArtifactError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(ArtifactError::NotWasm { file: file.into() });
    }
    // The 4 bytes after the magic: version 1 (core module) or version 0xd, layer 1 (component).
    match bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(Kind::Http),
        [0x01, 0x00, 0x00, 0x00] => Ok(Kind::Event),
        _ => Err(ArtifactError::Invalid {
            file: file.into(),
            detail: "unknown WebAssembly binary version".into(),
        }),
    }
}

/// The binary's kind, which must be the manifest's `declared` kind when it names one.
fn detect_declared_kind(
    file: &str,
    bytes: &[u8],
    declared: Option<Kind>,
) -> Result<Kind, ArtifactError> {
    let kind = detect_kind(file, bytes)?;
    match declared {
        Some(d) if d != kind => Err(ArtifactError::KindMismatch {
            file: file.into(),
            declared: d.as_str(),
            detected: kind.as_str(),
        }),
        _ => Ok(kind),
    }
}

/// A handler that passed every check, compiled for `engine`.
pub struct Checked {
    pub kind: Kind,
    /// The precompiled artifact's bytes.
    pub precompiled: Vec<u8>,
}

/// Detect, compile and link-check `bytes`. `declared` is the manifest's kind, if any.
pub fn inspect(
    engine: &Engine,
    file: &str,
    bytes: &[u8],
    declared: Option<Kind>,
) -> Result<Checked, ArtifactError> {
    let kind = detect_declared_kind(file, bytes, declared)?;
    let invalid = |e: wasmtime::Error| ArtifactError::Invalid {
        file: file.into(),
        detail: format!("{e:#}"),
    };
    match kind {
        Kind::Event => {
            let module = Module::new(engine, bytes).map_err(invalid)?;
            event::check_module(&module).map_err(|c| named(c, file))?;
            Ok(Checked {
                kind,
                precompiled: module.serialize().map_err(invalid)?,
            })
        }
        Kind::Http => {
            let component = Component::new(engine, bytes).map_err(invalid)?;
            http::check_component(engine, &component).map_err(|c| named(c, file))?;
            Ok(Checked {
                kind,
                precompiled: component.serialize().map_err(invalid)?,
            })
        }
    }
}

/// A check's finding, with the file named.
fn named(c: CheckError, file: &str) -> ArtifactError {
    match c {
        CheckError::Imports(list) => ArtifactError::UnsupportedImports {
            file: file.into(),
            imports: list.join(", "),
        },
        CheckError::Export(what) => ArtifactError::MissingExport {
            file: file.into(),
            what,
        },
        CheckError::Other(detail) => ArtifactError::Invalid {
            file: file.into(),
            detail,
        },
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Precompiled artifacts on disk, keyed by content hash and engine compatibility hash.
pub struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, ArtifactError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| ArtifactError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(CompileCache { dir })
    }

    /// Where the artifact for `wasm_sha256` compiled by `engine` lives.
    pub fn path_for(&self, engine: &Engine, kind: Kind, wasm_sha256: &str) -> PathBuf {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_key = format!("{:016x}", h.finish());
        self.dir.join(format!(
            "{wasm_sha256}-{engine_key}.{}.cwasm",
            kind.as_str()
        ))
    }

    /// The artifact for `bytes`: from the cache when present, else checked, compiled and
    /// stored. Returns the kind and the artifact's path. A cached artifact was checked when
    /// it was stored, so a hit skips compilation entirely.
    pub fn get_or_compile(
        &self,
        engine: &Engine,
        file: &str,
        bytes: &[u8],
        declared: Option<Kind>,
    ) -> Result<(Kind, PathBuf), ArtifactError> {
        let kind = detect_declared_kind(file, bytes, declared)?;
        let path = self.path_for(engine, kind, &sha256_hex(bytes));
        if path.exists() {
            return Ok((kind, path));
        }
        let checked = inspect(engine, file, bytes, declared)?;
        write_atomic(&path, &checked.precompiled)?;
        Ok((kind, path))
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ArtifactError> {
    let io = |source| ArtifactError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    write_synced(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Write and fsync before the rename that publishes the file: after a crash, a file under
/// its final name is whole, never a truncated artifact that every later start would trust.
pub fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
