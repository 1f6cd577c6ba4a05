//! A leaf. Who may call the Lambda control plane: a request signed with AWS Signature Version 4 by
//! the host's access key, or one that carries the admin token (`Authorization: Bearer`).
//!
//! With the key's secret known (the default: surge generates the pair), the whole signature
//! is checked: the canonical request (method, path, query, the signed headers, the body's
//! SHA-256), the string to sign and the derived key, as AWS SDKs compute them, and the
//! request's `X-Amz-Date` within 15 minutes of the host's clock. With only an access key id
//! configured, the key id alone is checked. Comparisons are in constant time. Any failure
//! is 403 with the type AWS answers (`MissingAuthenticationTokenException`,
//! `UnrecognizedClientException`, `InvalidSignatureException`), and nothing changes.

use sha2::{Digest, Sha256};

use super::errors::ApiError;

/// The host's key pair.
#[derive(Clone, Debug, Default)]
pub struct Keys {
    pub access_key_id: String,
    /// Empty: only the key id is checked.
    pub secret_access_key: String,
}

/// How far a request's `X-Amz-Date` may be from the host's clock.
const SKEW_S: i64 = 15 * 60;

fn forbidden(error_type: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Forbidden {
        error_type,
        message: message.into(),
    }
}

/// Whether `header` is `Bearer <token>`, compared in time independent of where it differs.
pub fn token_matches(header: Option<&str>, token: &str) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    !given.is_empty() && same(given.as_bytes(), token.as_bytes())
}

/// Equal, in time independent of where they differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

pub fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let inner = Sha256::new()
        .chain_update(k.map(|b| b ^ 0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(k.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// SigV4's signing key for a day, region and service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, service.as_bytes());
    hmac(&k, b"aws4_request")
}

/// `%XX`-encode all but unreserved characters (and `/` when `keep_slash`), as SigV4's
/// canonical URI does to the path as sent.
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
struct Authorization<'a> {
    key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

fn parse(h: &str) -> Option<Authorization<'_>> {
    let rest = h.strip_prefix("AWS4-HMAC-SHA256")?.trim_start();
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed_headers = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let mut c = credential?.split('/');
    let a = Authorization {
        key_id: c.next()?,
        date: c.next()?,
        region: c.next()?,
        service: c.next()?,
        signed_headers: signed_headers?,
        signature: signature?,
    };
    (c.next() == Some("aws4_request")).then_some(a)
}

/// Seconds since the epoch of `YYYYMMDDTHHMMSSZ`.
fn amz_date(s: &str) -> Option<i64> {
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    if s.len() != 16 || s.as_bytes()[8] != b'T' || !s.ends_with('Z') {
        return None;
    }
    let (y, mo, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (h, mi, sec) = (n(9..11)?, n(11..13)?, n(13..15)?);
    // Days from civil (Howard Hinnant), proleptic Gregorian.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec)
}

/// The request as signed: method, the path and query as sent, its headers and body.
pub struct Signed<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a hyper::HeaderMap,
    pub body: &'a [u8],
}

/// What can be checked before the body is read: credentials are there, and name the host's
/// key or carry its admin token. A request that fails this is refused before its body (up
/// to 70 MiB) is buffered.
pub fn precheck(
    headers: &hyper::HeaderMap,
    keys: &Keys,
    admin_token: &str,
) -> Result<(), ApiError> {
    credentials(headers, keys, admin_token).map(drop)
}

/// The credentials' first checks: the admin token (answers None: nothing more to check), or
/// a SigV4 `Authorization` naming the host's key (answers it, for the signature check).
fn credentials<'h>(
    headers: &'h hyper::HeaderMap,
    keys: &Keys,
    admin_token: &str,
) -> Result<Option<Authorization<'h>>, ApiError> {
    let header = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            forbidden(
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            )
        })?;
    if header.starts_with("Bearer ") {
        return if token_matches(Some(header), admin_token) {
            Ok(None)
        } else {
            Err(forbidden(
                "AccessDeniedException",
                "the admin token is wrong",
            ))
        };
    }
    let a = parse(header).ok_or_else(|| {
        forbidden(
            "IncompleteSignatureException",
            "Authorization is neither AWS4-HMAC-SHA256 nor Bearer",
        )
    })?;
    if same(a.key_id.as_bytes(), keys.access_key_id.as_bytes()) {
        Ok(Some(a))
    } else {
        Err(forbidden(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ))
    }
}

