//! Router-level tests: every status and every bad input, with a fake sink.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{Request, StatusCode};
use ingest::producer::ProducerConfig;
use ingest::routes::EVENT_BOOKKEEPING_BYTES;
use ingest::sink::SinkError;
use ingest::state::{CHECK_FAILURES_BEFORE_UNREADY, Readiness, StreamCheck};
use ingest::validate::ZSTD_DECODER_BYTES;
use serde_json::json;

use crate::support::{self, FakeSink, Options, app, app_with, encoded, gzip, json, post, send};

/// The value of the first sample whose line starts with `line_start`; 0 for a labelled series
/// not created yet (a counter with labels appears at its first increment), but the metric
/// itself must be there: a renamed metric fails instead of reading as 0, and so does a missing
/// sample of a metric without labels (which is always exported).
fn metric(app: &support::TestApp, line_start: &str) -> f64 {
    let text = app.state.metrics().render();
    let family = line_start
        .split(['{', ' '])
        .next()
        .expect("split yields one piece");
    assert!(
        text.contains(&format!("# TYPE {family} ")),
        "no metric {family} in:\n{text}"
    );
    let sample = text.lines().find(|l| l.starts_with(line_start));
    assert!(
        sample.is_some() || line_start.contains('{'),
        "no sample {line_start:?} in:\n{text}"
    );
    sample
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().expect("a sample value"))
}

