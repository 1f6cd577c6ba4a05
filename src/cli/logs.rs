//! `surge logs <fn>`: a function's invocation records, as Lambda's log lines (`START`, the
//! guest's stderr, `END`, `REPORT` with duration, billed duration, memory and the cold
//! start's init time) or as JSON, and `--follow` over the admin API's server-sent events.

use anyhow::{anyhow, Context};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;

use super::client::{admin_stream, Target};
use crate::observe::records::Record;

pub struct LogsArgs<'a> {
    pub name: &'a str,
    pub follow: bool,
    /// A span back from now (`10m`), as the admin API takes it.
    pub since: Option<&'a str>,
    pub errors: bool,
    pub json: bool,
}

/// Lambda bills a duration rounded up to the millisecond.
fn billed_ms(duration_ms: f64) -> u64 {
    duration_ms.ceil().max(1.0) as u64
}

/// A record as Lambda's log lines, each stamped with its time.
pub fn lines(r: &Record) -> String {
    let at = |ms: i64| crate::aws::timestamp(ms);
    let mut out = format!(
        "{} START RequestId: {} Version: {}\n",
        at(r.start_ms),
        r.request_id,
        r.version
    );
    for l in r.log.lines() {
        out.push_str(&format!("{} {l}\n", at(r.end_ms)));
    }
    out.push_str(&format!(
        "{} END RequestId: {}\n",
        at(r.end_ms),
        r.request_id
    ));
    let mib = |b: u64| b.div_ceil(1 << 20);
    let mut report = format!(
        "{} REPORT RequestId: {}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB",
        at(r.end_ms),
        r.request_id,
        r.duration_ms,
        billed_ms(r.duration_ms),
        mib(r.memory_size_bytes),
    );
    if let Some(m) = r.max_memory_bytes {
        report.push_str(&format!("\tMax Memory Used: {} MB", mib(m)));
    }
    if r.cold_start {
        report.push_str(&format!(
            "\tInit Duration: {:.2} ms\tCold Start: yes",
            r.init_ms.unwrap_or(0.0)
        ));
    }
    if let Some(pid) = r.sandbox_pid {
        report.push_str(&format!("\tSandbox: {pid}"));
    }
    if r.failed() {
        report.push_str(&format!("\tStatus: {} ({})", r.outcome, r.status));
        if let Some(m) = &r.message {
            report.push_str(&format!("\tError: {m}"));
        }
    }
    out.push_str(&report);
    out.push('\n');
    out
}

fn print(r: &Record, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).expect("a record serializes"));
    } else {
        print!("{}", lines(r));
    }
}

pub async fn run(t: &Target, a: &LogsArgs<'_>) -> anyhow::Result<()> {
    let mut query = vec![];
    if let Some(s) = a.since {
        query.push(format!("since={s}"));
    }
    if a.errors {
        query.push("errors=true".into());
    }
    if a.follow {
        query.push("follow=true".into());
    }
    let path = format!("/admin/v1/functions/{}/logs?{}", a.name, query.join("&"));
    let mut body = admin_stream(t, Method::GET, &path, &[], Bytes::new()).await?;
    if !a.follow {
        let b = body.collect().await?.to_bytes();
        #[derive(serde::Deserialize)]
        struct Page {
            records: Vec<Record>,
        }
        let page: Page = serde_json::from_slice(&b).context("reading the records")?;
        for r in &page.records {
            print(r, a.json);
        }
        return Ok(());
    }
    // Server-sent events: one `data:` line per record, events apart by a blank line.
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = pending.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event);
            let kind = text
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("");
            let data = text.lines().find_map(|l| l.strip_prefix("data: "));
            match (kind, data) {
                ("record", Some(d)) => {
                    let r: Record = serde_json::from_str(d).context("reading a record")?;
                    print(&r, a.json);
                }
                ("lagged", Some(n)) => {
                    eprintln!("surge logs: {n} records were missed (the reader fell behind)")
                }
                _ => {}
            }
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
    Err(anyhow!("the server closed the stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_as_lambda_writes_them() {
        let r = Record {
            seq: 7,
            request_id: "abc".into(),
            function: "echo".into(),
            version: 3,
            sandbox_pid: Some(99),
            start_ms: 0,
            end_ms: 7,
            duration_ms: 6.2,
            cold_start: true,
            init_ms: Some(3.5),
            outcome: "ok".into(),
            status: 200,
            max_memory_bytes: Some(1_500_000),
            memory_size_bytes: 64 << 20,
            message: None,
            log: "one\ntwo\n".into(),
        };
        let text = lines(&r);
        let l: Vec<&str> = text.lines().collect();
        assert_eq!(
            l[0],
            "1970-01-01T00:00:00.000Z START RequestId: abc Version: 3"
        );
        assert_eq!(l[1], "1970-01-01T00:00:00.007Z one");
        assert_eq!(l[3], "1970-01-01T00:00:00.007Z END RequestId: abc");
        assert_eq!(
            l[4],
            "1970-01-01T00:00:00.007Z REPORT RequestId: abc\tDuration: 6.20 ms\tBilled Duration: 7 ms\tMemory Size: 64 MB\tMax Memory Used: 2 MB\tInit Duration: 3.50 ms\tCold Start: yes\tSandbox: 99"
        );
        let failed = Record {
            outcome: "trap".into(),
            status: 500,
            message: Some("unreachable".into()),
            cold_start: false,
            ..r
        };
        assert!(lines(&failed).ends_with("\tSandbox: 99\tStatus: trap (500)\tError: unreachable\n"));
    }
}
