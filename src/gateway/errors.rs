//! Every error becomes an HTTP response here, and only here: host errors and the guest's
//! own failures alike. The same failure looks different on each surface: plain text on
//! function routes, Lambda's error shapes on the Invoke API, JSON on the admin API.

use crate::dispatch::stream::ReplyBody;
use bytes::Bytes;
use hyper::{Response, StatusCode};
use surge_runtime::exec::Outcome;

use crate::control::supervisor::StartError;
use crate::dispatch::DispatchError;
use crate::events::QueueError;
use crate::registry::catalog::CatalogError;
use crate::registry::DeployError;

/// Marks an answer refused for the function's reserved concurrency.
#[derive(Clone, Copy, Debug)]
pub struct Throttled;

pub type HttpResponse = Response<ReplyBody>;

/// Which API a request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    Route,
    Lambda,
    Admin,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no function serves {0}")]
    NoRoute(String),
    #[error("Function not found: {0}")]
    FunctionNotFound(String),
    #[error("request body is over the limit of {limit} bytes for {what}")]
    BodyTooLarge { what: String, limit: u64 },
    #[error("reading the request body: {0}")]
    BodyRead(String),
    #[error("missing or wrong admin token")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Records(#[from] crate::observe::records::RecordsError),
    /// A resource other than a function is missing (its message says which).
    #[error("{0}")]
    NotFound(String),
    /// Credentials missing or not the host's (AWS answers 403 with this type).
    #[error("{message}")]
    Forbidden {
        error_type: &'static str,
        message: String,
    },
    /// The resource exists already, or an update of it is under way.
    #[error("{0}")]
    Conflict(String),
    /// No provisioned concurrency is configured (Lambda's own 404 type for it).
    #[error("{0}")]
    ProvisionedNotFound(String),
    /// The handler ran and failed: the function's error, not the host's.
    #[error("function {function} failed ({}): {message}", failure.as_str())]
    Guest {
        function: String,
        failure: GuestFailure,
        message: String,
    },
}

/// How a handler failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestFailure {
    /// The sandbox's classification (never `Outcome::Ok`).
    Outcome(Outcome),
    /// An http handler, invoked through the Lambda API, answered with this non-2xx status.
    HttpStatus(u16),
}

impl GuestFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            GuestFailure::Outcome(o) => o.as_str(),
            GuestFailure::HttpStatus(_) => "http error",
        }
    }

    /// Lambda's `errorType` for it.
    fn lambda_error_type(self) -> &'static str {
        match self {
            GuestFailure::Outcome(Outcome::Timeout) => "Sandbox.Timedout",
            GuestFailure::Outcome(Outcome::Memory) => "Runtime.OutOfMemory",
            GuestFailure::Outcome(Outcome::Trap) => "Runtime.Trap",
            GuestFailure::Outcome(_) => "Runtime.ExitError",
            GuestFailure::HttpStatus(_) => "Runtime.HttpError",
        }
    }
}

/// The status a host error of the data path answers with on `surface` (Lambda's API has
/// its own for overload; the function's timeout is its error there, see `status`).
pub fn dispatch_status(e: &DispatchError, surface: Surface) -> StatusCode {
    use DispatchError as D;
    match e {
        D::Reserved { .. } | D::Overloaded { .. } | D::Unavailable { .. } => match surface {
            Surface::Lambda => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        },
        D::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        D::SandboxFailed { .. } | D::ResponseTooLarge { .. } => StatusCode::BAD_GATEWAY,
    }
}

