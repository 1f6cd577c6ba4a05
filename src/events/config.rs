//! A function's `FunctionEventInvokeConfig`: Lambda's own JSON shape is both what the API
//! takes and answers and what the store keeps. What it leaves out comes from the
//! manifest's `[async]`, then from Lambda's defaults.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::aws::Destination;
use crate::manifest::sections::{AsyncToml, EVENT_AGE_MAX_S, EVENT_AGE_MIN_S, MAX_RETRY_ATTEMPTS};

/// Lambda's defaults: two retries, six hours.
pub const DEFAULT_RETRIES: u32 = 2;
pub const DEFAULT_MAX_AGE_S: u64 = EVENT_AGE_MAX_S;

/// The request body of `PutFunctionEventInvokeConfig` and `UpdateFunctionEventInvokeConfig`,
/// as stored (absent fields stay absent).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct InvokeConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_retry_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_event_age_in_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_config: Option<DestinationConfig>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DestinationConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<Target>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<Target>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Target {
    /// An ARN; empty or absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
}

impl Target {
    fn parse(&self) -> Result<Option<Destination>, String> {
        match self.destination.as_deref() {
            None | Some("") => Ok(None),
            Some(arn) => Destination::parse(arn).map(Some),
        }
    }
}

impl InvokeConfig {
    /// A request body, checked against Lambda's bounds. The error names the field.
    pub fn from_request(body: &[u8]) -> Result<InvokeConfig, String> {
        let body = if body.iter().all(u8::is_ascii_whitespace) {
            b"{}".as_slice()
        } else {
            body
        };
        let c: InvokeConfig =
            serde_json::from_slice(body).map_err(|e| format!("the request body: {e}"))?;
        c.check()?;
        Ok(c)
    }

    pub fn check(&self) -> Result<(), String> {
        if let Some(r) = self.maximum_retry_attempts {
            if r > MAX_RETRY_ATTEMPTS {
                return Err(format!(
                    "MaximumRetryAttempts {r} is outside 0 to {MAX_RETRY_ATTEMPTS}"
                ));
            }
        }
        if let Some(a) = self.maximum_event_age_in_seconds {
            if !(EVENT_AGE_MIN_S..=EVENT_AGE_MAX_S).contains(&a) {
                return Err(format!(
                    "MaximumEventAgeInSeconds {a} is outside {EVENT_AGE_MIN_S} to {EVENT_AGE_MAX_S}"
                ));
            }
        }
        if let Some(d) = &self.destination_config {
            for (field, t) in [("OnSuccess", &d.on_success), ("OnFailure", &d.on_failure)] {
                if let Some(t) = t {
                    t.parse()
                        .map_err(|m| format!("DestinationConfig.{field}: {m}"))?;
                }
            }
        }
        Ok(())
    }

    /// `UpdateFunctionEventInvokeConfig`: the fields `update` has replace this one's.
    pub fn merged(&self, update: &InvokeConfig) -> InvokeConfig {
        let mut out = self.clone();
        if update.maximum_retry_attempts.is_some() {
            out.maximum_retry_attempts = update.maximum_retry_attempts;
        }
        if update.maximum_event_age_in_seconds.is_some() {
            out.maximum_event_age_in_seconds = update.maximum_event_age_in_seconds;
        }
        if let Some(u) = &update.destination_config {
            let d = out.destination_config.get_or_insert_with(Default::default);
            if u.on_success.is_some() {
                d.on_success = u.on_success.clone();
            }
            if u.on_failure.is_some() {
                d.on_failure = u.on_failure.clone();
            }
        }
        out
    }

    /// The manifest's `[async]` in the API's shape (checked when the manifest was).
    pub fn from_manifest(a: &AsyncToml) -> InvokeConfig {
        let target = |d: &Option<String>| {
            d.as_ref().map(|arn| Target {
                destination: Some(arn.clone()),
            })
        };
        let destinations = DestinationConfig {
            on_success: target(&a.on_success),
            on_failure: target(&a.on_failure),
        };
        InvokeConfig {
            maximum_retry_attempts: a.max_retry_attempts,
            maximum_event_age_in_seconds: a.max_event_age.map(|s| s.0.as_secs()),
            destination_config: (destinations != DestinationConfig::default())
                .then_some(destinations),
        }
    }