/// Whether `r` may use the control plane: signed by `keys`, or bearing `admin_token`.
pub fn authorize(
    r: &Signed<'_>,
    keys: &Keys,
    admin_token: &str,
    now_unix: i64,
) -> Result<(), ApiError> {
    let Some(a) = credentials(r.headers, keys, admin_token)? else {
        return Ok(());
    };
    if keys.secret_access_key.is_empty() {
        return Ok(());
    }
    let stamp = r
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| forbidden("IncompleteSignatureException", "X-Amz-Date is missing"))?;
    let at = amz_date(stamp).ok_or_else(|| {
        forbidden(
            "IncompleteSignatureException",
            format!("X-Amz-Date {stamp:?} is not YYYYMMDDTHHMMSSZ"),
        )
    })?;
    if (now_unix - at).abs() > SKEW_S || !stamp.starts_with(a.date) {
        return Err(forbidden(
            "InvalidSignatureException",
            format!("Signature expired: {stamp} is more than 15 minutes from the host's time"),
        ));
    }
    let mut headers = String::new();
    for name in a.signed_headers.split(';') {
        let values: Vec<&str> = r
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let joined = values
            .iter()
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join(",");
        headers.push_str(&format!("{name}:{joined}\n"));
    }
    let mut pairs: Vec<(&str, &str)> = r
        .query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    // The body's hash is always the host's own: a client's `X-Amz-Content-SHA256` (S3's;
    // Lambda's SDKs do not send it) must agree with it, or a captured signature could carry
    // another body.
    let payload = hex::encode(Sha256::digest(r.body));
    if let Some(h) = r
        .headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
    {
        if !same(h.as_bytes(), payload.as_bytes()) {
            return Err(forbidden(
                "InvalidSignatureException",
                "X-Amz-Content-SHA256 is not the SHA-256 of the body",
            ));
        }
    }
    let canonical = format!(
        "{}\n{}\n{query}\n{headers}\n{}\n{payload}",
        r.method,
        uri_encode(r.path, true),
        a.signed_headers
    );
    let scope = format!("{}/{}/{}/aws4_request", a.date, a.region, a.service);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let key = signing_key(&keys.secret_access_key, a.date, a.region, a.service);
    let want = hex::encode(hmac(&key, to_sign.as_bytes()));
    if same(want.as_bytes(), a.signature.as_bytes()) {
        Ok(())
    } else {
        Err(forbidden(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_and_the_signing_key_match_published_vectors() {
        // RFC 4231, test case 1.
        assert_eq!(
            hex::encode(hmac(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        // AWS's worked example of deriving a signing key.
        assert_eq!(
            hex::encode(signing_key(
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                "20150830",
                "us-east-1",
                "iam"
            )),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
        assert_eq!(amz_date("19700101T000000Z"), Some(0));
        assert_eq!(amz_date("20261202T010203Z"), Some(1_796_173_323));
        assert_eq!(uri_encode("/a%3Ab c", true), "/a%253Ab%20c");
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let keys = Keys {
            access_key_id: "AKID".into(),
            secret_access_key: "secret".into(),
        };
        let mut h = hyper::HeaderMap::new();
        let r = |h: &hyper::HeaderMap| {
            authorize(
                &Signed {
                    method: "GET",
                    path: "/2015-03-31/functions/",
                    query: None,
                    headers: h,
                    body: b"",
                },
                &keys,
                "tok",
                0,
            )
        };
        let kind = |e: ApiError| match e {
            ApiError::Forbidden { error_type, .. } => error_type,
            other => panic!("{other}"),
        };
        assert_eq!(
            kind(r(&h).unwrap_err()),
            "MissingAuthenticationTokenException"
        );
        h.insert("authorization", "Bearer tok".parse().unwrap());
        assert!(r(&h).is_ok());
        h.insert("authorization", "Bearer nope".parse().unwrap());
        assert_eq!(kind(r(&h).unwrap_err()), "AccessDeniedException");
        let signed = |id: &str| {
            format!("AWS4-HMAC-SHA256 Credential={id}/19700101/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=00")
        };
        h.insert("authorization", signed("OTHER").parse().unwrap());
        assert_eq!(kind(r(&h).unwrap_err()), "UnrecognizedClientException");
        h.insert("authorization", signed("AKID").parse().unwrap());
        h.insert("x-amz-date", "19700101T000000Z".parse().unwrap());
        assert_eq!(kind(r(&h).unwrap_err()), "InvalidSignatureException");
    }
}
