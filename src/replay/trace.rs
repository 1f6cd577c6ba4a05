//! The Azure Functions trace format (Shahrad et al., "Serverless in the Wild", USENIX
//! ATC'20; the data is CC-BY 4.0): invocations per minute per function, memory per app and
//! execution-time percentiles per function. Any file of the schema is read, of any size:
//! functions stream one at a time from the invocations file, so memory does not grow with
//! the number of functions beyond the per-app memory table.
//!
//! - invocations: `HashFunction,HashOwner,HashApp,` then one column per minute (`1..1440`
//!   or `1_minute..`), the count of invocations that started in that minute;
//! - memory: `HashOwner,HashApp,...,AverageAllocatedMb,...`, one row per app;
//! - durations: `HashOwner,HashApp,HashFunction,Average,...,percentile_Average_<p>,...` (ms).
//!
//! Every error names the file, the line and what is wrong with it.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct TraceError {
    pub path: PathBuf,
    /// 1-based; None for the file as a whole.
    pub line: Option<u64>,
    pub message: String,
}

fn error(path: &Path, line: Option<u64>, message: impl Into<String>) -> TraceError {
    TraceError {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

fn reader(path: &Path) -> Result<csv::Reader<File>, TraceError> {
    let f = File::open(path).map_err(|e| error(path, None, format!("cannot open: {e}")))?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(f))
}

fn headers(path: &Path, r: &mut csv::Reader<File>) -> Result<Vec<String>, TraceError> {
    let h = r
        .headers()
        .map_err(|e| error(path, Some(1), format!("unreadable header: {e}")))?;
    Ok(h.iter().map(|s| s.trim().to_string()).collect())
}

fn column(path: &Path, headers: &[String], name: &str) -> Result<usize, TraceError> {
    headers.iter().position(|h| h == name).ok_or_else(|| {
        error(
            path,
            Some(1),
            format!("no column {name:?} in the header (is this the right file?)"),
        )
    })
}

/// The data rows, each with its line, a bad one as an error naming it.
fn rows<'a>(
    path: &'a Path,
    r: &'a mut csv::Reader<File>,
) -> impl Iterator<Item = Result<(csv::StringRecord, Option<u64>), TraceError>> + 'a {
    r.records().map(move |rec| {
        rec.map(|rec| {
            let line = line_of(&rec);
            (rec, line)
        })
        .map_err(|e| {
            error(
                path,
                e.position().map(|p| p.line()),
                format!("unreadable row: {e}"),
            )
        })
    })
}

fn line_of(r: &csv::StringRecord) -> Option<u64> {
    r.position().map(|p| p.line())
}

/// One function's day: invocations per minute, minute 1 first.
#[derive(Clone, Debug)]
pub struct FunctionDay {
    pub function: String,
    pub owner: String,
    pub app: String,
    pub per_minute: Vec<u32>,
}

/// The invocations file, read a function at a time.
pub struct Invocations {
    path: PathBuf,
    records: csv::StringRecordsIntoIter<File>,
    minutes: usize,
}

impl Invocations {
    pub fn open(path: &Path) -> Result<Invocations, TraceError> {
        let mut r = reader(path)?;
        let h = headers(path, &mut r)?;
        for (i, want) in ["HashFunction", "HashOwner", "HashApp"].iter().enumerate() {
            if h.get(i).map(String::as_str) != Some(*want) {
                return Err(error(
                    path,
                    Some(1),
                    format!(
                        "column {} must be {want:?}, found {:?}: an invocations file starts HashFunction,HashOwner,HashApp, then one column per minute",
                        i + 1,
                        h.get(i).map(String::as_str).unwrap_or("")
                    ),
                ));
            }
        }
        let minutes = h.len() - 3;
        if minutes == 0 {
            return Err(error(path, Some(1), "no minute columns after HashApp"));
        }
        Ok(Invocations {
            path: path.to_path_buf(),
            records: r.into_records(),
            minutes,
        })
    }

    /// Minutes in the day (columns after the three hashes).
    pub fn minutes(&self) -> usize {
        self.minutes
    }
}

impl Iterator for Invocations {
    type Item = Result<FunctionDay, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rec = match self.records.next()? {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line());
                return Some(Err(error(&self.path, line, format!("unreadable row: {e}"))));
            }
        };
        let line = line_of(&rec);
        if rec.len() != self.minutes + 3 {
            return Some(Err(error(
                &self.path,
                line,
                format!(
                    "{} columns where the header has {}",
                    rec.len(),
                    self.minutes + 3
                ),
            )));
        }
        let mut per_minute = Vec::with_capacity(self.minutes);
        for (i, v) in rec.iter().skip(3).enumerate() {
            match v.trim().parse::<u32>() {
                Ok(n) => per_minute.push(n),
                Err(_) => {
                    return Some(Err(error(
                        &self.path,
                        line,
                        format!("minute {}: {v:?} is not a count of invocations", i + 1),
                    )))
                }
            }
        }
        Some(Ok(FunctionDay {
            function: rec[0].to_string(),
            owner: rec[1].to_string(),
            app: rec[2].to_string(),
            per_minute,
        }))
    }
}

