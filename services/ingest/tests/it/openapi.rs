//! Keeps `openapi.json` true: answers validate against its schemas, and its paths and statuses
//! are exactly what the routers serve.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use http::{HeaderMap, StatusCode};
use ingest::error::ApiError;
use serde_json::Value;

use crate::support::{self, send};

pub fn doc() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        serde_json::from_str(include_str!("../../openapi.json")).expect("openapi.json is JSON")
    })
}

fn pointer_escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// The Response object for `path`/`method`/`status`, with a `$ref` followed.
fn response(path: &str, method: &str, status: StatusCode) -> Option<&'static Value> {
    let op = doc().get("paths")?.get(path)?.get(method)?;
    let r = op.get("responses")?.get(status.as_str())?;
    match r.get("$ref").and_then(Value::as_str) {
        Some(reference) => doc().pointer(reference.trim_start_matches('#')),
        None => Some(r),
    }
}

/// Checks one answer against the document. Paths the document does not list must be 404 and
/// methods it does not list on a documented path 405 (both with a JSON `error`, as the
/// document's description says); a documented operation answering an undocumented status
/// fails.
pub fn check_response(
    path: &str,
    method: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &Value,
    text: &str,
) {
    let undocumented = match doc()["paths"].get(path) {
        None => Some(StatusCode::NOT_FOUND),
        Some(ops) if ops.get(method).is_none() => Some(StatusCode::METHOD_NOT_ALLOWED),
        Some(_) => None,
    };
    if let Some(expected) = undocumented {
        assert_eq!(status, expected, "{method} {path} is not in openapi.json");
        assert!(
            body["error"].is_string(),
            "{method} {path} {status}: no JSON error body: {text}"
        );
        return;
    }
    let r = response(path, method, status).unwrap_or_else(|| {
        panic!("{method} {path} answered {status}, which openapi.json does not list")
    });
    for (name, _) in r
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        assert!(
            headers.contains_key(name.as_str()),
            "{status} without documented header {name}"
        );
    }
    let Some(content) = r.get("content").and_then(Value::as_object) else {
        return;
    };
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (media, spec) = content
        .iter()
        .find(|(media, _)| content_type.starts_with(media.as_str()))
        .unwrap_or_else(|| {
            panic!("{method} {path} {status}: content type {content_type:?} not documented")
        });
    if media == "application/json" {
        // Validate with the whole document as root so `#/components/...` references resolve.
        let pointer = format!(
            "#/paths/{}/{method}/responses/{}/content/{}/schema",
            pointer_escape(path),
            status.as_str(),
            pointer_escape(media)
        );
        let pointer = match doc()["paths"][path][method]["responses"][status.as_str()]
            .get("$ref")
            .and_then(Value::as_str)
        {
            Some(reference) => format!("{reference}/content/{}/schema", pointer_escape(media)),
            None => pointer,
        };
        let mut root = doc().clone();
        root["$ref"] = Value::String(pointer);
        let validator = jsonschema::validator_for(&root).expect("openapi.json schemas compile");
        let errors: Vec<String> = validator.iter_errors(body).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{method} {path} {status}: body {body} breaks openapi.json: {errors:?}"
        );
    } else {
        assert!(spec.get("schema").is_some());
        assert!(
            !text.is_empty(),
            "{method} {path} {status}: empty {media} body"
        );
    }
}

/// One sample of every `ApiError` variant; the match makes a new variant a compile error here.
fn every_error() -> Vec<ApiError> {
    let samples = vec![
        ApiError::Unauthorized("x"),
        ApiError::RateLimited {
            retry_after: std::time::Duration::from_secs(1),
        },
        ApiError::UnsupportedMediaType("x".into()),
        ApiError::BodyTooLarge {
            limit: 1,
            after: "",
        },
        ApiError::TooManyEvents { limit: 1 },
        ApiError::BadRequest {
            message: "x".into(),
            details: vec![],
        },
        ApiError::Overloaded,
        ApiError::FirehoseUnavailable {
            record_ids: vec![None],
            reason: "x".into(),
        },
        ApiError::ShuttingDown { events: 1 },
        ApiError::RequestTimeout,
    ];
    for s in &samples {
        match s {
            ApiError::Unauthorized(_)
            | ApiError::RateLimited { .. }
            | ApiError::UnsupportedMediaType(_)
            | ApiError::BodyTooLarge { .. }
            | ApiError::TooManyEvents { .. }
            | ApiError::BadRequest { .. }
            | ApiError::Overloaded
            | ApiError::FirehoseUnavailable { .. }
            | ApiError::ShuttingDown { .. }
            | ApiError::RequestTimeout => {}
        }
    }
    samples
}