/// The status a function's route answers a guest's failure with.
pub fn guest_status(outcome: Outcome) -> StatusCode {
    match outcome {
        Outcome::Timeout => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    /// Whether Lambda reports this as the function's error (200 with
    /// `X-Amz-Function-Error`) rather than the service's: a handler failure, or a timeout.
    pub fn is_function_error(&self) -> bool {
        matches!(
            self,
            ApiError::Guest { .. } | ApiError::Dispatch(DispatchError::Timeout { .. })
        )
    }

    fn status(&self, surface: Surface) -> StatusCode {
        if surface == Surface::Lambda && self.is_function_error() {
            return StatusCode::OK;
        }
        match self {
            ApiError::NoRoute(_)
            | ApiError::FunctionNotFound(_)
            | ApiError::NotFound(_)
            | ApiError::ProvisionedNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Dispatch(d) => dispatch_status(d, surface),
            ApiError::Queue(QueueError::Full(_)) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Queue(_) | ApiError::Records(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyRead(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Deploy(DeployError::NotFound(_)) => StatusCode::NOT_FOUND,
            ApiError::Deploy(DeployError::Manifest(_))
            | ApiError::Deploy(DeployError::Artifact(_))
            | ApiError::Deploy(DeployError::RouteTaken { .. })
            | ApiError::Deploy(DeployError::Handler { .. })
            | ApiError::Deploy(DeployError::Quota { .. }) => StatusCode::BAD_REQUEST,
            ApiError::Deploy(DeployError::Capacity { .. })
            | ApiError::Deploy(DeployError::Start(StartError::Capacity { .. }))
            | ApiError::Deploy(DeployError::Catalog(
                CatalogError::Conflict { .. } | CatalogError::Contended { .. },
            )) => StatusCode::CONFLICT,
            ApiError::Deploy(DeployError::Catalog(CatalogError::Unavailable { .. })) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Deploy(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Guest {
                failure: GuestFailure::Outcome(o),
                ..
            } => guest_status(*o),
            ApiError::Guest { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `x-amzn-ErrorType` Lambda clients dispatch on.
    fn lambda_type(&self) -> &'static str {
        use DispatchError as D;
        match self {
            ApiError::NoRoute(_) | ApiError::FunctionNotFound(_) | ApiError::NotFound(_) => {
                "ResourceNotFoundException"
            }
            ApiError::Queue(QueueError::Full(_)) | ApiError::Dispatch(D::Reserved { .. }) => {
                "TooManyRequestsException"
            }
            ApiError::ProvisionedNotFound(_) => "ProvisionedConcurrencyConfigNotFoundException",
            ApiError::BodyTooLarge { .. } => "RequestTooLargeException",
            ApiError::BodyRead(_) | ApiError::BadRequest(_) | ApiError::MethodNotAllowed(_) => {
                "InvalidParameterValueException"
            }
            ApiError::Unauthorized => "AccessDeniedException",
            ApiError::Forbidden { error_type, .. } => error_type,
            ApiError::Conflict(_) => "ResourceConflictException",
            ApiError::Dispatch(D::Overloaded { .. })
            | ApiError::Dispatch(D::Unavailable { .. }) => "TooManyRequestsException",
            ApiError::Dispatch(D::ResponseTooLarge { .. }) => "ResourceConflictException",
            _ => "ServiceException",
        }
    }

    pub fn into_response(self, surface: Surface) -> HttpResponse {
        let status = self.status(surface);
        let mut b = Response::builder().status(status);
        if matches!(
            &self,
            ApiError::Dispatch(DispatchError::Overloaded { .. })
                | ApiError::Dispatch(DispatchError::Unavailable { .. })
                | ApiError::Dispatch(DispatchError::Reserved { .. })
                | ApiError::Queue(QueueError::Full(_))
        ) {
            b = b.header("retry-after", "1");
        }
        if let ApiError::Dispatch(DispatchError::Reserved { .. }) = &self {
            // A node of a cluster sheds such a forwarded request to the next node instead
            // (`forward::shed_throttled`). An extension: never sent.
            b = b.extension(Throttled);
        }
        let body = match surface {
            Surface::Route => {
                b = b.header("content-type", "text/plain; charset=utf-8");
                format!("{self}\n")
            }
            Surface::Lambda if self.is_function_error() => {
                b = b
                    .header("content-type", "application/json")
                    .header("x-amz-function-error", "Unhandled");
                let (message, error_type) = match &self {
                    ApiError::Guest {
                        failure, message, ..
                    } => (message.clone(), failure.lambda_error_type()),
                    // A timeout the host enforced is the same to Lambda as the sandbox's own.
                    other => (
                        other.to_string(),
                        GuestFailure::Outcome(Outcome::Timeout).lambda_error_type(),
                    ),
                };
                serde_json::json!({ "errorMessage": message, "errorType": error_type }).to_string()
            }
            Surface::Lambda => {
                b = b
                    .header("content-type", "application/json")
                    .header("x-amzn-errortype", self.lambda_type());
                let mut body = serde_json::json!({ "Type": "User", "message": self.to_string() });
                // Lambda says why it throttled.
                if let ApiError::Dispatch(DispatchError::Reserved { .. }) = &self {
                    body["Reason"] = "ReservedFunctionConcurrentInvocationLimitExceeded".into();
                }
                body.to_string()
            }
            Surface::Admin => {
                b = b.header("content-type", "application/json");
                if status == StatusCode::UNAUTHORIZED {
                    b = b.header("www-authenticate", "Bearer realm=\"surge-admin\"");
                }
                serde_json::json!({ "error": self.to_string() }).to_string()
            }
        };
        b.body(ReplyBody::from(Bytes::from(body)))
            .expect("valid response")
    }
}

pub fn text(status: StatusCode, body: impl Into<Bytes>) -> HttpResponse {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(ReplyBody::from(body.into()))
        .expect("valid response")
}

pub fn json(status: StatusCode, value: &impl serde::Serialize) -> HttpResponse {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(ReplyBody::from(Bytes::from(
            serde_json::to_vec(value).expect("serializable"),
        )))
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// The body's shape: plain text, or the JSON object's keys.
    #[derive(Debug, PartialEq)]
    enum Shape {
        Text,
        Json(&'static [&'static str]),
    }

    fn guest(failure: GuestFailure) -> ApiError {
        ApiError::Guest {
            function: "f".into(),
            failure,
            message: "it broke".into(),
        }
    }

    fn dispatch(e: DispatchError) -> ApiError {
        ApiError::Dispatch(e)
    }

    #[test]
    fn every_error_on_every_surface() {
        use Surface::*;
        let overloaded = || {
            dispatch(DispatchError::Overloaded {
                function: "f".into(),
                reason: "full".into(),
            })
        };
        let timeout = || {
            dispatch(DispatchError::Timeout {
                function: "f".into(),
                timeout_ms: 10,
            })
        };
        const LAMBDA_HOST: Shape = Shape::Json(&["Type", "message"]);
        const LAMBDA_FN: Shape = Shape::Json(&["errorMessage", "errorType"]);
        const ADMIN: Shape = Shape::Json(&["error"]);
        // (error, surface, status, headers that must be there (value or "" for any), shape)
        let reserved = || {
            dispatch(DispatchError::Reserved {
                function: "f".into(),
                reserved: 0,
            })
        };
        #[allow(clippy::type_complexity)]
        let table: Vec<(ApiError, Surface, u16, &[(&str, &str)], Shape)> = vec![
            (
                reserved(),
                Lambda,
                429,
                &[
                    ("x-amzn-errortype", "TooManyRequestsException"),
                    ("retry-after", "1"),
                ],
                Shape::Json(&["Type", "message", "Reason"]),
            ),
            (reserved(), Route, 503, &[("retry-after", "1")], Shape::Text),
            (
                ApiError::Queue(QueueError::Full(5)),
                Lambda,
                429,
                &[("x-amzn-errortype", "TooManyRequestsException")],
                LAMBDA_HOST,
            ),
            (
                ApiError::ProvisionedNotFound("none".into()),
                Lambda,
                404,
                &[(
                    "x-amzn-errortype",
                    "ProvisionedConcurrencyConfigNotFoundException",
                )],
                LAMBDA_HOST,
            ),
            (
                ApiError::NotFound("no config".into()),
                Lambda,
                404,
                &[("x-amzn-errortype", "ResourceNotFoundException")],
                LAMBDA_HOST,
            ),
            (ApiError::NoRoute("/x".into()), Route, 404, &[], Shape::Text),
            (
                ApiError::FunctionNotFound("f".into()),
                Lambda,
                404,
                &[("x-amzn-errortype", "ResourceNotFoundException")],
                LAMBDA_HOST,
            ),
            (
                ApiError::BodyTooLarge {
                    what: "f".into(),
                    limit: 1,
                },
                Route,
                413,
                &[],
                Shape::Text,
            ),
            (
                ApiError::BodyTooLarge {
                    what: "f".into(),
                    limit: 1,
                },
                Lambda,
                413,
                &[("x-amzn-errortype", "RequestTooLargeException")],
                LAMBDA_HOST,
            ),
            (
                ApiError::Unauthorized,
                Admin,
                401,
                &[("www-authenticate", "Bearer realm=\"surge-admin\"")],
                ADMIN,
            ),
            (
                ApiError::MethodNotAllowed("PUT".into()),
                Admin,
                405,
                &[],
                ADMIN,
            ),
            (
                overloaded(),
                Route,
                503,
                &[("retry-after", "1")],
                Shape::Text,
            ),
            (
                overloaded(),
                Lambda,
                429,
                &[
                    ("retry-after", "1"),
                    ("x-amzn-errortype", "TooManyRequestsException"),
                ],
                LAMBDA_HOST,
            ),
            (timeout(), Route, 504, &[], Shape::Text),
            (
                timeout(),
                Lambda,
                200,
                &[("x-amz-function-error", "Unhandled")],
                LAMBDA_FN,
            ),
            (
                dispatch(DispatchError::SandboxFailed {
                    function: "f".into(),
                    reason: "died".into(),
                }),
                Route,
                502,
                &[],
                Shape::Text,
            ),
            (
                dispatch(DispatchError::ResponseTooLarge {
                    function: "f".into(),
                    limit: 1,
                }),
                Lambda,
                502,
                &[("x-amzn-errortype", "ResourceConflictException")],
                LAMBDA_HOST,
            ),
            (
                guest(GuestFailure::Outcome(Outcome::Timeout)),
                Route,
                504,
                &[("content-type", "text/plain; charset=utf-8")],
                Shape::Text,
            ),
            (
                guest(GuestFailure::Outcome(Outcome::Trap)),
                Route,
                500,
                &[],
                Shape::Text,
            ),
            (
                guest(GuestFailure::Outcome(Outcome::Memory)),
                Lambda,
                200,
                &[
                    ("x-amz-function-error", "Unhandled"),
                    ("content-type", "application/json"),
                ],
                LAMBDA_FN,
            ),
            (
                guest(GuestFailure::HttpStatus(418)),
                Lambda,
                200,
                &[("x-amz-function-error", "Unhandled")],
                LAMBDA_FN,
            ),
            (
                ApiError::Deploy(DeployError::NotFound("f".into())),
                Admin,
                404,
                &[],
                ADMIN,
            ),
            (ApiError::BadRequest("no".into()), Admin, 400, &[], ADMIN),
        ];
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for (e, surface, status, headers, shape) in table {
            let what = format!("{e:?} on {surface:?}");
            let function_error = e.is_function_error();
            let r = e.into_response(surface);
            assert_eq!(r.status().as_u16(), status, "{what}");
            for (h, v) in headers {
                let got = r.headers().get(*h).map(|v| v.to_str().unwrap().to_string());
                assert!(got.is_some(), "{what}: header {h} missing");
                if !v.is_empty() {
                    assert_eq!(got.as_deref(), Some(*v), "{what}: header {h}");
                }
            }
            if surface != Lambda || !function_error {
                assert!(
                    r.headers().get("x-amz-function-error").is_none(),
                    "{what}: a host error is not the function's"
                );
            }
            let body = rt.block_on(r.into_body().collect()).unwrap().to_bytes();
            match shape {
                Shape::Text => {
                    let t = std::str::from_utf8(&body).unwrap();
                    assert!(t.ends_with('\n') && !t.starts_with('{'), "{what}: {t:?}");
                }
                Shape::Json(keys) => {
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let mut got: Vec<&str> =
                        v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
                    got.sort();
                    let mut want = keys.to_vec();
                    want.sort();
                    assert_eq!(got, want, "{what}");
                }
            }
        }
    }

    #[test]
    fn guest_messages() {
        let e = guest(GuestFailure::Outcome(Outcome::Trap));
        assert_eq!(e.to_string(), "function f failed (trap): it broke");
        let r = guest(GuestFailure::Outcome(Outcome::Error)).into_response(Surface::Lambda);
        let body = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(r.into_body().collect())
            .unwrap()
            .to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["errorMessage"], "it broke");
        assert_eq!(v["errorType"], "Runtime.ExitError");
    }
}