/// `AverageAllocatedMb` per (owner, app), and the file's median for apps it lacks.
pub struct Memory {
    by_app: HashMap<(String, String), f64>,
    pub median_mb: f64,
}

impl Memory {
    pub fn read(path: &Path) -> Result<Memory, TraceError> {
        let mut r = reader(path)?;
        let h = headers(path, &mut r)?;
        let (owner, app, mb) = (
            column(path, &h, "HashOwner")?,
            column(path, &h, "HashApp")?,
            column(path, &h, "AverageAllocatedMb")?,
        );
        let mut by_app = HashMap::new();
        for row in rows(path, &mut r) {
            let (rec, line) = row?;
            let field = |i: usize| rec.get(i).unwrap_or("").trim();
            let v: f64 = field(mb).parse().map_err(|_| {
                error(
                    path,
                    line,
                    format!("AverageAllocatedMb {:?} is not a number", field(mb)),
                )
            })?;
            if !v.is_finite() || v < 0.0 {
                return Err(error(
                    path,
                    line,
                    format!("AverageAllocatedMb {v} is not a size"),
                ));
            }
            by_app.insert((field(owner).to_string(), field(app).to_string()), v);
        }
        if by_app.is_empty() {
            return Err(error(path, None, "no apps in the memory file"));
        }
        let mut all: Vec<f64> = by_app.values().copied().collect();
        all.sort_by(f64::total_cmp);
        let median_mb = percentile(&all, 50.0);
        Ok(Memory { by_app, median_mb })
    }

    /// The function's app's average memory, or the file's median.
    pub fn of(&self, f: &FunctionDay) -> f64 {
        self.by_app
            .get(&(f.owner.clone(), f.app.clone()))
            .copied()
            .unwrap_or(self.median_mb)
    }
}

/// Execution-time percentiles (ms) per function: `(percentile, ms)` in increasing order.
pub struct Durations {
    by_function: HashMap<(String, String, String), Vec<(f64, f64)>>,
}

impl Durations {
    pub fn read(path: &Path) -> Result<Durations, TraceError> {
        let mut r = reader(path)?;
        let h = headers(path, &mut r)?;
        let keys = (
            column(path, &h, "HashOwner")?,
            column(path, &h, "HashApp")?,
            column(path, &h, "HashFunction")?,
        );
        let pcts: Vec<(usize, f64)> = h
            .iter()
            .enumerate()
            .filter_map(|(i, name)| {
                name.strip_prefix("percentile_Average_")
                    .and_then(|p| p.parse::<f64>().ok())
                    .map(|p| (i, p))
            })
            .collect();
        if pcts.is_empty() {
            return Err(error(
                path,
                Some(1),
                "no percentile_Average_<p> columns in the header (is this the right file?)",
            ));
        }
        let mut by_function = HashMap::new();
        for row in rows(path, &mut r) {
            let (rec, line) = row?;
            let field = |i: usize| rec.get(i).unwrap_or("").trim();
            let mut points = Vec::with_capacity(pcts.len());
            for &(i, p) in &pcts {
                let ms: f64 = field(i).parse().map_err(|_| {
                    error(
                        path,
                        line,
                        format!("{} {:?} is not a duration in ms", h[i], field(i)),
                    )
                })?;
                points.push((p, ms));
            }
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            by_function.insert(
                (
                    field(keys.0).to_string(),
                    field(keys.1).to_string(),
                    field(keys.2).to_string(),
                ),
                points,
            );
        }
        Ok(Durations { by_function })
    }

    pub fn of(&self, f: &FunctionDay) -> Option<&[(f64, f64)]> {
        self.by_function
            .get(&(f.owner.clone(), f.app.clone(), f.function.clone()))
            .map(Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.by_function.len()
    }

    /// The median over functions of their 50th percentile, ms (0 for an empty file): the
    /// execution time of a function the file does not list.
    pub fn median_p50(&self) -> f64 {
        let mut p50: Vec<f64> = self
            .by_function
            .values()
            .filter_map(|pts| pts.iter().find(|(p, _)| *p == 50.0).map(|&(_, ms)| ms))
            .collect();
        p50.sort_by(f64::total_cmp);
        percentile(&p50, 50.0)
    }

    pub fn is_empty(&self) -> bool {
        self.by_function.is_empty()
    }
}

/// The `p`th percentile of sorted values, interpolated linearly between the two nearest
/// ranks (numpy's default), so results compare with a script's.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}