#[test]
fn intake_statuses_are_exactly_the_documented_ones() {
    let mut produced: BTreeSet<String> = every_error()
        .iter()
        .map(|e| e.status().as_str().to_owned())
        .collect();
    produced.insert("200".into());
    for path in ["/v1/events", "/"] {
        let documented: BTreeSet<String> = doc()["paths"][path]["post"]["responses"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(documented, produced, "POST {path}");
    }
}

#[tokio::test]
async fn documented_paths_are_served_and_nothing_else() {
    let app = support::app();
    let documented: BTreeSet<(String, String)> = doc()["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (path.clone(), m.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = [
        ("/v1/events", "post"),
        ("/", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ]
    .iter()
    .map(|(p, m)| ((*p).to_owned(), (*m).to_owned()))
    .collect();
    assert_eq!(documented, served);
    // And the routers really serve them (not 404/405), each on its own listener only.
    for (path, method) in &served {
        let public = method == "post";
        let (router, other) = if public {
            (&app.router, &app.admin)
        } else {
            (&app.admin, &app.router)
        };
        let request = || {
            http::Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(path.as_str())
                .header("content-type", "application/json")
                .body(axum::body::Body::from("{}"))
                .unwrap()
        };
        let a = send(router, request()).await;
        assert!(
            a.status != StatusCode::NOT_FOUND && a.status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {}",
            a.status
        );
        use tower::ServiceExt;
        let b = other.clone().oneshot(request()).await.unwrap();
        assert!(
            b.status() == StatusCode::NOT_FOUND || b.status() == StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} must not be served on the other listener"
        );
        // With the JSON body the document promises, on either listener.
        let body = axum::body::to_bytes(b.into_body(), 1 << 16).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{method} {path} on the other listener: not JSON ({e})"));
        assert!(body["error"].is_string(), "{method} {path}: {body}");
    }
}

/// The request side: every content type and `Content-Encoding` the document lists is taken,
/// and ones it does not list are refused with 415.
#[tokio::test]
async fn documented_content_types_and_encodings_are_taken_and_others_refused() {
    use std::io::Write as _;
    let app = support::app();
    let types: Vec<&String> = doc()["components"]["requestBodies"]["Events"]["content"]
        .as_object()
        .expect("request body content types")
        .keys()
        .collect();
    let encodings: Vec<&str> =
        doc()["components"]["parameters"]["ContentEncoding"]["schema"]["enum"]
            .as_array()
            .expect("Content-Encoding values")
            .iter()
            .map(|v| v.as_str().expect("a string"))
            .collect();
    assert!(
        types.len() >= 2 && encodings.len() >= 3,
        "{types:?} {encodings:?}"
    );
    let encode = |encoding: &str, data: &[u8]| match encoding {
        "gzip" | "x-gzip" => support::gzip(data),
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).expect("compress");
            e.finish().expect("finish")
        }
        "zstd" => zstd::encode_all(data, 3).expect("compress"),
        "identity" => data.to_vec(),
        other => panic!("the test does not know how to encode {other}"),
    };
    for content_type in &types {
        for encoding in &encodings {
            let request =
                support::encoded(content_type, encoding, encode(encoding, b"{\"doc\":1}\n"));
            let a = send(&app.router, request).await;
            assert_eq!(
                a.status,
                StatusCode::OK,
                "{content_type} {encoding}: {}",
                a.text
            );
        }
    }
    for (content_type, encoding) in [
        ("text/plain", "identity"),
        ("application/json", "br"),
        ("application/json", "snappy"),
    ] {
        let a = send(
            &app.router,
            support::encoded(content_type, encoding, b"{\"doc\":1}".to_vec()),
        )
        .await;
        assert_eq!(
            a.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type} {encoding}: {}",
            a.text
        );
    }
}