#[tokio::test]
async fn one_object_is_one_record_exactly_as_received() {
    let app = app();
    let a = send(
        &app.router,
        json("  {\"user\": {\"id\": 1}, \"msg\": \"héllo\"}\n"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["accepted"], 1);
    assert_eq!(a.body["recordIds"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.sink.records(),
        vec![bytes::Bytes::from(
            "{\"user\": {\"id\": 1}, \"msg\": \"héllo\"}\n"
        )]
    );
    assert!(a.headers.contains_key("x-request-id"));
    assert_eq!(metric(&app, "ingest_events_accepted_total "), 1.0);
    assert_eq!(
        metric(
            &app,
            "ingest_http_requests_total{method=\"POST\",route=\"/v1/events\",status=\"200\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn a_client_request_id_is_kept_up_to_200_bytes() {
    let app = app();
    for (sent, kept) in [
        ("a".repeat(200), true),
        ("b".repeat(201), false),
        (String::new(), false),
    ] {
        let mut request = json("{}");
        request
            .headers_mut()
            .insert("x-request-id", sent.parse().unwrap());
        let a = send(&app.router, request).await;
        assert_eq!(a.status, StatusCode::OK);
        let echoed = a.headers["x-request-id"].to_str().unwrap();
        if kept {
            assert_eq!(echoed, sent);
        } else {
            assert!(uuid::Uuid::parse_str(echoed).is_ok(), "{echoed}");
        }
    }
    // Bytes that are not visible ASCII would be echoed but could not be logged (or, spaces and
    // tabs, would split the id in a log read as words): replaced too.
    for sent in [&b"r\xe9q-1"[..], b"req 1", b"req\t1"] {
        let mut request = json("{}");
        request
            .headers_mut()
            .insert("x-request-id", http::HeaderValue::from_bytes(sent).unwrap());
        let a = send(&app.router, request).await;
        assert_eq!(a.status, StatusCode::OK);
        let echoed = a.headers["x-request-id"].to_str().expect("visible ASCII");
        assert!(uuid::Uuid::parse_str(echoed).is_ok(), "{sent:?}: {echoed}");
    }
}

#[tokio::test]
async fn arrays_ndjson_gzip_and_the_legacy_path_work() {
    let app = app();
    let a = send(&app.router, json(r#"[{"a":1}, {"b":2}, {"c":3}]"#)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["accepted"], 3);

    let a = send(
        &app.router,
        post("/", "application/x-ndjson", "{\"d\":4}\n\n{\"e\":5}\n"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["accepted"], 2);

    let request = encoded("application/json", "gzip", gzip(br#"[{"f":6},{"g":7}]"#));
    let a = send(&app.router, request).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let all: Vec<_> = app.sink.records();
    assert_eq!(all.len(), 7);
    assert!(all.contains(&bytes::Bytes::from("{\"g\":7}\n")));
}

/// `deflate`, as API Gateway takes it (zlib, and the raw deflate some clients send under that
/// name), with the same cap as gzip.
#[tokio::test]
async fn deflate_bodies_are_taken_as_api_gateway_took_them() {
    use std::io::Write as _;
    let app = app_with(
        FakeSink::ok(),
        Options {
            max_body_bytes: 1024 * 1024,
            ..Options::default()
        },
    );
    let deflated = |data: &[u8], zlib: bool| {
        let level = flate2::Compression::default();
        if zlib {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        } else {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), level);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
    };
    let request = |body: Vec<u8>| encoded("application/x-ndjson", "deflate", body);
    for zlib in [true, false] {
        let a = send(
            &app.router,
            request(deflated(b"{\"h\":8}\n{\"i\":9}\n", zlib)),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "zlib {zlib}: {}", a.text);
        assert_eq!(a.body["accepted"], 2);
    }
    assert_eq!(
        app.sink.records(),
        ["{\"h\":8}\n", "{\"i\":9}\n", "{\"h\":8}\n", "{\"i\":9}\n"]
    );
    let bomb = deflated(&vec![b' '; 100 * 1024 * 1024], true);
    let a = send(&app.router, request(bomb)).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text);
    assert!(
        a.body["error"]
            .as_str()
            .unwrap()
            .contains("after deflate decompression")
    );
    let a = send(&app.router, request(b"not deflate at all".to_vec())).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    assert!(a.body["error"].as_str().unwrap().contains("deflate"));
}

/// `zstd` (what newer shippers send), held to RFC 9659's 8 MB window, with the same cap as
/// gzip, and with its decoder's window counted against the in-flight cap while it works.
#[tokio::test]
async fn zstd_bodies_are_taken_and_their_window_is_held() {
    // What is held against the in-flight cap each time a record reaches Firehose: the
    // decoder's window must have been let go of by then.
    let state = Arc::new(std::sync::Mutex::new(None::<ingest::state::AppState>));
    let held_at_send = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = FakeSink::new(Box::new({
        let (state, held_at_send) = (state.clone(), held_at_send.clone());
        move |_, _| {
            if let Some(state) = &*state.lock().unwrap() {
                held_at_send
                    .lock()
                    .unwrap()
                    .push(state.producer().inflight_bytes());
            }
            None
        }
    }));
    let app = app_with(
        sink,
        Options {
            max_body_bytes: 1024 * 1024,
            producer: ProducerConfig {
                max_inflight_bytes: 1024 * 1024,
                ..Options::default().producer
            },
            ..Options::default()
        },
    );
    let request = |body: Vec<u8>, coding: &str| encoded("application/x-ndjson", coding, body);
    *state.lock().unwrap() = Some(app.state.clone());
    let zstd = |body: Vec<u8>| request(body, "zstd");
    let events = b"{\"h\":8}\n{\"i\":9}\n";
    // One frame whose size is known (single segment), then two frames one after the other.
    let one = zstd::bulk::compress(events, 3).unwrap();
    let mut two = zstd::encode_all(&b"{\"j\":1}\n"[..], 3).unwrap();
    two.extend(zstd::encode_all(&b"{\"k\":2}\n"[..], 19).unwrap());
    for body in [one.clone(), two] {
        let a = send(&app.router, zstd(body)).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        assert_eq!(a.body["accepted"], 2);
    }
    assert_eq!(
        app.sink.records(),
        ["{\"h\":8}\n", "{\"i\":9}\n", "{\"j\":1}\n", "{\"k\":2}\n"]
    );
    let bomb = zstd::encode_all(&vec![b' '; 100 * 1024 * 1024][..], 19).unwrap();
    let a = send(&app.router, zstd(bomb)).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text);
    assert!(
        a.body["error"]
            .as_str()
            .unwrap()
            .contains("after zstd decompression")
    );
    let wide = support::zstd_with_window(events, 24);
    let a = send(&app.router, zstd(wide)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    assert!(
        a.body["error"].as_str().unwrap().contains("RFC 9659"),
        "{}",
        a.text
    );
    let a = send(&app.router, zstd(b"not zstd at all".to_vec())).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    assert!(a.body["error"].as_str().unwrap().contains("zstd"));
    assert_eq!(app.state.producer().inflight_bytes(), 0);

    // With another upload in flight, a frame needing a 1 MiB window (1.5 MiB with the
    // decoder's buffers) does not fit the 1 MiB cap and is shed, although its body and what
    // it inflates to are tiny; the same events gzipped, or in a frame whose window is their
    // size, fit. The window is let go of once decoded.
    let upload = StalledUpload::start(&app, b"{\"a\":").await;
    assert_shed(&send(&app.router, zstd(support::zstd_with_window(events, 20))).await);
    let a = send(&app.router, request(gzip(events), "gzip")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let a = send(&app.router, zstd(one)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(app.state.producer().inflight_bytes(), 5);
    let done = upload.finish(b"1}").await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    let held_at_send = std::mem::take(&mut *held_at_send.lock().unwrap());
    assert_eq!(held_at_send.len(), 9, "{held_at_send:?}");
    assert!(
        held_at_send.iter().all(|&n| n < ZSTD_DECODER_BYTES),
        "{held_at_send:?}"
    );
    // The sink's rule holds the state, which holds the sink.
    state.lock().unwrap().take();
}

async fn bad(body: &[u8], content_type: &str) -> (support::TestApp, support::Answer) {
    let app = app();
    let a = send(&app.router, post("/v1/events", content_type, body.to_vec())).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    assert!(
        app.sink.records().is_empty(),
        "nothing may be sent for a 400"
    );
    assert!(a.body["error"].is_string());
    (app, a)
}

#[tokio::test]
async fn invalid_json_gets_400_with_line_and_column() {
    let (app, a) = bad(b"{\"a\": 1,\n  \"b\": }", "application/json").await;
    assert_eq!(a.body["details"][0]["line"], 2);
    assert_eq!(a.body["details"][0]["column"], 8);
    assert_eq!(
        metric(
            &app,
            "ingest_events_rejected_total{reason=\"invalid_json\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &app,
            "ingest_requests_rejected_total{reason=\"bad_request\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn non_object_events_get_400_with_their_indexes() {
    let (app, a) = bad(
        br#"[{"ok":1}, 42, "text", [1], null, true]"#,
        "application/json",
    )
    .await;
    let indexes: Vec<u64> = a.body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, vec![1, 2, 3, 4, 5]);
    assert_eq!(
        metric(&app, "ingest_events_rejected_total{reason=\"not_object\"}"),
        5.0
    );
    // 42, "text", [1], null, true: 2 + 6 + 3 + 4 + 4 bytes as received.
    assert_eq!(
        metric(
            &app,
            "ingest_event_bytes_rejected_total{reason=\"not_object\"}"
        ),
        19.0
    );
    bad(b"42", "application/json").await;
}

#[tokio::test]
async fn mixed_valid_and_invalid_batches_send_nothing() {
    let (_, a) = bad(b"{\"a\":1}\n{\"b\":\n{\"c\":3}\n", "application/x-ndjson").await;
    assert_eq!(a.body["details"][0]["index"], 1);
    assert_eq!(a.body["details"][0]["line"], 2);
    assert!(a.body["error"].as_str().unwrap().contains("1 of 3"));
}

#[tokio::test]
async fn deep_nesting_is_refused_without_crashing() {
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(50_000), "]".repeat(50_000));
    bad(deep.as_bytes(), "application/json").await;
}

#[tokio::test]
async fn huge_strings_over_the_record_limit_are_too_large() {
    let huge = format!("[{{\"ok\":1}},{{\"s\":\"{}\"}}]", "x".repeat(1_100_000));
    let (app, a) = bad(huge.as_bytes(), "application/json").await;
    assert_eq!(a.body["details"][0]["index"], 1);
    assert_eq!(
        metric(&app, "ingest_events_rejected_total{reason=\"too_large\"}"),
        1.0
    );
}

#[tokio::test]
async fn invalid_utf8_empty_bodies_and_empty_arrays_are_400() {
    let (_, a) = bad(b"{\"a\":\"\xc3\x28\"}", "application/json").await;
    assert!(a.body["details"][0]["line"].is_u64());
    bad(b"", "application/json").await;
    bad(b"   ", "application/x-ndjson").await;
    bad(b"[]", "application/json").await;
}

#[tokio::test]
async fn schema_violations_name_index_and_path() {
    let options = Options {
        schema: Some(json!({
            "type": "object",
            "required": ["user"],
            "properties": {"user": {"type": "object", "properties": {"id": {"type": "string"}}}}
        })),
        ..Options::default()
    };
    let app = app_with(FakeSink::ok(), options);
    let a = send(
        &app.router,
        json(r#"[{"user":{"id":"u1"}},{"user":{"id":7}}]"#),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.body["details"][0]["index"], 1);
    assert_eq!(a.body["details"][0]["path"], "/user/id");
    assert!(app.sink.records().is_empty());
    let a = send(&app.router, json(r#"{"user":{"id":"u2"}}"#)).await;
    assert_eq!(a.status, StatusCode::OK);
}

/// No `Content-Type` at all is JSON (API Gateway's reading, which its old clients may rely
/// on); `application/<type>+json` is JSON and the JSON Lines names are NDJSON.
#[tokio::test]
async fn a_missing_content_type_is_json_and_json_variants_are_taken() {
    let app = app();
    let bare = Request::post("/")
        .body(Body::from(r#"[{"a":1},{"a":2}]"#))
        .unwrap();
    let a = send(&app.router, bare).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["accepted"], 2);
    for (ct, body, events) in [
        (
            "application/cloudevents+json",
            r#"{"specversion":"1.0"}"#,
            1,
        ),
        (
            "Application/Vnd.Acme.Event+JSON; charset=utf-8",
            r#"[{"a":1},{"a":2}]"#,
            2,
        ),
        ("application/jsonl", "{\"a\":1}\n{\"a\":2}\n", 2),
        (
            "application/x-jsonlines",
            "{\"a\":1}\n{\"a\":2}\n{\"a\":3}",
            3,
        ),
    ] {
        let a = send(&app.router, post("/v1/events", ct, body)).await;
        assert_eq!(a.status, StatusCode::OK, "{ct}: {}", a.text);
        assert_eq!(a.body["accepted"], events, "{ct}");
    }
    // An NDJSON body sent as JSON is still one document, and fails as one.
    let a = send(
        &app.router,
        post("/v1/events", "application/problem+json", "{}\n{}"),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
}

#[tokio::test]
async fn wrong_content_type_or_encoding_is_415() {
    let app = app();
    for ct in [
        "text/plain",
        "application/xml",
        // Present but empty: not the same as no header.
        "",
        "application/json; charset=iso-8859-1",
        "application/+json",
        "text/x+json",
        "application/jsonx",
    ] {
        let a = send(&app.router, post("/v1/events", ct, "{}")).await;
        assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
    }
    let request = encoded("application/json", "br", "{}");
    assert_eq!(
        send(&app.router, request).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert!(app.sink.records().is_empty());
}

#[tokio::test]
async fn bodies_over_the_cap_are_413_declared_or_streamed() {
    let app = app_with(
        FakeSink::ok(),
        Options {
            max_body_bytes: 1000,
            ..Options::default()
        },
    );
    let big = format!("{{\"s\":\"{}\"}}", "x".repeat(2000));
    let a = send(&app.router, json(&big)).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Without Content-Length (streamed): the cap still holds.
    let stream = futures::stream::iter(
        (0..10).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 200]))),
    );
    let request = Request::post("/v1/events")
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap();
    assert_eq!(
        send(&app.router, request).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        metric(
            &app,
            "ingest_requests_rejected_total{reason=\"body_too_large\"}"
        ),
        2.0
    );
}

#[tokio::test]
async fn a_gzip_bomb_is_413_not_an_oom() {
    let app = app_with(
        FakeSink::ok(),
        Options {
            max_body_bytes: 1024 * 1024,
            ..Options::default()
        },
    );
    // 100 MiB of spaces compresses to ~100 KiB.
    let bomb = gzip(&vec![b' '; 100 * 1024 * 1024]);
    assert!(bomb.len() < 1024 * 1024);
    let request = encoded("application/json", "gzip", bomb);
    let a = send(&app.router, request).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(a.body["error"].as_str().unwrap().contains("decompression"));
    let request = encoded("application/json", "gzip", "definitely not gzip");
    let a = send(&app.router, request).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body["error"].as_str().unwrap().contains("gzip"));
    assert!(
        a.body.get("details").is_none(),
        "no empty details: {}",
        a.body
    );
}

#[tokio::test]
async fn missing_or_bad_keys_are_401_and_good_ones_pass() {
    let options = Options {
        keys: Some("# rotated 2026-11\ngood-key\n"),
        ..Options::default()
    };
    let app = app_with(FakeSink::ok(), options);
    let a = send(&app.router, json("{}")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.body["error"].as_str().unwrap().contains("missing"));
    assert_eq!(a.headers["www-authenticate"], "Bearer");
    for (header, value) in [
        ("authorization", "Bearer wrong"),
        ("x-api-key", "wrong"),
        ("authorization", "Bearer good-key-but-longer"),
    ] {
        let mut r = json("{}");
        r.headers_mut().insert(header, value.parse().unwrap());
        let a = send(&app.router, r).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{header}: {value}");
        assert!(!a.text.contains("wrong"), "keys are never echoed");
    }
    // A key without the scheme is told what form to use, and not echoed either.
    let mut r = json("{}");
    r.headers_mut()
        .insert("authorization", "good-key".parse().unwrap());
    let a = send(&app.router, r).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(
        a.body["error"]
            .as_str()
            .unwrap()
            .contains("malformed Authorization")
    );
    assert!(!a.text.contains("good-key"));
    for (header, value) in [
        ("authorization", "Bearer good-key"),
        ("x-api-key", "good-key"),
    ] {
        let mut r = json("{}");
        r.headers_mut().insert(header, value.parse().unwrap());
        assert_eq!(send(&app.router, r).await.status, StatusCode::OK);
    }
    assert_eq!(app.sink.records().len(), 2);
    assert_eq!(
        metric(
            &app,
            "ingest_requests_rejected_total{reason=\"unauthorized\"}"
        ),
        5.0
    );
}

/// On the paused clock (the limiter reads `tokio::time::Instant`; the fake sink does no I/O):
/// on the real one, a host that stalls for a second between the requests refills a token.
#[tokio::test(start_paused = true)]
async fn the_rate_limit_answers_429_with_retry_after() {
    let app = app_with(
        FakeSink::ok(),
        Options {
            rate: (1.0, Some(2)),
            ..Options::default()
        },
    );
    assert_eq!(send(&app.router, json("{}")).await.status, StatusCode::OK);
    assert_eq!(send(&app.router, json("{}")).await.status, StatusCode::OK);
    let a = send(&app.router, json("{}")).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.headers["retry-after"], "1");
    assert_eq!(app.sink.records().len(), 2);
}

/// A key's own `rps=`/`burst=` in the key file replace the service's rate for that key alone;
/// `rps=0` is never limited; other keys keep the service's rate.
#[tokio::test(start_paused = true)]
async fn keys_with_rates_of_their_own_are_limited_at_those() {
    let app = app_with(
        FakeSink::ok(),
        Options {
            keys: Some(
                "tier-default\ntier-gold rps=5 burst=4\nsha256:c9b2c5bd2bd61f0d8bda8ecd2d7e0b2cd1fe2d1d6d6f5c4e5b2a0a9f6c2d3e4f\ntier-internal\trps=0\n",
            ),
            rate: (1.0, Some(2)),
            ..Options::default()
        },
    );
    let post = |key: &'static str| {
        let router = app.router.clone();
        async move {
            let mut r = json("{}");
            r.headers_mut()
                .insert("x-api-key", key.parse().expect("header"));
            send(&router, r).await.status
        }
    };
    // The service's burst of 2.
    for _ in 0..2 {
        assert_eq!(post("tier-default").await, StatusCode::OK);
    }
    assert_eq!(post("tier-default").await, StatusCode::TOO_MANY_REQUESTS);
    // Its own burst of 4.
    for _ in 0..4 {
        assert_eq!(post("tier-gold").await, StatusCode::OK);
    }
    let a = {
        let mut r = json("{}");
        r.headers_mut()
            .insert("x-api-key", "tier-gold".parse().expect("header"));
        send(&app.router, r).await
    };
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    // 1 token at 5 per second: 200 ms, rounded up to whole seconds.
    assert_eq!(a.headers["retry-after"], "1");
    tokio::time::advance(std::time::Duration::from_millis(200)).await;
    assert_eq!(post("tier-gold").await, StatusCode::OK);
    // Never limited.
    for _ in 0..50 {
        assert_eq!(post("tier-internal").await, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_vanishingly_small_rate_limit_answers_429_and_does_not_panic() {
    // The wait overflows a `Duration`, and rounding it up to whole seconds overflowed a u64.
    // The header is capped at a day: clients that read it as a signed 64-bit number would
    // ignore u64::MAX and retry at once.
    let app = app_with(
        FakeSink::ok(),
        Options {
            rate: (1e-20, Some(1)),
            ..Options::default()
        },
    );
    assert_eq!(send(&app.router, json("{}")).await.status, StatusCode::OK);
    let a = send(&app.router, json("{}")).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.headers["retry-after"], "86400");
}

#[tokio::test]
async fn firehose_failures_past_the_budget_are_503_with_the_unaccepted_indexes() {
    // Events 1 and 3 are throttled on every attempt; the others are accepted at once.
    let sink = FakeSink::new(Box::new(|r, _| {
        (r.starts_with(b"{\"n\":1}") || r.starts_with(b"{\"n\":3}"))
            .then_some("ServiceUnavailableException")
    }));
    let app = app_with(sink, Options::default());
    let a = send(
        &app.router,
        json(r#"[{"n":0},{"n":1},{"n":2},{"n":3},{"n":4}]"#),
    )
    .await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text);
    assert_eq!(a.body["unaccepted"], json!([1, 3]));
    assert_eq!(a.headers["retry-after"], "1");
    let ids = a.body["recordIds"].as_array().unwrap();
    assert!(ids[0].is_string() && ids[1].is_null() && ids[4].is_string());
    // Accepted events were sent once; only the failed ones again.
    let sent = app.sink.records();
    let count = |needle: &str| {
        sent.iter()
            .filter(|r| r.starts_with(needle.as_bytes()))
            .count()
    };
    assert_eq!(count("{\"n\":0}"), 1);
    assert_eq!(count("{\"n\":4}"), 1);
    assert!(count("{\"n\":1}") > 1);
    assert_eq!(
        metric(
            &app,
            "ingest_requests_rejected_total{reason=\"firehose_unavailable\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &app,
            "ingest_firehose_records_unaccepted_total{reason=\"retries_exhausted\"}"
        ),
        2.0
    );
    assert_eq!(metric(&app, "ingest_events_accepted_total "), 3.0);
}

#[tokio::test]
async fn more_events_than_the_limit_are_413_and_nothing_is_sent() {
    let app = app_with(
        FakeSink::ok(),
        Options {
            max_events: 2,
            ..Options::default()
        },
    );
    for request in [
        json(r#"[{"n":1},{"n":2},{"n":3}]"#),
        post(
            "/v1/events",
            "application/x-ndjson",
            "{\"n\":1}\n\n{\"n\":2}\n{\"n\":3}\n",
        ),
    ] {
        let a = send(&app.router, request).await;
        assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text);
        assert!(
            a.body["error"]
                .as_str()
                .unwrap()
                .contains("more than 2 events"),
            "{}",
            a.text
        );
    }
    assert!(app.sink.records().is_empty());
    assert_eq!(
        metric(
            &app,
            "ingest_requests_rejected_total{reason=\"body_too_large\"}"
        ),
        2.0
    );
    assert_eq!(app.state.producer().inflight_bytes(), 0);
    // At the limit (blank NDJSON lines are not events): accepted.
    let a = send(
        &app.router,
        post(
            "/v1/events",
            "application/x-ndjson",
            "{\"n\":1}\n\n{\"n\":2}\n",
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(app.sink.records().len(), 2);
}

/// `INGEST_MAX_EVENT_BYTES` below Firehose's limit: a larger event is a 400 naming the setting,
/// nothing of the request is sent, and an event at the limit goes.
#[tokio::test]
async fn an_event_over_the_configured_size_is_400_and_nothing_is_sent() {
    let app = app_with(
        FakeSink::ok(),
        Options {
            max_event_bytes: 20,
            ..Options::default()
        },
    );
    // 20 and 21 bytes.
    let (at, over) = (r#"{"m":"0123456789ab"}"#, r#"{"m":"0123456789abc"}"#);
    assert_eq!((at.len(), over.len()), (20, 21));
    let a = send(&app.router, json(&format!("[{at},{over}]"))).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    assert_eq!(a.body["details"][0]["index"], 1, "{}", a.text);
    assert!(
        a.body["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("at most 20 bytes (INGEST_MAX_EVENT_BYTES)"),
        "{}",
        a.text
    );
    assert!(app.sink.records().is_empty());
    assert_eq!(
        metric(&app, "ingest_events_rejected_total{reason=\"too_large\"}"),
        1.0
    );
    let a = send(&app.router, json(at)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(app.sink.records().len(), 1);
}

#[tokio::test]
async fn over_the_inflight_cap_requests_are_shed_with_503() {
    // A linger of an hour keeps the first request's bytes in flight.
    let app = app_with(
        FakeSink::ok(),
        Options {
            producer: ProducerConfig {
                max_inflight_bytes: 10,
                linger: Duration::from_secs(3600),
                ..ProducerConfig::default()
            },
            ..Options::default()
        },
    );
    let router = app.router.clone();
    let first = tokio::spawn(async move { send(&router, json(r#"{"first":"request"}"#)).await });
    until_held(&app, 1).await;
    // Shed while its body arrived: nothing of it was sent, so no list: all of it again.
    assert_shed(&send(&app.router, json(r#"[{"a":1},{"b":2}]"#)).await);
    assert_eq!(
        metric(&app, "ingest_requests_rejected_total{reason=\"shed\"}"),
        1.0
    );
    // The shed body's bytes were let go of; the first request (its 19-byte body and one event's
    // bookkeeping) is still held.
    let held = (r#"{"first":"request"}"#.len() + EVENT_BOOKKEEPING_BYTES) as f64;
    assert_eq!(metric(&app, "ingest_inflight_bytes "), held);
    assert_eq!(metric(&app, "ingest_inflight_bytes_limit "), 10.0);
    assert_eq!(app.sink.records(), Vec::<Bytes>::new());
    first.abort();
}

/// A body whose pieces the test sends one by one, and the sender of those pieces.
fn streamed_json() -> (
    Request<Body>,
    futures::channel::mpsc::UnboundedSender<Result<Bytes, std::io::Error>>,
) {
    let (tx, rx) = futures::channel::mpsc::unbounded();
    (
        post("/v1/events", "application/json", Body::from_stream(rx)),
        tx,
    )
}

/// Waits (at most 10 s) until at least `bytes` are held against the in-flight cap.
async fn until_held(app: &support::TestApp, bytes: usize) {
    let held = async {
        while app.state.producer().inflight_bytes() < bytes {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("the bytes received are held against the in-flight cap");
}

/// An upload in progress: its first piece received and held against the in-flight cap, the
/// rest not yet.
struct StalledUpload {
    pieces: futures::channel::mpsc::UnboundedSender<Result<Bytes, std::io::Error>>,
    answer: tokio::task::JoinHandle<support::Answer>,
}

impl StalledUpload {
    async fn start(app: &support::TestApp, first: &'static [u8]) -> Self {
        let (request, pieces) = streamed_json();
        let router = app.router.clone();
        let answer = tokio::spawn(async move { send(&router, request).await });
        pieces
            .unbounded_send(Ok(Bytes::from_static(first)))
            .unwrap();
        until_held(app, first.len()).await;
        Self { pieces, answer }
    }

    /// Sends `rest` and ends the body; the answer.
    async fn finish(self, rest: &'static [u8]) -> support::Answer {
        self.pieces
            .unbounded_send(Ok(Bytes::from_static(rest)))
            .unwrap();
        drop(self.pieces);
        self.answer.await.unwrap()
    }

    /// The client goes away mid-body; the answer.
    async fn cut_off(self) -> support::Answer {
        self.pieces
            .unbounded_send(Err(std::io::Error::other("connection reset")))
            .unwrap();
        self.answer.await.unwrap()
    }
}

/// A 503 for load shedding: nothing sent, so no `unaccepted` list.
fn assert_shed(answer: &support::Answer) {
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.text
    );
    assert!(answer.body.get("unaccepted").is_none(), "{}", answer.text);
    assert!(answer.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn a_body_still_arriving_counts_against_the_inflight_cap() {
    let app = app_with(
        FakeSink::ok(),
        Options {
            producer: ProducerConfig {
                max_inflight_bytes: 10,
                linger: Duration::from_millis(1),
                ..ProducerConfig::default()
            },
            ..Options::default()
        },
    );
    let upload = StalledUpload::start(&app, b"{\"a\":").await;
    // 5 bytes held by the upload in progress: 7 more would pass the cap of 10.
    assert_eq!(app.state.producer().inflight_bytes(), 5);
    assert_shed(&send(&app.router, json(r#"{"b":2}"#)).await);
    assert_eq!(app.state.producer().inflight_bytes(), 5);
    // The upload completes and is sent: its bytes become its record's, then are let go of.
    let done = upload.finish(b"1}").await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_eq!(app.sink.records(), vec![Bytes::from("{\"a\":1}\n")]);
    assert_eq!(app.state.producer().inflight_bytes(), 0);
    assert_eq!(metric(&app, "ingest_inflight_bytes "), 0.0);
}

#[tokio::test]
async fn an_upload_cut_off_or_refused_lets_go_of_its_bytes() {
    let app = app_with(
        FakeSink::ok(),
        Options {
            max_body_bytes: 8,
            ..Options::default()
        },
    );
    // The client goes away mid-body.
    let cut = StalledUpload::start(&app, b"{\"a\"").await;
    assert_eq!(app.state.producer().inflight_bytes(), 4);
    assert_eq!(cut.cut_off().await.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.state.producer().inflight_bytes(), 0);
    // Past the body cap without a Content-Length: 413 once the cap is passed.
    let (request, pieces) = streamed_json();
    pieces
        .unbounded_send(Ok(Bytes::from_static(b"{\"a\":")))
        .unwrap();
    pieces
        .unbounded_send(Ok(Bytes::from_static(b"\"long\"}")))
        .unwrap();
    let big = send(&app.router, request).await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", big.text);
    assert_eq!(app.state.producer().inflight_bytes(), 0);
    assert_eq!(app.sink.records(), Vec::<Bytes>::new());
}

#[tokio::test]
async fn what_a_gzip_body_inflates_to_counts_against_the_inflight_cap() {
    // 300 KB of events compress to a few KB; the cap is 200 KB.
    let event = format!("{{\"pad\":\"{}\"}}\n", "x".repeat(1_000));
    let ndjson = event.repeat(300);
    let small = gzip(ndjson.as_bytes());
    assert!(small.len() < 20_000);
    let gzipped = |body: Vec<u8>| {
        let mut request = post("/v1/events", "application/x-ndjson", body);
        request
            .headers_mut()
            .insert("content-encoding", http::HeaderValue::from_static("gzip"));
        request
    };
    let app = app_with(
        FakeSink::ok(),
        Options {
            producer: ProducerConfig {
                max_inflight_bytes: 200_000,
                linger: Duration::from_millis(1),
                ..ProducerConfig::default()
            },
            ..Options::default()
        },
    );
    // Alone, a request may pass the cap (it is never starved).
    let alone = send(&app.router, gzipped(small.clone())).await;
    assert_eq!(alone.status, StatusCode::OK, "{}", alone.text);
    assert_eq!(alone.body["accepted"], 300);
    assert_eq!(app.state.producer().inflight_bytes(), 0);
    // Beside an upload in progress it is shed as it inflates past the cap.
    let upload = StalledUpload::start(&app, b"{\"a\":").await;
    assert_shed(&send(&app.router, gzipped(small)).await);
    assert_eq!(app.state.producer().inflight_bytes(), 5);
    assert_eq!(upload.finish(b"1}").await.status, StatusCode::OK);
    assert_eq!(app.sink.records().len(), 301);
    assert_eq!(app.state.producer().inflight_bytes(), 0);
}

#[tokio::test]
async fn events_not_sent_by_the_deadline_are_answered_503_and_never_sent() {
    // A linger of an hour: the event is still in the open batch when its send deadline passes.
    let app = app_with(
        FakeSink::ok(),
        Options {
            producer: ProducerConfig {
                linger: Duration::from_secs(3600),
                ..ProducerConfig::default()
            },
            send_window: Duration::from_millis(50),
            ..Options::default()
        },
    );
    let mut request = json(r#"[{"slow":"request"},{"slow":"too"}]"#);
    request
        .headers_mut()
        .insert("x-request-id", "req-slow".parse().unwrap());
    let a = send(&app.router, request).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.headers["x-request-id"], "req-slow");
    assert_eq!(a.headers["retry-after"], "1");
    assert_eq!(a.body["unaccepted"], json!([0, 1]));
    assert!(
        a.body["error"].as_str().unwrap().contains("not sent"),
        "{}",
        a.body
    );
    assert_eq!(
        metric(
            &app,
            "ingest_firehose_records_unaccepted_total{reason=\"deadline\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &app,
            "ingest_firehose_records_unaccepted_total{reason=\"retries_exhausted\"}"
        ),
        0.0
    );
    // Withdrawn, but still in the open batch: the request's body and the two events'
    // bookkeeping count against the cap until they are dropped.
    let held =
        (r#"[{"slow":"request"},{"slow":"too"}]"#.len() + 2 * EVENT_BOOKKEEPING_BYTES) as f64;
    assert_eq!(metric(&app, "ingest_inflight_bytes "), held);
    // Closing the producer flushes the open batch: the withdrawn events must not go out.
    let metrics = app.state.metrics().clone();
    let producer = app.state.producer().clone();
    drop(app.router);
    drop(app.admin);
    drop(app.state);
    tokio::time::timeout(Duration::from_secs(10), producer.drained())
        .await
        .expect("the producer drains once every handle is gone");
    assert!(app.sink.records().is_empty());
    assert!(
        metrics.render().contains("\ningest_inflight_bytes 0\n"),
        "dropped from the queue, the withdrawn bytes are released"
    );
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_a_json_408_and_is_counted() {
    let app = app_with(
        FakeSink::ok(),
        Options {
            send_window: Duration::from_millis(50),
            ..Options::default()
        },
    );
    // A body that never ends.
    let body = Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
    let mut request = Request::post("/v1/events")
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    request
        .headers_mut()
        .insert("x-request-id", "req-slow".parse().unwrap());
    let a = send(&app.router, request).await;
    assert_eq!(a.status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(a.headers["x-request-id"], "req-slow");
    assert!(a.body["error"].as_str().unwrap().contains("in time"));
    assert_eq!(
        metric(
            &app,
            "ingest_http_requests_total{method=\"POST\",route=\"/v1/events\",status=\"408\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(&app, "ingest_requests_rejected_total{reason=\"timeout\"}"),
        1.0
    );
    assert!(app.sink.records().is_empty());
}

#[tokio::test]
async fn while_shutting_down_new_requests_get_503() {
    let app = app();
    app.state.readiness().set_terminating();
    app.state.readiness().set_closing();
    let a = send(&app.router, json(r#"[{"a":1}]"#)).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.body["unaccepted"], json!([0]));
    assert!(app.sink.records().is_empty());
}

#[tokio::test]
async fn health_readiness_and_metrics_on_the_admin_router() {
    let app = app();
    let get = |p: &str| Request::get(p).body(Body::empty()).unwrap();
    assert_eq!(
        send(&app.admin, get("/healthz")).await.status,
        StatusCode::OK
    );
    // Not ready until the stream has been checked.
    let a = send(&app.admin, get("/readyz")).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    app.state.readiness().set_stream(StreamCheck::Reachable);
    let a = send(&app.admin, get("/readyz")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["ready"], true);
    assert_eq!(metric(&app, "ingest_ready "), 1.0);
    app.state
        .readiness()
        .set_stream(StreamCheck::Refused("ResourceNotFoundException".into()));
    let a = send(&app.admin, get("/readyz")).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.body["lastError"], "ResourceNotFoundException");
    app.state.readiness().set_stream(StreamCheck::Reachable);
    app.state.readiness().set_terminating();
    let a = send(&app.admin, get("/readyz")).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.body["shuttingDown"], true);
    assert_eq!(metric(&app, "ingest_ready "), 0.0);
    let a = send(&app.admin, get("/metrics")).await;
    assert!(a.text.contains("# TYPE ingest_build_info gauge"));
}

/// The readiness watcher of `app`'s stream, as `Service::build` starts it: checks every 15 s,
/// each given 10 s.
fn watch_stream(app: &support::TestApp) -> tokio::task::JoinHandle<()> {
    tokio::spawn(Readiness::watch(
        app.state.clone(),
        std::sync::Arc::clone(&app.sink) as _,
        "test-stream".to_owned(),
        Duration::from_secs(15),
        Duration::from_secs(10),
    ))
}

/// Lets the watcher run (paused time jumps to its next check) until `sink` has seen `n` checks.
async fn until_checks(sink: &FakeSink, n: usize) {
    // Paused time: the timeout is deterministic, and a watcher that died fails here instead of
    // hanging until the test runner's limit.
    tokio::time::timeout(Duration::from_secs(3600), async {
        while sink.checks.load(std::sync::atomic::Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the readiness watcher never made check {n}"));
}

/// DescribeDeliveryStream is limited to five calls per second per account and region (a hard
/// limit), so a fleet's checks can be throttled: a throttled check must not take a pod out of
/// the load balancer at once, and a pod with traffic must not call it at all.
#[tokio::test(start_paused = true)]
async fn readiness_outlasts_throttled_checks_and_traffic_stands_in_for_them() {
    let app = app();
    let checks = || app.sink.checks.load(std::sync::atomic::Ordering::SeqCst);
    let until_checks = |n: usize| until_checks(&app.sink, n);
    let ready = || app.state.readiness().is_ready();
    let watcher = watch_stream(&app);
    until_checks(1).await;
    assert!(ready(), "the first check found the stream");

    *app.sink.check_error.lock().unwrap() = Some(SinkError::new(
        "LimitExceededException",
        "Rate exceeded for DescribeDeliveryStream",
    ));
    let limit = usize::try_from(CHECK_FAILURES_BEFORE_UNREADY).unwrap();
    for failed in 1..limit {
        until_checks(1 + failed).await;
        assert!(ready(), "still ready after {failed} throttled check(s)");
    }
    until_checks(1 + limit).await;
    assert!(
        !ready(),
        "not ready after {limit} throttled checks in a row"
    );
    let a = send(
        &app.admin,
        Request::get("/readyz").body(Body::empty()).unwrap(),
    )
    .await;
    assert!(
        a.body["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("LimitExceededException")),
        "{}",
        a.body
    );

    // Not ready: it looks again within seconds, not a whole interval.
    *app.sink.check_error.lock().unwrap() = None;
    let before = tokio::time::Instant::now();
    until_checks(2 + limit).await;
    assert!(ready());
    assert!(
        before.elapsed() < Duration::from_secs(5),
        "{:?}",
        before.elapsed()
    );

    // A PutRecordBatch call Firehose answered stands in for the next check: no
    // DescribeDeliveryStream, even though it would now say the stream is gone.
    let made = checks();
    let r = send(&app.router, json(r#"{"a":1}"#)).await;
    assert_eq!(r.status, StatusCode::OK);
    *app.sink.check_error.lock().unwrap() = Some(SinkError::new(
        "ResourceNotFoundException",
        "Firehose test-stream under account 000000000000 not found.",
    ));
    tokio::time::sleep(Duration::from_secs(17)).await;
    assert_eq!(checks(), made, "no check while calls are answered");
    assert!(ready());
    // Without traffic the next one asks, and a missing stream is not ready at once.
    until_checks(made + 1).await;
    assert!(!ready(), "a stream found missing is not ready at once");
    watcher.abort();
}

/// The SDK sets no read timeout: a check whose connection stops answering must end as a failed
/// check, not stop the checks (readiness would then stay whatever it was).
#[tokio::test(start_paused = true)]
async fn a_stream_check_without_an_answer_is_a_failed_check() {
    let app = app();
    app.sink
        .check_hangs
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let watcher = watch_stream(&app);
    tokio::time::sleep(Duration::from_secs(11)).await;
    let error = app.state.readiness().last_error().unwrap_or_default();
    assert!(
        error.contains("no answer within 10s"),
        "the check timed out: {error}"
    );
    // And the watcher goes on: the next check comes (sooner, as not ready yet).
    tokio::time::sleep(Duration::from_secs(1)).await;
    app.sink
        .check_hangs
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let made = app.sink.checks.load(std::sync::atomic::Ordering::SeqCst);
    until_checks(&app.sink, made + 1).await;
    assert!(app.state.readiness().is_ready());
    watcher.abort();
}

#[tokio::test]
async fn unknown_paths_are_404_and_admin_paths_are_not_public() {
    let app = app();
    let a = send(&app.router, post("/v2/other", "application/json", "{}")).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.body["error"].as_str().unwrap().contains("/v1/events"));
    for path in ["/v1/events", "/"] {
        let a = send(&app.router, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "GET {path}");
        assert_eq!(a.headers["allow"], "POST");
        assert!(
            a.body["error"].as_str().unwrap().contains("POST"),
            "{}",
            a.body
        );
    }
    use tower::ServiceExt;
    let r = app
        .router
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// A body over 1 MiB is validated on the blocking pool. A client that goes away meanwhile
/// (hyper drops the handler) must not take the body off the in-flight cap while that work
/// still holds it and its copy: clients that send large bodies and hang up could otherwise hold
/// memory the cap does not see.
#[test]
fn a_body_validated_for_a_client_gone_stays_counted_until_the_work_ends() {
    // One blocking thread, held by the test: the validation queues behind it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .build()
        .unwrap();
    runtime.block_on(async {
        let app = app();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = tokio::task::spawn_blocking(move || gate.recv());
        let body: String = (0..25_000)
            .map(|i| format!("{{\"i\":{i},\"pad\":\"abcdefghijklmnopqrstuvwxyz\"}}\n"))
            .collect();
        assert!(body.len() > 1024 * 1024, "{}", body.len());
        let router = app.router.clone();
        let request = post("/v1/events", "application/x-ndjson", body.clone());
        let client = tokio::spawn(async move { send(&router, request).await });
        // Read in one piece, so the handler has gone on to the pool when this runs again.
        until_held(&app, body.len()).await;
        client.abort();
        assert!(client.await.is_err_and(|e| e.is_cancelled()));
        assert!(
            app.state.producer().inflight_bytes() >= body.len(),
            "the body was let go while the validation still holds it: {} held",
            app.state.producer().inflight_bytes()
        );
        release.send(()).unwrap();
        gate.await.unwrap().unwrap();
        // The pool runs its queue in order: a task queued now ends after the validation.
        tokio::task::spawn_blocking(|| ()).await.unwrap();
        assert_eq!(app.state.producer().inflight_bytes(), 0);
        assert!(app.sink.records().is_empty(), "nothing is sent for it");
    });
}

/// An upload whose first piece is `{"a":"` and whose next pieces are `shared` cut every
/// `piece` bytes, as hyper hands out slices of its read buffer; resolves once every piece is
/// let go of (copied), the body still open. The answer and the sender to end the body with.
async fn upload_in_pieces(
    app: &support::TestApp,
    shared: &Bytes,
    piece: usize,
) -> (
    tokio::task::JoinHandle<support::Answer>,
    futures::channel::mpsc::UnboundedSender<Result<Bytes, std::io::Error>>,
) {
    let (request, pieces) = streamed_json();
    let router = app.router.clone();
    let answer = tokio::spawn(async move { send(&router, request).await });
    pieces
        .unbounded_send(Ok(Bytes::from_static(b"{\"a\":\"")))
        .unwrap();
    for start in (0..shared.len()).step_by(piece) {
        let end = (start + piece).min(shared.len());
        pieces.unbounded_send(Ok(shared.slice(start..end))).unwrap();
    }
    tokio::time::timeout(Duration::from_secs(10), async {
        while !shared.is_unique() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the pieces are let go of as they are copied, before the body ends");
    (answer, pieces)
}

/// A body that arrives in many pieces is copied into one buffer as it comes, and the pieces let
/// go of: over a real connection each piece is a slice of hyper's read buffer, and a body kept
/// as thousands of pieces (a byte per packet, 1-byte chunks) held a buffer each, far more than
/// the cap counted (helper-68).
#[tokio::test]
async fn the_pieces_of_a_body_are_not_kept_while_it_arrives() {
    let app = app();
    // 1,000 one-byte pieces.
    let shared = Bytes::from(vec![b'x'; 1000]);
    let (answer, pieces) = upload_in_pieces(&app, &shared, 1).await;
    let held = app.state.producer().inflight_bytes();
    assert!(held >= 1006, "the bytes received are held: {held}");
    pieces
        .unbounded_send(Ok(Bytes::from_static(b"\"}")))
        .unwrap();
    drop(pieces);
    let a = answer.await.unwrap();
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let event = format!("{{\"a\":\"{}\"}}\n", "x".repeat(1000));
    assert_eq!(app.sink.records(), vec![Bytes::from(event)]);
    assert_eq!(app.state.producer().inflight_bytes(), 0);
}

/// The buffer a body in pieces is copied into grows by doubling but never past the body
/// limit, so what the cap counts for it stays within the limit (helper-70: `reserve` doubled
/// past it, and allocated before counting).
#[tokio::test]
async fn the_buffer_of_a_body_in_pieces_never_counts_more_than_the_limit() {
    let app = app_with(
        FakeSink::ok(),
        Options {
            max_body_bytes: 1000,
            ..Options::default()
        },
    );
    // Nine pieces of 100 bytes.
    let shared = Bytes::from(vec![b'x'; 900]);
    let (answer, pieces) = upload_in_pieces(&app, &shared, 100).await;
    let held = app.state.producer().inflight_bytes();
    assert!(
        (906..=1000).contains(&held),
        "held {held} for 906 bytes, limit 1000"
    );
    pieces
        .unbounded_send(Ok(Bytes::from_static(b"\"}")))
        .unwrap();
    drop(pieces);
    let a = answer.await.unwrap();
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(app.state.producer().inflight_bytes(), 0);
}
