//! The invocation contract through the public library API (what `firehose-local` calls):
//! one output per input, same ids, same order, valid results, and the response budget.

#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use serde_json::{Value, json};
use transform::event::{process_event_with_budget, process_event_with_limits};
use transform::{InvocationError, process_event, process_event_with_stats};

const NOW: i64 = 1_770_249_600_000;

fn event(records: &[(&str, &str)]) -> Vec<u8> {
    let records: Vec<Value> = records
        .iter()
        .map(|(id, data)| json!({"recordId": id, "approximateArrivalTimestamp": NOW, "data": data}))
        .collect();
    serde_json::to_vec(&json!({"invocationId": "i", "region": "us-east-1", "records": records}))
        .unwrap()
}

fn parse(response: &[u8]) -> Vec<(String, String, String)> {
    let value: Value = serde_json::from_slice(response).unwrap();
    value["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            // Exactly the three members Firehose requires, nothing else.
            assert_eq!(r.as_object().unwrap().len(), 3, "{r}");
            (
                r["recordId"].as_str().unwrap().to_owned(),
                r["result"].as_str().unwrap().to_owned(),
                r["data"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn every_record_is_answered_in_order_with_its_id() {
    let ok = STANDARD.encode(br#"{"a":1}"#);
    let input = [
        ("1", ok.as_str()),
        ("2", ""),
        ("3", "!!"),
        ("4", ok.as_str()),
    ];
    let (response, stats) = process_event_with_stats(&event(&input), NOW).unwrap();
    let out = parse(&response);
    let summary: Vec<(&str, &str)> = out
        .iter()
        .map(|(id, r, _)| (id.as_str(), r.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("1", "Ok"),
            ("2", "Dropped"),
            ("3", "ProcessingFailed"),
            ("4", "Ok")
        ]
    );
    assert_eq!(out[2].2, "!!");
    assert_eq!(
        (stats.records, stats.ok, stats.dropped, stats.failed),
        (4, 2, 1, 1)
    );
    assert_eq!(stats.failed_invalid_base64, 1);
    assert_eq!(stats.response_bytes, response.len());
    assert_eq!(
        stats.failures.listed,
        [("3".to_owned(), transform::FailureReason::InvalidBase64)]
    );
    assert_eq!(stats.source.invocation_id.as_deref(), Some("i"));
    assert_eq!(stats.source.delivery_stream_arn, None);
}

#[test]
fn the_first_failures_are_kept_for_the_log_with_the_event_source() {
    let gzip = STANDARD.encode(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\x03\x00");
    let ids: Vec<String> = (0..8).map(|i| format!("r{i}")).collect();
    let records: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| json!({"recordId": id, "data": if i == 0 { gzip.as_str() } else { "!!" }}))
        .collect();
    let packed = serde_json::to_vec(&json!({
        "invocationId": "inv-1",
        "deliveryStreamArn": "arn:aws:firehose:eu-west-1:123456789012:deliverystream/a",
        "records": records,
    }))
    .unwrap();
    // An escape in the id is read as JSON reads it.
    let escaped = String::from_utf8(packed)
        .unwrap()
        .replace("inv-1", r"inv-\u0031");
    let (_, stats) = process_event_with_stats(escaped.as_bytes(), NOW).unwrap();
    assert_eq!((stats.failed, stats.failed_gzip_compressed), (8, 1));
    let listed: Vec<(&str, &str)> = stats
        .failures
        .listed
        .iter()
        .map(|(id, reason)| (id.as_str(), reason.code()))
        .collect();
    assert_eq!(
        listed,
        [
            ("r0", "gzip_compressed"),
            ("r1", "invalid_base64"),
            ("r2", "invalid_base64"),
            ("r3", "invalid_base64"),
            ("r4", "invalid_base64")
        ]
    );
    assert_eq!(stats.failures.unlisted, 3);
    assert_eq!(stats.source.invocation_id.as_deref(), Some("inv-1"));
    assert_eq!(
        stats.source.delivery_stream_arn.as_deref(),
        Some("arn:aws:firehose:eu-west-1:123456789012:deliverystream/a")
    );
    // NDJSON in one record is enriched line by line; broken JSON is wrapped, and both counted.
    let lines = STANDARD.encode(b"{\"a\":1}\n{\"b\":2}\n");
    let broken = STANDARD.encode(br#"{"latency":NaN}"#);
    let (response, stats) =
        process_event_with_stats(&event(&[("l", &lines), ("n", &broken)]), NOW).unwrap();
    assert_eq!(
        (stats.ok, stats.ok_lines, stats.ok_broken_object),
        (2, 1, 1)
    );
    let out = parse(&response);
    let text = String::from_utf8(STANDARD.decode(&out[0].2).unwrap()).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.lines().all(|l| l.ends_with(r#""_record_id":"l"}"#)),
        "{text}"
    );
    // Not strings: left out of the log, the event is still answered.
    let odd = br#"{"invocationId": 7, "deliveryStreamArn": null, "records": []}"#;
    let (_, stats) = process_event_with_stats(odd, NOW).unwrap();
    assert_eq!(stats.source, transform::EventSource::default());
}

#[test]
fn an_empty_batch_gets_an_empty_answer() {
    assert_eq!(
        process_event(br#"{"records":[]}"#, NOW).unwrap(),
        br#"{"records":[]}"#
    );
}

#[test]
fn json_escapes_in_the_event_are_understood() {
    // `\u003d` is `=` and `\/` is `/`: still the base64 of `{}` and a plain id.
    let response = process_event(
        br#"{"records":[{"recordId":"a\/b","data":"e30\u003d"}]}"#,
        NOW,
    )
    .unwrap();
    let out = parse(&response);
    assert_eq!((out[0].0.as_str(), out[0].1.as_str()), ("a/b", "Ok"));
    let payload: Value = serde_json::from_slice(&STANDARD.decode(&out[0].2).unwrap()).unwrap();
    assert_eq!(payload["_record_id"], "a/b");
}

#[test]
fn events_that_are_not_firehose_events_are_rejected_without_echoing_data() {
    for bad in [
        &br#"{"Records":[{"eventSource":"aws:s3"}]}"#[..],
        br#"{"records":[{"recordId":"1"}]}"#,
        br#"{"records":[{"recordId":"1","data":12345}]}"#,
        br#"{"records":{"recordId":"1","data":"e30="}}"#,
        br#"[{"records":[]}]"#,
        b"secret-token-123",
        b"",
    ] {
        let error = process_event(bad, NOW).unwrap_err();
        assert!(
            matches!(error, InvocationError::NotFirehoseEvent { .. }),
            "{error}"
        );
        let message = error.to_string();
        assert!(
            !message.contains("12345") && !message.contains("secret"),
            "{message}"
        );
    }
    let missing = process_event(br#"{"records":[{"data":"e30="}]}"#, NOW).unwrap_err();
    assert!(
        missing.to_string().contains("missing field `recordId`"),
        "{missing}"
    );
}

/// Records that do not fit enriched are delivered as they came (`Ok`, without our members),
/// not sent to the backup: every record is `Ok`, as many as fit enriched. (A fallback leaves a
/// little room, so a later record may be enriched again.)
#[test]
fn records_that_do_not_fit_enriched_are_delivered_as_they_came() {
    // As `ingest` sends them: one line each, then `\n` (left out of the unenriched record).
    let sent = "{\"k\":\"v\"}\n";
    let data = STANDARD.encode(sent);
    let input: Vec<(String, String)> = (0..100)
        .map(|i| (format!("id-{i:03}"), data.clone()))
        .collect();
    let refs: Vec<(&str, &str)> = input
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let event = event(&refs);
    let (full, _) = process_event_with_stats(&event, NOW).unwrap();
    // A budget between "all unchanged" and "all enriched".
    let budget = full.len() * 3 / 4;
    let (response, stats) = process_event_with_budget(&event, NOW, budget).unwrap();
    assert!(response.len() <= budget);
    let out = parse(&response);
    assert_eq!(out.len(), 100);
    assert_eq!(stats.ok, 100, "{stats:?}");
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert!(stats.unenriched_over_budget > 0, "{stats:?}");
    let mut enriched = 0;
    for (i, (id, result, out_data)) in out.iter().enumerate() {
        assert_eq!(id, &format!("id-{i:03}"));
        assert_eq!(result, "Ok");
        let payload = String::from_utf8(STANDARD.decode(out_data).unwrap()).unwrap();
        if payload.contains("_record_id") {
            enriched += 1;
        } else {
            assert_eq!(
                payload, "{\"k\":\"v\"}",
                "as it came, without its line ending"
            );
        }
    }
    assert_eq!(enriched + stats.unenriched_over_budget, 100);
}

/// What "as it came" is for each kind of record: JSON on one line (a pretty-printed object's
/// line breaks, the CR inside a line of packed objects, made spaces), an array's objects one
/// per line as they go enriched, text with its own line breaks, and never a BOM or the one
/// trailing line ending.
#[test]
fn unenriched_records_are_json_on_one_line_and_text_as_sent() {
    let sent = [
        (
            "lines",
            "{\"a\":1,\r\"b\":2}\n{\"c\":3}\n",
            "{\"a\":1, \"b\":2}\n{\"c\":3}",
        ),
        ("pretty", "{\r\n  \"a\": 1\n}\n", "{    \"a\": 1 }"),
        ("text", "line one\nline two\r\n", "line one\nline two"),
        ("bom", "\u{feff}{\"x\":1}", "{\"x\":1}"),
        ("plain", "{\"y\":2}", "{\"y\":2}"),
        // Last: its fallback leaves the most over (brackets and commas), which an object after
        // it could use to go enriched.
        (
            "array",
            "[{\"a\":1},\n {\"b\":\r\n2}]\n",
            "{\"a\":1}\n{\"b\":  2}",
        ),
    ];
    let encoded: Vec<(String, String)> = sent
        .iter()
        .map(|(id, data, _)| ((*id).to_owned(), STANDARD.encode(data)))
        .collect();
    let refs: Vec<(&str, &str)> = encoded
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let event = event(&refs);
    // The smallest budget there is: every record's fallback and nothing more, so none fits
    // enriched (our members add ~130 bytes, more than the fallbacks leave over).
    let Err(InvocationError::ResponseOverBudget { needed, .. }) =
        process_event_with_budget(&event, NOW, 0)
    else {
        panic!("a budget of 0 is too small");
    };
    let (response, stats) = process_event_with_budget(&event, NOW, needed).unwrap();
    assert_eq!(stats.unenriched_over_budget, sent.len(), "{stats:?}");
    for ((id, result, data), (sent_id, sent_data, expected)) in parse(&response).iter().zip(sent) {
        assert_eq!((id.as_str(), result.as_str()), (sent_id, "Ok"));
        let payload = String::from_utf8(STANDARD.decode(data).unwrap()).unwrap();
        assert_eq!(payload, expected, "{id}");
        if payload == sent_data {
            // Unchanged: the original literal, not a new encoding of it.
            assert_eq!(data, &STANDARD.encode(sent_data));
        }
    }
}

/// A 3 MB processor buffer of ~190-byte events makes a Firehose event just under 6 MiB whose
/// worst-case response (every record `ProcessingFailed`) is over the 6,000,000-byte enrichment
/// budget (helper-88: the whole batch went to processing-failed). That fits Lambda's 6 MiB, so
/// the records go out unenriched instead of the invocation being refused.
#[test]
fn an_event_near_six_mib_of_small_records_is_answered_unenriched_not_refused() {
    use firehose_formats::limits::{LAMBDA_MAX_PAYLOAD_BYTES, LAMBDA_RESPONSE_BUDGET};
    let data = STANDARD.encode(format!(r#"{{"message":"{}"}}"#, "x".repeat(177)));
    assert_eq!(STANDARD.decode(&data).unwrap().len(), 191);
    let ids: Vec<String> = (0..16_450).map(|i| format!("{i:056}")).collect();
    let refs: Vec<(&str, &str)> = ids.iter().map(|id| (id.as_str(), data.as_str())).collect();
    let event = event(&refs);
    assert!(event.len() <= LAMBDA_MAX_PAYLOAD_BYTES, "{}", event.len());
    // The regime: refused under the budget alone.
    assert!(matches!(
        process_event_with_budget(&event, NOW, LAMBDA_RESPONSE_BUDGET),
        Err(InvocationError::ResponseOverBudget { .. })
    ));
    let (response, stats) = process_event_with_stats(&event, NOW).unwrap();
    // The refusal reserved every record's worst case (`ProcessingFailed`); answered `Ok` as
    // they came, they take 14 bytes less each, here even under the budget.
    assert!(
        response.len() <= LAMBDA_MAX_PAYLOAD_BYTES,
        "{}",
        response.len()
    );
    // As the reservation frees up, the last records are enriched; the rest go as they came.
    assert!(stats.unenriched_over_budget > 0, "{stats:?}");
    let out = parse(&response);
    assert_eq!(out.len(), ids.len());
    let mut unchanged = 0;
    for ((id, result, sent), want) in out.iter().zip(&ids) {
        assert_eq!((id, result.as_str()), (want, "Ok"));
        if sent == &data {
            unchanged += 1;
        } else {
            let enriched: Value = serde_json::from_slice(&STANDARD.decode(sent).unwrap()).unwrap();
            assert_eq!(enriched["message"], "x".repeat(177), "{enriched}");
        }
    }
    assert_eq!(unchanged, stats.unenriched_over_budget);
}

#[test]
fn an_event_that_cannot_fit_even_unchanged_is_an_error() {
    let event = event(&[("1", "e30="), ("2", "e30=")]);
    let error = process_event_with_budget(&event, NOW, 40).unwrap_err();
    assert!(
        matches!(
            error,
            InvocationError::ResponseOverBudget {
                records: 2,
                budget: 40,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn unknown_members_of_any_shape_are_skipped() {
    let event =
        br#" { "invocationId" : "i" , "nested": {"records": "not these", "a": [1, {"b": null}]},
        "records" : [ { "kinesisRecordMetadata": {"shardId": "s", "seq": [1.5e3, -0]},
                        "data" : "e30=" , "recordId" : "r\u0031", "extra": true } ] ,
        "region": "us-east-1" } "#;
    let out = parse(&process_event(event, NOW).unwrap());
    assert_eq!((out[0].0.as_str(), out[0].1.as_str()), ("r1", "Ok"));
    let payload: Value = serde_json::from_slice(&STANDARD.decode(&out[0].2).unwrap()).unwrap();
    assert_eq!(payload["_record_id"], "r1");
}

#[test]
fn malformed_events_are_refused_with_what_and_where() {
    for (bad, reason) in [
        (&br#"{"records":[]} x"#[..], "invalid JSON at byte 15"),
        (
            br#"{"records":[],"records":[]}"#,
            "duplicate field `records`",
        ),
        (
            br#"{"records":[{"recordId":"1","data":"e30=","data":"e30="}]}"#,
            "record 0: duplicate field `data`",
        ),
        (
            br#"{"records":[{"recordId":"1","data":"e30="},7]}"#,
            "record 1 is not an object",
        ),
        (
            br#"{"records":[{"recordId":1,"data":"e30="}]}"#,
            "record 0: `recordId` is not a string",
        ),
        (br#"{"records":"e30="}"#, "`records` is not an array"),
        (br#"{"other":[1,]}"#, "invalid JSON at byte 12"),
        (
            br#"{"records":[{"recordId":"1","data":"e30="}"#,
            "invalid JSON at byte 42",
        ),
        (
            br#"{"records":[{"recordId":"1","data":"a	b"}]}"#,
            "invalid JSON",
        ),
        (
            b"{\"records\":[{\"recordId\":\"1\",\"data\":\"\xff\"}]}",
            "not UTF-8",
        ),
        (br#"{}"#, "missing field `records`"),
        (
            b"{\"records\":[{\"recordId\":\"\xc3\",\"data\":\"e30=\"}]}",
            "not UTF-8",
        ),
        (
            b"{\"records\":[{\"recordId\":\"1\",\"data\":\"e30=\"}],\"x\":\"\xe2\x82\"}",
            "not UTF-8",
        ),
        (
            b"{\"x\":\"\xf0\",\"records\":[{\"recordId\":\"1\",\"data\":\"e30=\"}]}",
            "not UTF-8",
        ),
        (
            b"{\"records\":[{\"recordId\":\"1\",\"data\":\"e30=\xff\"}]}",
            "not UTF-8",
        ),
    ] {
        let error = process_event(bad, NOW).unwrap_err();
        assert!(
            matches!(error, InvocationError::NotFirehoseEvent { .. })
                && error.to_string().contains(reason),
            "{}: {error}",
            String::from_utf8_lossy(bad)
        );
    }
}

/// An event of `payloads` under the ids `r0`, `r1`, …: the ids, the event, and the length of its
/// response without a limit in the way.
fn numbered_event(payloads: &[String]) -> (Vec<String>, Vec<u8>, usize) {
    let ids: Vec<String> = (0..payloads.len()).map(|i| format!("r{i}")).collect();
    let refs: Vec<(&str, &str)> = ids
        .iter()
        .map(String::as_str)
        .zip(payloads.iter().map(String::as_str))
        .collect();
    let event = event(&refs);
    let (full, _) = process_event_with_stats(&event, NOW).unwrap();
    (ids, event, full.len())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any record id (escaped however serde_json escapes it) comes back equal, in the response
    /// and in `_record_id`; any `data` that is not base64 comes back as it was.
    #[test]
    fn any_ids_and_data_round_trip(
        records in prop::collection::vec((any::<String>(), prop_oneof![
            any::<String>(),
            "[ -~]{0,50}".prop_map(|s| STANDARD.encode(s)),
        ]), 0..20),
    ) {
        let refs: Vec<(&str, &str)> = records.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let out = parse(&process_event(&event(&refs), NOW).unwrap());
        prop_assert_eq!(out.len(), records.len());
        for ((id, result, data), (want_id, want_data)) in out.iter().zip(&records) {
            prop_assert_eq!(id, want_id);
            match result.as_str() {
                "Ok" => {
                    let payload: Value = serde_json::from_slice(&STANDARD.decode(data).unwrap()).unwrap();
                    prop_assert_eq!(payload["_record_id"].as_str(), Some(want_id.as_str()));
                }
                _ => prop_assert_eq!(data, want_data),
            }
        }
    }

    /// Whatever the records and the budget: the response is valid, answers every record in
    /// order, and never exceeds the budget.
    #[test]
    fn the_budget_holds_for_any_batch(
        payloads in prop::collection::vec(
            prop_oneof![
                "[ -~]{0,300}".prop_map(|s| STANDARD.encode(s)),
                "\\{\"[a-z]{1,8}\":[0-9]{1,30}\\}".prop_map(|s| STANDARD.encode(s)),
                "[A-Za-z0-9+/=*\"\\\\]{0,40}",
            ],
            0..60,
        ),
        budget_fraction in 0.3f64..1.5,
    ) {
        let (ids, event, full) = numbered_event(&payloads);
        let budget = ((full as f64) * budget_fraction) as usize;
        match process_event_with_budget(&event, NOW, budget) {
            Ok((response, stats)) => {
                prop_assert!(response.len() <= budget);
                let out = parse(&response);
                prop_assert_eq!(out.len(), payloads.len());
                for (i, (id, result, data)) in out.iter().enumerate() {
                    prop_assert_eq!(id, &ids[i]);
                    if result != "Ok" {
                        prop_assert_eq!(data, &payloads[i]);
                    }
                }
                prop_assert_eq!(stats.ok + stats.dropped + stats.failed, payloads.len());
            }
            Err(InvocationError::ResponseOverBudget { needed, .. }) => prop_assert!(needed > budget),
            Err(other) => prop_assert!(false, "unexpected error {}", other),
        }
    }

    /// With a ceiling above the budget (process_event's 6,000,000 and 6 MiB, scaled down): the
    /// response never exceeds the ceiling, stays within the budget whenever the budget alone
    /// would have taken the event, and the invocation is refused only when even the worst case
    /// would pass the ceiling.
    #[test]
    fn the_ceiling_and_the_budget_hold_for_any_batch(
        payloads in prop::collection::vec(
            prop_oneof![
                "[ -~]{0,300}".prop_map(|s| STANDARD.encode(s)),
                "\\{\"[a-z]{1,8}\":[0-9]{1,30}\\}".prop_map(|s| STANDARD.encode(s)),
            ],
            0..60,
        ),
        budget_fraction in 0.2f64..1.2,
        headroom in 1.0f64..1.5,
    ) {
        let (ids, event, full) = numbered_event(&payloads);
        let budget = ((full as f64) * budget_fraction) as usize;
        let ceiling = ((budget as f64) * headroom) as usize;
        let refused_at_budget = process_event_with_budget(&event, NOW, budget).is_err();
        match process_event_with_limits(&event, NOW, budget, ceiling) {
            Ok((response, stats)) => {
                prop_assert!(response.len() <= ceiling);
                // Within the budget whenever the budget alone would have taken the event.
                if !refused_at_budget {
                    prop_assert!(response.len() <= budget);
                }
                prop_assert_eq!(stats.ok + stats.dropped + stats.failed, payloads.len());
                let out = parse(&response);
                prop_assert_eq!(out.len(), payloads.len());
                for (i, (id, _, _)) in out.iter().enumerate() {
                    prop_assert_eq!(id, &ids[i]);
                }
            }
            Err(InvocationError::ResponseOverBudget { needed, budget: limit, .. }) => {
                prop_assert_eq!(limit, ceiling);
                prop_assert!(needed > ceiling);
                prop_assert!(refused_at_budget);
            }
            Err(other) => prop_assert!(false, "unexpected error {}", other),
        }
    }
}
