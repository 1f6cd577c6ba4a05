//! What surge's AWS-shaped surfaces share, a leaf: the one account and region every ARN
//! names, the ARN forms surge answers with and accepts, Lambda's destinations, and
//! Lambda's two timestamp formats.

/// The account and region every ARN names: surge is one account in one region.
pub const ACCOUNT: &str = "000000000000";
pub const REGION: &str = "us-east-1";

pub fn function_arn(name: &str) -> String {
    format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}")
}

/// A name out of `name`, `name:qualifier`, a function ARN or a partial ARN
/// (`123456789012:function:name`).
pub fn function_name(target: &str) -> Option<&str> {
    let name = if target.starts_with("arn:") {
        target.split(':').nth(6)?
    } else if let Some((_, rest)) = target.split_once(":function:") {
        rest.split(':').next()?
    } else {
        target.split(':').next()?
    };
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

/// Where an asynchronous invocation's record goes on success or failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Another surge function, invoked asynchronously with the record.
    Function(String),
    /// surge's own durable dead-letter store, under the SQS queue ARN the caller named
    /// (surge has no SQS: a record addressed to a queue is kept where `surge dlq` reads it).
    Store(String),
}

impl Destination {
    /// A destination ARN as Lambda's `DestinationConfig` carries it.
    pub fn parse(arn: &str) -> Result<Destination, String> {
        let parts: Vec<&str> = arn.split(':').collect();
        match parts.as_slice() {
            ["arn", _, "lambda", _, _, "function", name, ..]
                if !name.is_empty() && parts.len() <= 8 =>
            {
                Ok(Destination::Function(name.to_string()))
            }
            ["arn", _, "sqs", _, _, queue] if !queue.is_empty() => {
                Ok(Destination::Store(arn.to_string()))
            }
            ["arn", _, service, ..] => Err(format!(
                "destination {arn:?}: surge delivers records to a Lambda function ARN, or keeps \
                 them in its dead-letter store under an SQS queue ARN; {service} destinations \
                 are not supported"
            )),
            _ => Err(format!(
                "destination {arn:?} is not an ARN (arn:aws:lambda:{REGION}:{ACCOUNT}:function:NAME \
                 or arn:aws:sqs:{REGION}:{ACCOUNT}:QUEUE)"
            )),
        }
    }

    pub fn arn(&self) -> String {
        match self {
            Destination::Function(name) => function_arn(name),
            Destination::Store(arn) => arn.clone(),
        }
    }
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm, proleptic
/// Gregorian): (year, month, day).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

fn hms(unix_ms: i64) -> (i64, i64, i64, i64, i64, i64, i64) {
    let secs = unix_ms.div_euclid(1000);
    let (y, mo, d) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    (
        y,
        mo,
        d,
        s / 3600,
        s / 60 % 60,
        s % 60,
        unix_ms.rem_euclid(1000),
    )
}

/// `YYYY-MM-DDThh:mm:ss.000+0000`, the `LastModified` of a function configuration.
pub fn last_modified(unix: i64) -> String {
    let (y, mo, d, h, mi, s, _) = hms(unix * 1000);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.000+0000")
}

/// `YYYY-MM-DDThh:mm:ss.mmmZ`, a destination record's `timestamp`.
pub fn timestamp(unix_ms: i64) -> String {
    let (y, mo, d, h, mi, s, ms) = hms(unix_ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A request id in the UUID form Lambda's are: unique within a host's life (a counter)
/// and, with the clock and pid mixed in, across restarts.
pub fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let x = (t as u64) ^ n.rotate_left(32) ^ (std::process::id() as u64);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        x >> 32,
        (x >> 16) & 0xffff,
        x & 0xfff,
        n & 0xfff,
        t as u64 & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_dates() {
        assert_eq!(function_name("echo"), Some("echo"));
        assert_eq!(function_name("echo:$LATEST"), Some("echo"));
        assert_eq!(function_name(&function_arn("echo")), Some("echo"));
        assert_eq!(function_name("123456789012:function:echo:3"), Some("echo"));
        assert_eq!(function_name("a/b"), None);
        assert_eq!(last_modified(0), "1970-01-01T00:00:00.000+0000");
        assert_eq!(last_modified(1_796_165_120), "2026-12-01T22:45:20.000+0000");
        assert_eq!(last_modified(951_782_400), "2000-02-29T00:00:00.000+0000");
        assert_eq!(timestamp(951_782_400_042), "2000-02-29T00:00:00.042Z");
    }

    #[test]
    fn destinations() {
        let f = Destination::parse(&function_arn("sink")).unwrap();
        assert_eq!(f, Destination::Function("sink".into()));
        assert_eq!(f.arn(), function_arn("sink"));
        let q = "arn:aws:sqs:us-east-1:000000000000:failed";
        assert_eq!(Destination::parse(q).unwrap(), Destination::Store(q.into()));
        let sns = Destination::parse("arn:aws:sns:us-east-1:000000000000:t").unwrap_err();
        assert!(sns.contains("sns destinations are not supported"), "{sns}");
        assert!(Destination::parse("sink")
            .unwrap_err()
            .contains("not an ARN"));
        assert!(Destination::parse("arn:aws:lambda:us-east-1:0:function:").is_err());
    }
}