    /// Lambda's `FunctionEventInvokeConfig` answer: `LastModified` in Unix seconds, as
    /// the API's timestamps are on the wire.
    pub fn to_lambda(&self, function_arn: &str, modified_ms: i64) -> Value {
        let mut v = serde_json::to_value(self).expect("serializable");
        v["FunctionArn"] = json!(function_arn);
        v["LastModified"] = json!(modified_ms as f64 / 1000.0);
        let d = v
            .as_object_mut()
            .expect("an object")
            .entry("DestinationConfig")
            .or_insert_with(|| json!({}));
        for k in ["OnSuccess", "OnFailure"] {
            d.as_object_mut()
                .expect("an object")
                .entry(k)
                .or_insert_with(|| json!({}));
        }
        v
    }

    /// What the queue follows: this, with Lambda's defaults where it is silent.
    pub fn effective(&self) -> Effective {
        let d = self.destination_config.clone().unwrap_or_default();
        let dest = |t: &Option<Target>| t.as_ref().and_then(|t| t.parse().ok().flatten());
        Effective {
            retries: self.maximum_retry_attempts.unwrap_or(DEFAULT_RETRIES),
            max_age_s: self
                .maximum_event_age_in_seconds
                .unwrap_or(DEFAULT_MAX_AGE_S),
            on_success: dest(&d.on_success),
            on_failure: dest(&d.on_failure),
        }
    }
}

/// A function's asynchronous invocation settings in force.
#[derive(Clone, Debug, PartialEq)]
pub struct Effective {
    /// Retries after a function error: 0 to 2.
    pub retries: u32,
    /// Host seconds an event may wait, retries and throttling included.
    pub max_age_s: u64,
    pub on_success: Option<Destination>,
    pub on_failure: Option<Destination>,
}

impl Default for Effective {
    fn default() -> Self {
        InvokeConfig::default().effective()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_bounds_and_merges() {
        let c = InvokeConfig::from_request(
            br#"{"MaximumRetryAttempts": 1, "DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sqs:us-east-1:000000000000:dlq"}}}"#,
        )
        .unwrap();
        assert_eq!(c.maximum_retry_attempts, Some(1));
        let e = c.effective();
        assert_eq!(
            (e.retries, e.max_age_s, e.on_success.is_none()),
            (1, 21_600, true)
        );
        assert!(matches!(e.on_failure, Some(Destination::Store(_))));

        for (body, names) in [
            (r#"{"MaximumRetryAttempts": 3}"#, "MaximumRetryAttempts 3"),
            (
                r#"{"MaximumEventAgeInSeconds": 59}"#,
                "MaximumEventAgeInSeconds 59",
            ),
            (
                r#"{"DestinationConfig": {"OnSuccess": {"Destination": "arn:aws:sns:us-east-1:0:t"}}}"#,
                "DestinationConfig.OnSuccess",
            ),
            (r#"{"Retries": 1}"#, "unknown field `Retries`"),
            ("{", "the request body"),
        ] {
            let err = InvokeConfig::from_request(body.as_bytes()).unwrap_err();
            assert!(err.contains(names), "{body}: {err}");
        }
        assert_eq!(
            InvokeConfig::from_request(b"").unwrap(),
            InvokeConfig::default()
        );

        let u = InvokeConfig {
            maximum_event_age_in_seconds: Some(60),
            ..Default::default()
        };
        let m = c.merged(&u);
        assert_eq!(m.maximum_retry_attempts, Some(1), "kept");
        assert_eq!(m.maximum_event_age_in_seconds, Some(60), "replaced");
        assert_eq!(m.destination_config, c.destination_config, "kept");

        let out = m.to_lambda("arn", 1500);
        assert_eq!(out["LastModified"], json!(1.5));
        assert_eq!(out["DestinationConfig"]["OnSuccess"], json!({}));
    }
}
