//! The Lambda control plane's writes, so that `aws lambda create-function --zip-file`,
//! boto3 and Terraform deploy to surge:
//!
//! - `CreateFunction` (`POST /2015-03-31/functions`, 201), `UpdateFunctionCode` (`PUT
//!   {name}/code`), `UpdateFunctionConfiguration` (`PUT {name}/configuration`),
//!   `DeleteFunction` (`DELETE {name}`, 204), `PublishVersion` (`POST {name}/versions`,
//!   201) and `ListVersionsByFunction` (`GET {name}/versions`).
//! - A package (`registry/package.rs`) becomes a manifest and a handler; the registry's
//!   all-or-nothing deploy does the rest, in the background: the answer comes at once with
//!   `State: Pending` (a create) or `LastUpdateStatus: InProgress` (an update), and
//!   `GetFunction` follows the deploy to `Active`/`Successful`, or `Failed` with its reason,
//!   which is what `aws lambda wait function-active-v2` and `function-updated-v2` poll.
//! - What is wrong with a request or its package is answered at once, 400
//!   `InvalidParameterValueException` naming the field or zip entry; a second operation while
//!   one runs is 409 `ResourceConflictException`. Nothing is half-deployed.
//!
//! surge numbers every deploy; the live one is `$LATEST` and its number is the version
//! `PublishVersion` answers. Earlier numbers are not kept invocable.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use hyper::{Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::context::Gateway;
use super::errors::{json as json_response, ApiError, HttpResponse};
use super::lambda_control::{configuration, spec_configuration};
use super::operations::Op;
use crate::aws::{function_arn, function_name};
use crate::manifest::FunctionSpec;
use crate::registry::package::{manifest_text, LambdaFields, Package, PackageError};
use crate::registry::DeployError;

/// A control-plane body: a 50 MB zip, base64 (4/3), and the JSON around it.
pub const MAX_BODY: u64 = 70 << 20;

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Code {
    zip_file: Option<String>,
    s3_bucket: Option<String>,
    image_uri: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Environment {
    #[serde(default)]
    variables: std::collections::BTreeMap<String, String>,
}

/// CreateFunction's and UpdateFunctionConfiguration's fields (others are accepted and
/// ignored, as a host with no IAM or VPC has no use for them).
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Request {
    function_name: Option<String>,
    code: Option<Code>,
    handler: Option<String>,
    memory_size: Option<u64>,
    timeout: Option<u64>,
    environment: Option<Environment>,
    runtime: Option<String>,
    description: Option<String>,
    role: Option<String>,
    package_type: Option<String>,
    /// UpdateFunctionCode's own field.
    zip_file: Option<String>,
    s3_bucket: Option<String>,
    image_uri: Option<String>,
}

impl Request {
    fn fields(&self) -> LambdaFields {
        LambdaFields {
            handler: self.handler.clone(),
            memory_mb: self.memory_size,
            timeout_s: self.timeout,
            env: self.environment.as_ref().map(|e| e.variables.clone()),
            runtime: self.runtime.clone(),
            description: self.description.clone(),
            role: self.role.clone(),
        }
    }
}

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(e.to_string())
}

fn zip_bytes(zip: Option<&str>, s3: bool, image: bool) -> Result<Vec<u8>, ApiError> {
    if image {
        return Err(bad(
            "ImageUri: surge runs .wasm packages (PackageType Zip), not container images",
        ));
    }
    if s3 {
        return Err(bad(
            "S3Bucket: surge takes the package inline, as Code.ZipFile",
        ));
    }
    let z = zip.ok_or_else(|| bad("Code.ZipFile is required"))?;
    base64::engine::general_purpose::STANDARD
        .decode(z.trim())
        .map_err(|e| bad(format!("Code.ZipFile is not base64: {e}")))
}

/// The manifest's `handler`, if the text has one.
fn manifest_handler(text: &str) -> Option<String> {
    toml::from_str::<toml::Table>(text)
        .ok()?
        .get("handler")?
        .as_str()
        .map(str::to_string)
}

/// A package's manifest and handler, with Lambda's fields over the `base` manifest (the
/// package's own, else the live version's when `live_base` is given), checked as a deploy
/// would check it.
fn prepare(
    gw: &Gateway,
    name: &str,
    zip: &[u8],
    fields: &LambdaFields,
    live_base: Option<&str>,
) -> Result<(String, Vec<u8>, FunctionSpec), ApiError> {
    fields.check().map_err(bad)?;
    let pkg = Package::open(zip).map_err(bad)?;
    let base = pkg.manifest.as_deref().or(live_base);
    let from_manifest = base.and_then(manifest_handler);
    // A live manifest's handler counts only if the new package has that file.
    let from_manifest =
        from_manifest.filter(|h| pkg.manifest.is_some() || pkg.wasm.contains_key(h.as_str()));
    let (path, wasm) = pkg
        .handler(from_manifest.as_deref(), fields.handler.as_deref())
        .map_err(bad)?;
    let text = manifest_text(base, name, Some(&path), fields).map_err(bad)?;
    let spec = check(gw, name, &text)?;
    Ok((text, wasm.to_vec(), spec))
}

