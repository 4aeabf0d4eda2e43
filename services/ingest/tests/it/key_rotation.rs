//! API-key rotation through the built binary: the key file is replaced while `ingest` runs
//! (as a Kubernetes Secret update does: a new file renamed over the old one), the new key is
//! accepted within `INGEST_API_KEYS_RELOAD`, and the removed key is refused from then on.
//! `src/auth.rs` has no grace period for removed keys: the key set is swapped whole, so a
//! removed key stops working the moment its replacement starts to.
//! A broken edit afterwards keeps the keys in force.

use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::binary::{Ingest, admin_addr, start_fake_firehose, wait_log};
use crate::support::KeyFile;

const KEY_A: &str = "key-a-before-rotation";
const KEY_B: &str = "key-b-after-rotation";

/// The status of one event posted with `Authorization: Bearer <key>`.
async fn post_with(http: &reqwest::Client, ingest: &Ingest, key: &str) -> u16 {
    http.post(format!("{}/v1/events", ingest.url))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(r#"{"rotation":"test"}"#)
        .send()
        .await
        .expect("ingest answers")
        .status()
        .as_u16()
}

#[tokio::test]
async fn rotated_key_file_is_picked_up_and_the_removed_key_refused() {
    let (firehose, _fake) = start_fake_firehose().await;
    let keys = KeyFile::new(&format!("# before\n{KEY_A}\nkey-z-never-used\n"));
    let mut ingest = Ingest::start(
        &firehose,
        "keys",
        &[
            ("INGEST_API_KEYS_FILE", keys.path_str()),
            ("INGEST_API_KEYS_RELOAD", "1s"),
        ],
    )
    .await;
    let http = reqwest::Client::new();

    assert_eq!(post_with(&http, &ingest, KEY_A).await, 200, "key A works");
    assert_eq!(post_with(&http, &ingest, KEY_B).await, 401, "key B not yet");
    let metrics_url = format!("http://{}/metrics", admin_addr(&ingest));
    let metric = |name: &'static str| {
        let (http, url) = (http.clone(), metrics_url.clone());
        async move {
            let text = http.get(&url).send().await.unwrap().text().await.unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
        }
    };
    assert!((metric("ingest_api_keys").await - 2.0).abs() < f64::EPSILON);

    // Key B as a digest line: the file need not hold the usable secret.
    let digest = hex::encode(Sha256::digest(KEY_B.as_bytes()));
    keys.replace(&format!("# rotated\nsha256:{digest}\n"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut polls = 0;
    loop {
        polls += 1;
        match post_with(&http, &ingest, KEY_B).await {
            200 => break,
            401 => {}
            other => panic!("key B answered {other} while waiting for the reload"),
        }
        assert!(
            Instant::now() < deadline,
            "key B still refused after 30 s ({polls} tries) with INGEST_API_KEYS_RELOAD=1s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // No grace period: the set that holds B no longer holds A.
    assert_eq!(
        post_with(&http, &ingest, KEY_A).await,
        401,
        "key A refused once B is in force"
    );
    let reloaded = wait_log(&mut ingest.logs, |v| v["message"] == "API keys reloaded").await;
    assert_eq!(reloaded["keys"], 1);
    assert!((metric("ingest_api_keys").await - 1.0).abs() < f64::EPSILON);
    assert!(metric("ingest_api_key_file_errors_total").await.abs() < f64::EPSILON);

    // A broken edit is reported and changes nothing.
    keys.replace("sha256:not-a-digest\n");
    let refused = wait_log(&mut ingest.logs, |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("API-key file changed but cannot be used"))
    })
    .await;
    assert_eq!(refused["level"], "ERROR");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("line 1")),
        "{refused}"
    );
    assert_eq!(post_with(&http, &ingest, KEY_B).await, 200, "B still works");
    assert_eq!(
        post_with(&http, &ingest, KEY_A).await,
        401,
        "A still refused"
    );
    // What an alert sees: the failed look counted, the keys in force unchanged.
    assert!(metric("ingest_api_key_file_errors_total").await >= 1.0);
    assert!((metric("ingest_api_keys").await - 1.0).abs() < f64::EPSILON);
    let status = ingest.terminate().await;
    assert!(status.success(), "exit status {status}");
}
