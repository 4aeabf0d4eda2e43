//! What happens to `http-endpoint-failed` data replayed into the stream: it goes through the
//! transform a second time. Checked here against the real transform crate, not a description.

use base64::Engine as _;
use replay::layout::ObjectKind;
use replay::read::read_object;

use crate::support::fixture_dir;

#[test]
fn transforming_already_transformed_data_again_keeps_one_copy_of_each_added_field() {
    let key = "http-endpoint-failed/2026/11/25/09/events-1-2026-11-25-09-30-00-3c2d8e4f-6a7b-4c9d-8e0f-2a3b4c5d6e7f.gz";
    let body = std::fs::read(fixture_dir().join(key)).expect("fixture");
    let read = read_object(&ObjectKind::of_key(key), body.into()).expect("readable");
    assert_eq!(read.records.len(), 3);
    let b64 = base64::engine::general_purpose::STANDARD;
    for record in &read.records {
        let again = transform::transform_record(
            "new-record-id",
            &b64.encode(&record.data),
            1_800_000_000_000,
        );
        assert_eq!(again.result, transform::RecordResult::Ok);
        let out = b64.decode(&again.data).expect("base64 output");
        let text = String::from_utf8(out).expect("utf-8");
        for key in transform::ADDED_KEYS {
            assert_eq!(
                text.matches(&format!("\"{key}\":")).count(),
                1,
                "{key} once in {text}"
            );
        }
        let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let before: serde_json::Value = serde_json::from_slice(&record.data).expect("JSON");
        assert_eq!(value["id"], before["id"]);
        assert_eq!(value["message"], before["message"]);
        assert_eq!(
            value["_transformed_ts"], 1_800_000_000_000_i64,
            "the new time replaces the old"
        );
        assert_eq!(value["_record_id"], "new-record-id");
    }
}