fn check(gw: &Gateway, name: &str, text: &str) -> Result<FunctionSpec, ApiError> {
    let file = format!("{name}.zip:function.toml");
    FunctionSpec::parse(
        std::path::Path::new(&file),
        text,
        &gw.registry.config.defaults,
    )
    .map_err(bad)
}

fn label(name: &str) -> String {
    format!("{name} (Lambda API)")
}

/// Deploy in the background; the operation's state follows it.
fn deploy_in_background(gw: &Arc<Gateway>, name: &str, text: String, wasm: Vec<u8>, create: bool) {
    let (gw, name) = (Arc::clone(gw), name.to_string());
    tokio::spawn(async move {
        match gw.registry.deploy(&label(&name), &text, wasm).await {
            Ok(_) => gw.lambda_ops.set(&name, None),
            Err(e) => {
                tracing::warn!(function = %name, error = %e, "Lambda API deploy failed");
                let reason = e.to_string();
                let op = match gw.lambda_ops.get(&name) {
                    Some(Op::Creating { config }) if create => Op::CreateFailed { config, reason },
                    _ => Op::UpdateFailed { reason },
                };
                gw.lambda_ops.set(&name, Some(op));
            }
        }
    });
}

fn conflict(name: &str, op: &Op) -> ApiError {
    let what = match op {
        Op::Creating { .. } => "being created",
        _ => "being updated",
    };
    ApiError::Conflict(format!(
        "The operation cannot be performed at this time. An update is in progress for resource: {} (it is {what})",
        function_arn(name)
    ))
}

fn answer(status: StatusCode, body: &Value) -> HttpResponse {
    json_response(status, body)
}

/// A control-plane call under `/2015-03-31/functions/` (anything but Invoke): `rest` is
/// the path after the prefix. The body is read first: the signature covers it.
pub async fn handle(
    gw: &Arc<Gateway>,
    rest: &str,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<HttpResponse, ApiError> {
    super::sigv4::precheck(req.headers(), &gw.aws_keys, &gw.admin_token)?;
    let (parts, body) = req.into_parts();
    let body = super::body::read_body(body, &parts.headers, MAX_BODY, || {
        "a Lambda control-plane request".into()
    })
    .await?;
    gw.authorize_lambda(&parts, &body)?;
    if parts.method == hyper::Method::GET && !rest.ends_with("/versions") {
        return super::lambda_control::get(gw, rest, parts.uri.query());
    }
    // surge keeps one version a function: a DeleteFunction that names a version would
    // delete the function, so it is refused.
    if parts.method == Method::DELETE {
        let qualified = rest.contains(':') && !rest.starts_with("arn:")
            || rest.starts_with("arn:") && rest.split(':').count() > 7
            || parts
                .uri
                .query()
                .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("Qualifier=")));
        if qualified {
            return Err(bad(
                "Qualifier: surge keeps one version a function; DeleteFunction without one \
                 deletes the function",
            ));
        }
    }
    write(gw, &parts.method, rest, body).await
}

/// A write under `/2015-03-31/functions/` (`rest` is the path after it).
pub async fn write(
    gw: &Arc<Gateway>,
    method: &Method,
    rest: &str,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let req: Request = if body.iter().all(u8::is_ascii_whitespace) {
        Request::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| bad(format!("the request body: {e}")))?
    };
    let (target, action) = match rest.rsplit_once('/') {
        Some((t, a @ ("code" | "configuration" | "versions"))) => (t, a),
        _ => (rest, ""),
    };
    if rest.is_empty() {
        return match *method {
            Method::POST => create(gw, req),
            ref m => Err(ApiError::MethodNotAllowed(m.to_string())),
        };
    }
    let name = function_name(target).ok_or_else(|| ApiError::FunctionNotFound(target.into()))?;
    match (method, action) {
        (&Method::PUT, "code") => update(gw, name, req, true),
        (&Method::PUT, "configuration") => update(gw, name, req, false),
        (&Method::DELETE, "") => delete(gw, name).await,
        (&Method::POST, "versions") => {
            let v = live(gw, name)?;
            let mut c = configuration(gw, &v);
            let n = v.deployment.version.to_string();
            c["FunctionArn"] = json!(format!("{}:{n}", function_arn(name)));
            c["Version"] = json!(n);
            Ok(answer(StatusCode::CREATED, &c))
        }
        (&Method::GET, "versions") => {
            let v = live(gw, name)?;
            let latest = configuration(gw, &v);
            let mut published = latest.clone();
            let n = v.deployment.version.to_string();
            published["FunctionArn"] = json!(format!("{}:{n}", function_arn(name)));
            published["Version"] = json!(n);
            Ok(answer(
                StatusCode::OK,
                &json!({ "Versions": [latest, published] }),
            ))
        }
        (m, _) => Err(ApiError::MethodNotAllowed(m.to_string())),
    }
}

