//! The asynchronous side of the Lambda API.
//!
//! - The event-invoke-config calls, with boto3's shapes, under
//!   `/2019-09-25/functions/{name}/event-invoke-config`: `PUT` (Put: overwrites), `POST`
//!   (Update: merges onto what is in force), `GET`, `DELETE` (204), and `GET …/list`
//!   (`FunctionEventInvokeConfigs`, paged by `Marker`/`MaxItems`: one config per
//!   function, since surge serves `$LATEST` only).
//! - [`Deliverer`]: how the event queue (`crate::events`) invokes a function, through the
//!   same path, metrics and judgement as a synchronous Invoke.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::json;
use surge_runtime::Kind;

use super::body::{read_body, sandbox_request};
use super::context::{self, invoke, Gateway, Target};
use super::errors::{json as json_response, ApiError, HttpResponse, Surface};
use crate::aws::{function_arn, function_name};
use crate::events::config::InvokeConfig;
use crate::events::record::Response;
use crate::events::{Attempt, Invoker, QueueError};

pub const PREFIX: &str = "/2019-09-25/functions/";
/// The largest config body accepted (Lambda's are well under a kilobyte).
const MAX_CONFIG_BODY: u64 = 64 << 10;

pub async fn handle(gw: &Arc<Gateway>, rest: &str, req: Request<Incoming>) -> HttpResponse {
    let mut resp = config_call(gw, rest, req)
        .await
        .unwrap_or_else(|e| e.into_response(Surface::Lambda));
    if let Ok(v) = crate::aws::request_id().parse() {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

async fn config_call(
    gw: &Arc<Gateway>,
    rest: &str,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    super::sigv4::precheck(req.headers(), &gw.aws_keys, &gw.admin_token)?;
    let (parts, body) = req.into_parts();
    let body = read_body(body, &parts.headers, MAX_CONFIG_BODY, || {
        "an event-invoke config".into()
    })
    .await?;
    gw.authorize_lambda(&parts, &body)?;
    let rest = super::lambda_control::path_decode(rest).into_owned();
    let (target, list) = match (
        rest.strip_suffix("/event-invoke-config"),
        rest.strip_suffix("/event-invoke-config/list"),
    ) {
        (Some(t), _) => (t, false),
        (_, Some(t)) => (t, true),
        _ => return Err(ApiError::NoRoute(format!("{PREFIX}{rest}"))),
    };
    let name = function_name(target).ok_or_else(|| ApiError::FunctionNotFound(target.into()))?;
    let query = parts.uri.query().unwrap_or("").to_string();
    let qualifier = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "Qualifier")
        .map(|(_, v)| super::lambda_control::path_decode(v).into_owned());
    // surge serves one version per function, as `$LATEST`.
    if let Some(q) = qualifier.filter(|q| q != "$LATEST") {
        return Err(ApiError::NotFound(format!(
            "Function not found: {}:{q} (surge serves $LATEST only)",
            function_arn(name)
        )));
    }
    if gw.registry.version_of(name).is_none() {
        return Err(ApiError::FunctionNotFound(function_arn(name)));
    }
    let arn = function_arn(name);
    let q = &gw.queue;
    let answer = |c: &InvokeConfig, at: i64| json_response(StatusCode::OK, &c.to_lambda(&arn, at));
    match (parts.method.clone(), list) {
        (Method::GET, true) => {
            let items: Vec<_> = q
                .config(name)
                .map(|(c, at, _)| c.to_lambda(&arn, at))
                .into_iter()
                .collect();
            Ok(json_response(
                StatusCode::OK,
                &json!({ "FunctionEventInvokeConfigs": items }),
            ))
        }
        (Method::GET, false) => match q.config(name) {
            Some((c, at, _)) => Ok(answer(&c, at)),
            None => Err(no_config(&arn)),
        },
        (m @ (Method::PUT | Method::POST), false) => {
            let c = InvokeConfig::from_request(&body).map_err(ApiError::BadRequest)?;
            // Update merges onto what is in force (in a cluster, the cluster's), and needs
            // one to be.
            match q.put_config(name, c, m == Method::POST).await {
                Ok(Some((c, at))) => Ok(answer(&c, at)),
                Ok(None) => Err(no_config(&arn)),
                Err(QueueError::Setting(e)) => Err(ApiError::Deploy(e)),
                Err(e) => Err(e.into()),
            }
        }
        (Method::DELETE, false) => {
            let had = match q.delete_config(name).await {
                Ok(had) => had,
                Err(QueueError::Setting(e)) => return Err(ApiError::Deploy(e)),
                Err(e) => return Err(e.into()),
            };
            if had {
                Ok(hyper::Response::builder()
                    .status(StatusCode::NO_CONTENT)
                    .body(Default::default())
                    .expect("valid response"))
            } else {
                Err(no_config(&arn))
            }
        }
        (m, _) => Err(ApiError::MethodNotAllowed(m.to_string())),
    }
}

fn no_config(arn: &str) -> ApiError {
    ApiError::NotFound(format!(
        "The function {arn} doesn't have an EventInvokeConfig"
    ))
}

/// The event queue's way into the functions: a hold, `context::invoke` (the request
/// metrics), and the Invoke API's judgement of the reply.
pub struct Deliverer(pub Arc<Gateway>);

impl Invoker for Deliverer {
    fn invoke(
        &self,
        function: String,
        request_id: String,
        payload: Bytes,
    ) -> Pin<Box<dyn Future<Output = Attempt> + Send>> {
        let gw = Arc::clone(&self.0);
        Box::pin(async move { deliver(&gw, &function, &request_id, payload).await })
    }
}

async fn deliver(gw: &Arc<Gateway>, function: &str, request_id: &str, payload: Bytes) -> Attempt {
    let hold = match context::hold(gw, Target::Name(function)).await {
        Ok(h) => h,
        Err(e) => return Attempt::Throttled(e.to_string()),
    };
    let d = hold.deployment().clone();
    let path = match d.kind {
        Kind::Http => "/".to_string(),
        _ => format!("{}{function}/invocations", super::lambda::PREFIX),
    };
    let (parts, ()) = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("content-type", "application/json")
        .header("x-amzn-requestid", request_id)
        .body(())
        .expect("valid request")
        .into_parts();
    let (failed, body) = match invoke(gw, &d, request_id, sandbox_request(parts, payload)).await {
        Ok(reply) => {
            let (rparts, body) = reply.response.into_parts();
            let failed = super::lambda::judge(&d, reply.outcome, &rparts);
            // A streamed reply runs its guest only as it is read: read it to the end.
            match body.collect().await {
                Ok(b) => (failed, b.to_bytes()),
                Err(e) => (
                    Some(ApiError::BadRequest(format!(
                        "the reply was cut short: {e}"
                    ))),
                    Bytes::new(),
                ),
            }
        }
        Err(e) if e.is_function_error() => (Some(e), Bytes::new()),
        Err(e) => return Attempt::Throttled(e.to_string()),
    };
    drop(hold);
    let executed_version = d.version.to_string();
    match failed {
        None => Attempt::Success(Response {
            status: 200,
            function_error: None,
            executed_version,
            payload: body,
        }),
        // Lambda's `{"errorMessage", "errorType"}`: the body the Invoke API answers with.
        Some(e) => {
            let body = e.into_response(Surface::Lambda).into_body().collect().await;
            Attempt::FunctionError(Response {
                status: 200,
                function_error: Some("Unhandled".into()),
                executed_version,
                payload: body.map(|b| b.to_bytes()).unwrap_or_default(),
            })
        }
    }
}
