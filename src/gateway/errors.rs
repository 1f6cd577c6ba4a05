//! Every error becomes an HTTP response here, and only here. The same failure looks
//! different on each surface: plain text on function routes, Lambda's error shapes on the
//! Invoke API, JSON on the admin API.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

use crate::control::supervisor::StartError;
use crate::dispatch::DispatchError;
use crate::registry::DeployError;

pub type HttpResponse = Response<Full<Bytes>>;

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
}

impl ApiError {
    fn status(&self, surface: Surface) -> StatusCode {
        use DispatchError as D;
        match self {
            ApiError::NoRoute(_) | ApiError::FunctionNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyRead(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Dispatch(D::Overloaded { .. })
            | ApiError::Dispatch(D::Unavailable { .. }) => match surface {
                Surface::Lambda => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            },
            ApiError::Dispatch(D::Timeout { .. }) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Dispatch(D::SandboxFailed { .. })
            | ApiError::Dispatch(D::ResponseTooLarge { .. }) => StatusCode::BAD_GATEWAY,
            ApiError::Deploy(DeployError::NotFound(_)) => StatusCode::NOT_FOUND,
            ApiError::Deploy(DeployError::Manifest(_))
            | ApiError::Deploy(DeployError::Artifact(_))
            | ApiError::Deploy(DeployError::RouteTaken { .. })
            | ApiError::Deploy(DeployError::Handler { .. })
            | ApiError::Deploy(DeployError::Quota { .. }) => StatusCode::BAD_REQUEST,
            ApiError::Deploy(DeployError::Capacity { .. })
            | ApiError::Deploy(DeployError::Start(StartError::Capacity { .. })) => {
                StatusCode::CONFLICT
            }
            ApiError::Deploy(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `x-amzn-ErrorType` Lambda clients dispatch on.
    fn lambda_type(&self) -> &'static str {
        use DispatchError as D;
        match self {
            ApiError::NoRoute(_) | ApiError::FunctionNotFound(_) => "ResourceNotFoundException",
            ApiError::BodyTooLarge { .. } => "RequestTooLargeException",
            ApiError::BodyRead(_) | ApiError::BadRequest(_) | ApiError::MethodNotAllowed(_) => {
                "InvalidParameterValueException"
            }
            ApiError::Unauthorized => "AccessDeniedException",
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
        ) {
            b = b.header("retry-after", "1");
        }
        let body = match surface {
            Surface::Route => {
                b = b.header("content-type", "text/plain; charset=utf-8");
                format!("{self}\n")
            }
            Surface::Lambda => {
                b = b
                    .header("content-type", "application/json")
                    .header("x-amzn-errortype", self.lambda_type());
                serde_json::json!({ "Type": "User", "message": self.to_string() }).to_string()
            }
            Surface::Admin => {
                b = b.header("content-type", "application/json");
                if status == StatusCode::UNAUTHORIZED {
                    b = b.header("www-authenticate", "Bearer realm=\"surge-admin\"");
                }
                serde_json::json!({ "error": self.to_string() }).to_string()
            }
        };
        b.body(Full::new(Bytes::from(body)))
            .expect("valid response")
    }
}

pub fn text(status: StatusCode, body: impl Into<Bytes>) -> HttpResponse {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(body.into()))
        .expect("valid response")
}

pub fn json(status: StatusCode, value: &impl serde::Serialize) -> HttpResponse {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(value).expect("serializable"),
        )))
        .expect("valid response")
}