fn live(
    gw: &Gateway,
    name: &str,
) -> Result<Arc<crate::control::version::VersionControl>, ApiError> {
    gw.registry
        .version_of(name)
        .ok_or_else(|| ApiError::FunctionNotFound(function_arn(name)))
}

fn create(gw: &Arc<Gateway>, req: Request) -> Result<HttpResponse, ApiError> {
    let given = req
        .function_name
        .as_deref()
        .ok_or_else(|| bad("FunctionName is required"))?;
    let name = function_name(given).ok_or_else(|| {
        bad(format!(
            "FunctionName {given:?} is not a name or a function ARN"
        ))
    })?;
    if let Some(pt) = req.package_type.as_deref().filter(|p| *p != "Zip") {
        return Err(bad(format!(
            "PackageType {pt:?}: surge deploys Zip packages"
        )));
    }
    let code = req.code.as_ref().ok_or_else(|| bad("Code is required"))?;
    let zip = zip_bytes(
        code.zip_file.as_deref(),
        code.s3_bucket.is_some(),
        code.image_uri.is_some(),
    )?;
    let exists = gw.registry.version_of(name).is_some();
    if exists || matches!(gw.lambda_ops.get(name), Some(Op::Creating { .. })) {
        return Err(ApiError::Conflict(format!(
            "Function already exist: {name}"
        )));
    }
    let (text, wasm, spec) = prepare(gw, name, &zip, &req.fields(), None)?;
    let sha = surge_runtime::artifact::sha256_hex(&wasm);
    let mut config = spec_configuration(
        &spec,
        spec.kind,
        &sha,
        wasm.len() as u64,
        0,
        crate::aws::now_ms() / 1000,
    );
    config["State"] = json!("Pending");
    config["StateReason"] = json!("The function is being created.");
    config["StateReasonCode"] = json!("Creating");
    config["LastUpdateStatus"] = json!("InProgress");
    gw.lambda_ops
        .begin(
            name,
            Op::Creating {
                config: config.clone(),
            },
        )
        .map_err(|op| conflict(name, &op))?;
    deploy_in_background(gw, name, text, wasm, true);
    Ok(answer(StatusCode::CREATED, &config))
}

/// UpdateFunctionCode (`code`) or UpdateFunctionConfiguration: a new version from the
/// live one's manifest and handler with the request's package or fields over them.
fn update(
    gw: &Arc<Gateway>,
    name: &str,
    req: Request,
    code: bool,
) -> Result<HttpResponse, ApiError> {
    let v = live(gw, name)?;
    let (stored, current_wasm) = gw
        .registry
        .stored(name)
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::FunctionNotFound(function_arn(name)))?;
    let (text, wasm, spec) = if code {
        let zip = zip_bytes(
            req.zip_file.as_deref(),
            req.s3_bucket.is_some(),
            req.image_uri.is_some(),
        )?;
        prepare(
            gw,
            name,
            &zip,
            &LambdaFields::default(),
            Some(&stored.manifest),
        )?
    } else {
        let fields = req.fields();
        fields.check().map_err(bad)?;
        // The handler stays the live one's: a configuration update has no package.
        let text = manifest_text(
            Some(&stored.manifest),
            name,
            None,
            &LambdaFields {
                handler: None,
                ..fields
            },
        )
        .map_err(bad)?;
        let spec = check(gw, name, &text)?;
        (text, current_wasm, spec)
    };
    let _ = spec;
    gw.lambda_ops
        .begin(name, Op::Updating)
        .map_err(|op| conflict(name, &op))?;
    let mut config = configuration(gw, &v);
    config["LastUpdateStatus"] = json!("InProgress");
    config["LastUpdateStatusReason"] = json!("The function is being updated.");
    deploy_in_background(gw, name, text, wasm, false);
    Ok(answer(StatusCode::OK, &config))
}

async fn delete(gw: &Arc<Gateway>, name: &str) -> Result<HttpResponse, ApiError> {
    match gw.lambda_ops.get(name) {
        Some(op @ (Op::Creating { .. } | Op::Updating)) => return Err(conflict(name, &op)),
        Some(Op::CreateFailed { .. }) if gw.registry.version_of(name).is_none() => {
            gw.lambda_ops.set(name, None);
            return Ok(no_content());
        }
        _ => {}
    }
    match gw.registry.remove(name).await {
        Ok(()) => {}
        Err(DeployError::NotFound(_)) => {
            return Err(ApiError::FunctionNotFound(function_arn(name)))
        }
        Err(e) => return Err(e.into()),
    }
    gw.lambda_ops.set(name, None);
    // Its event-invoke config goes with it (queued events back off until their age).
    if let Err(e) = gw.queue.delete_config(name).await {
        tracing::warn!(function = %name, error = %e, "deleting the event-invoke config");
    }
    Ok(no_content())
}

fn no_content() -> HttpResponse {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Default::default())
        .expect("valid response")
}

impl From<PackageError> for ApiError {
    fn from(e: PackageError) -> Self {
        bad(e)
    }
}
