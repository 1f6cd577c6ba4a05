//! The record a destination receives when an asynchronous invocation ends, in Lambda's
//! shape (`version`, `timestamp`, `requestContext`, `requestPayload`, `responseContext`,
//! `responsePayload`).

use bytes::Bytes;
use serde_json::{json, Value};

use super::schedule::Condition;
use crate::aws;

/// What the last attempt answered.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    pub status: u16,
    /// Lambda's `functionError` ("Unhandled") when the handler failed.
    pub function_error: Option<String>,
    pub executed_version: String,
    /// The handler's answer, or Lambda's `{"errorMessage", "errorType"}` when it failed.
    pub payload: Bytes,
}

impl Response {
    /// The form kept between attempts (the store's `last` column).
    pub fn to_json(&self) -> String {
        json!({
            "status": self.status,
            "functionError": self.function_error,
            "executedVersion": self.executed_version,
            "payload": String::from_utf8_lossy(&self.payload),
        })
        .to_string()
    }

    pub fn from_json(s: &str) -> Option<Response> {
        let v: Value = serde_json::from_str(s).ok()?;
        Some(Response {
            status: v["status"].as_u64()? as u16,
            function_error: v["functionError"].as_str().map(str::to_string),
            executed_version: v["executedVersion"].as_str()?.to_string(),
            payload: Bytes::from(v["payload"].as_str()?.to_string()),
        })
    }
}

/// A payload as JSON when it is JSON, else as a string (lossy UTF-8).
fn payload_value(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into()))
}

pub struct Ended<'a> {
    pub condition: Condition,
    pub request_id: &'a str,
    pub function: &'a str,
    /// Executions, this one included.
    pub attempts: u32,
    pub payload: &'a [u8],
    /// The last attempt's answer; None when the event never ran (its age ran out first).
    pub response: Option<&'a Response>,
    pub at_ms: i64,
}

pub fn record(e: &Ended<'_>) -> Value {
    let version = e
        .response
        .map(|r| r.executed_version.as_str())
        .unwrap_or("$LATEST");
    let mut r = json!({
        "version": "1.0",
        "timestamp": aws::timestamp(e.at_ms),
        "requestContext": {
            "requestId": e.request_id,
            "functionArn": format!("{}:{version}", aws::function_arn(e.function)),
            "condition": e.condition.as_str(),
            "approximateInvokeCount": e.attempts,
        },
        "requestPayload": payload_value(e.payload),
    });
    if let Some(resp) = e.response {
        let mut ctx = json!({
            "statusCode": resp.status,
            "executedVersion": resp.executed_version,
        });
        if let Some(fe) = &resp.function_error {
            ctx["functionError"] = json!(fe);
        }
        r["responseContext"] = ctx;
        r["responsePayload"] = payload_value(&resp.payload);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambdas_shape() {
        let resp = Response {
            status: 200,
            function_error: Some("Unhandled".into()),
            executed_version: "3".into(),
            payload: Bytes::from_static(
                br#"{"errorMessage":"no","errorType":"Runtime.ExitError"}"#,
            ),
        };
        assert_eq!(Response::from_json(&resp.to_json()), Some(resp.clone()));
        let r = record(&Ended {
            condition: Condition::RetriesExhausted,
            request_id: "rid",
            function: "f",
            attempts: 3,
            payload: b"{\"n\":1}",
            response: Some(&resp),
            at_ms: 0,
        });
        assert_eq!(r["version"], "1.0");
        assert_eq!(r["timestamp"], "1970-01-01T00:00:00.000Z");
        assert_eq!(r["requestContext"]["condition"], "RetriesExhausted");
        assert_eq!(r["requestContext"]["approximateInvokeCount"], 3);
        assert_eq!(
            r["requestContext"]["functionArn"],
            "arn:aws:lambda:us-east-1:000000000000:function:f:3"
        );
        assert_eq!(r["requestPayload"]["n"], 1);
        assert_eq!(r["responseContext"]["functionError"], "Unhandled");
        assert_eq!(r["responsePayload"]["errorType"], "Runtime.ExitError");
        let never = record(&Ended {
            condition: Condition::EventAgeExceeded,
            request_id: "rid",
            function: "f",
            attempts: 0,
            payload: b"not json",
            response: None,
            at_ms: 0,
        });
        assert_eq!(never["requestPayload"], "not json");
        assert!(never.get("responseContext").is_none());
    }
}
