//! OpenTelemetry trace export through the built binary, against a real OTLP/HTTP collector
//! started here (an axum server decoding `ExportTraceServiceRequest` protobufs): the request
//! span continues the caller's `traceparent`, the `PutRecordBatch` call has a span of its own,
//! the spans still buffered at SIGTERM are flushed before exit, and bad OTLP settings are
//! reported without stopping the service.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use tokio::sync::mpsc;

use crate::binary::{Ingest, start_fake_firehose};

/// What one POST /v1/traces carried, or why it could not be read.
type Export = Result<ExportTraceServiceRequest, String>;

/// A minimal OTLP/HTTP trace receiver on a loopback port: every export goes into the channel.
async fn start_collector() -> (String, mpsc::UnboundedReceiver<Export>) {
    let (tx, rx) = mpsc::unbounded_channel::<Export>();
    let router = Router::new().route(
        "/v1/traces",
        post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let content_type = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let export = if content_type == "application/x-protobuf" {
                    ExportTraceServiceRequest::decode(body).map_err(|e| e.to_string())
                } else {
                    Err(format!("content-type {content_type:?}, not protobuf"))
                };
                let status = if export.is_ok() {
                    StatusCode::OK
                } else {
                    StatusCode::BAD_REQUEST
                };
                let _ = tx.send(export);
                (
                    status,
                    [("content-type", "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind collector");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (endpoint, rx)
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attribute(attributes, key)? {
        AnyValue::StringValue(s) => Some(s),
        _ => None,
    }
}

fn int_attribute(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attribute(attributes, key)? {
        AnyValue::IntValue(n) => Some(*n),
        _ => None,
    }
}

#[tokio::test]
async fn spans_continue_the_callers_trace_and_are_flushed_at_sigterm() {
    let (firehose, _fake) = start_fake_firehose().await;
    let (collector, mut exports) = start_collector().await;
    // A schedule delay of 10 minutes: nothing leaves before SIGTERM, so what arrives was
    // flushed by the shutdown.
    let mut ingest = Ingest::start(
        &firehose,
        "traced",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=it"),
        ],
    )
    .await;
    assert!(
        ingest.startup.iter().any(|v| v["message"]
            == "OpenTelemetry trace export on (OTLP over http/protobuf)"
            && v["endpoint"] == collector.as_str()),
        "start-up announces the export: {:?}",
        ingest.startup
    );

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/events", ingest.url))
        .header("content-type", "application/json")
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .header("tracestate", "vendor=caller-chosen-value")
        .body(r#"{"traced":true}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(answer.status(), 200);
    assert!(
        exports.try_recv().is_err(),
        "nothing is exported before the schedule delay or the shutdown"
    );

    let status = ingest.terminate().await;
    assert!(status.success(), "exit status {status}");
    let first = tokio::time::timeout(Duration::from_secs(30), exports.recv())
        .await
        .expect("spans exported at shutdown")
        .expect("collector running");
    // The process has exited, so every export it made is already in the channel.
    let mut received = vec![first];
    while let Ok(more) = exports.try_recv() {
        received.push(more);
    }
    let mut spans: Vec<(HashMap<String, String>, Span)> = Vec::new();
    for export in received {
        let export = export.expect("a valid OTLP/HTTP protobuf export");
        for resource_spans in export.resource_spans {
            let attributes = resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default();
            let resource: HashMap<String, String> = attributes
                .iter()
                .filter_map(|kv| {
                    let value = string_attribute(&attributes, &kv.key)?;
                    Some((kv.key.clone(), value.to_owned()))
                })
                .collect();
            for scope in resource_spans.scope_spans {
                spans.extend(scope.spans.into_iter().map(|s| (resource.clone(), s)));
            }
        }
    }
    let names: Vec<&str> = spans.iter().map(|(_, s)| s.name.as_str()).collect();

    let (resource, request) = spans
        .iter()
        .find(|(_, s)| s.name == "POST /v1/events")
        .unwrap_or_else(|| panic!("no request span among {names:?}"));
    assert_eq!(
        hex::encode(&request.trace_id),
        trace_id,
        "the caller's trace"
    );
    assert_eq!(
        hex::encode(&request.parent_span_id),
        caller_span,
        "a child of the caller's span"
    );
    assert_ne!(hex::encode(&request.span_id), caller_span);
    assert_eq!(request.kind, SpanKind::Server as i32);
    assert_eq!(
        string_attribute(&request.attributes, "http.route"),
        Some("/v1/events")
    );
    assert_eq!(
        int_attribute(&request.attributes, "http.response.status_code"),
        Some(200)
    );
    assert_eq!(
        resource.get("service.name").map(String::as_str),
        Some("ingest")
    );
    assert_eq!(
        resource.get("deployment.environment").map(String::as_str),
        Some("it"),
        "OTEL_RESOURCE_ATTRIBUTES is honoured"
    );

    let (_, call) = spans
        .iter()
        .find(|(_, s)| s.name == "Firehose.PutRecordBatch")
        .unwrap_or_else(|| panic!("no PutRecordBatch span among {names:?}"));
    assert_eq!(call.kind, SpanKind::Client as i32);
    assert_eq!(string_attribute(&call.attributes, "stream"), Some("traced"));
    assert_eq!(
        int_attribute(&call.attributes, "records"),
        Some(1),
        "{:?}",
        call.attributes
    );
    assert_eq!(int_attribute(&call.attributes, "failed"), Some(0));
    // The call starts a trace of its own (it carries many requests' records) and links to the
    // span of each request whose records it carried.
    assert_ne!(call.trace_id, request.trace_id);
    assert_eq!(call.links.len(), 1, "{:?}", call.links);
    assert_eq!(call.links[0].trace_id, request.trace_id);
    assert_eq!(call.links[0].span_id, request.span_id);
    // The caller's `tracestate` stays on its own trace's spans; the links do not copy it (up to
    // 32 entries of the caller's choosing, on each of up to 128 links per call).
    assert_eq!(request.trace_state, "vendor=caller-chosen-value");
    assert_eq!(call.links[0].trace_state, "", "{:?}", call.links[0]);
}

#[tokio::test]
async fn bad_otlp_settings_are_reported_and_the_service_still_serves() {
    let (firehose, fake) = start_fake_firehose().await;
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
            "OTEL_EXPORTER_OTLP_ENDPOINT=\"collector:4318\" is not an OTLP/HTTP endpoint",
        ),
        (
            &[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "ftp://collector/v1/traces",
            )],
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=\"ftp://collector/v1/traces\" is not an OTLP/HTTP endpoint",
        ),
        (
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
            "OTEL_EXPORTER_OTLP_PROTOCOL=\"grpc\" is not supported",
        ),
    ];
    for (env, expected) in cases {
        let mut ingest = Ingest::start(&firehose, "untraced", env).await;
        let reported = ingest.startup.iter().find(|v| {
            v["level"] == "ERROR"
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("OpenTelemetry trace export is OFF"))
        });
        let reported =
            reported.unwrap_or_else(|| panic!("{env:?}: no error in {:?}", ingest.startup));
        let error = reported["error"].as_str().unwrap_or_default();
        assert!(error.contains(expected), "{env:?}: {error}");
        assert!(
            !ingest
                .startup
                .iter()
                .any(|v| v["message"] == "OpenTelemetry trace export on (OTLP over http/protobuf)"),
            "{env:?}: export must stay off"
        );

        let before = fake.records.load(std::sync::atomic::Ordering::Relaxed);
        let answer = ingest.post_json(r#"{"still":"served"}"#).await;
        assert_eq!(answer.status(), 200, "{env:?}");
        assert_eq!(
            fake.records.load(std::sync::atomic::Ordering::Relaxed),
            before + 1
        );
        let status = ingest.terminate().await;
        assert!(status.success(), "{env:?}: exit status {status}");
    }
}
