//! TOML text to checked values, with errors that name the file, the line and the key.

use std::path::Path;

/// An error in a manifest or config file, rendered as `file:line: key `k`: message`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct FileError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl FileError {
    pub fn new(file: &Path, line: Option<usize>, message: impl Into<String>) -> Self {
        FileError {
            file: file.display().to_string(),
            line,
            message: message.into(),
        }
    }
}

/// Deserialize TOML text, turning serde's error into a [`FileError`] that carries the line and
/// the dotted key the error points at.
pub fn parse_toml<T: serde::de::DeserializeOwned>(file: &Path, text: &str) -> Result<T, FileError> {
    toml::from_str(text).map_err(|e| {
        let (line, key) = match e.span() {
            // A missing key has no place of its own: serde points at the whole table.
            Some(_) if e.message().starts_with("missing field") => (None, None),
            Some(span) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                (Some(line), key_at(text, span.start))
            }
            None => (None, None),
        };
        let msg = e.message().trim().to_string();
        let message = match key {
            Some(k)
                if !msg.contains(&format!("`{k}`"))
                    && !msg.contains(&format!("`{}`", k.rsplit('.').next().unwrap_or(&k))) =>
            {
                format!("key `{k}`: {msg}")
            }
            _ => msg,
        };
        FileError::new(file, line, message)
    })
}

/// The dotted key (`limits.memory`) whose line holds byte offset `pos`.
fn key_at(text: &str, pos: usize) -> Option<String> {
    let line = text[..pos.min(text.len())].matches('\n').count() + 1;
    toml_keys(text).find(|(l, _)| *l == line).map(|(_, k)| k)
}

/// The 1-based line where `dotted` (`limits.memory`) is set, for errors found after parsing.
pub fn line_of_key(text: &str, dotted: &str) -> Option<usize> {
    toml_keys(text).find(|(_, k)| k == dotted).map(|(l, _)| l)
}

/// Every `key =` line of a TOML text as (1-based line, dotted key), the key prefixed by the
/// nearest `[table]` header above it. A light scan for error messages, not a TOML parser:
/// the text has already parsed.
fn toml_keys(text: &str) -> impl Iterator<Item = (usize, String)> + '_ {
    let mut table: Option<String> = None;
    text.lines().enumerate().filter_map(move |(i, line)| {
        let l = line.trim();
        if l.starts_with('[') {
            table = Some(l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
            return None;
        }
        let key = l.split_once('=')?.0.trim().trim_matches('"');
        if key.is_empty() {
            return None;
        }
        Some((
            i + 1,
            match &table {
                Some(t) => format!("{t}.{key}"),
                None => key.to_string(),
            },
        ))
    })
}
