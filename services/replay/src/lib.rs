//! `replay`: gets the records Firehose put in its S3 backup delivered, once the cause is fixed.
//!
//! When New Relic was down (`http-endpoint-failed/`), the transform rejected records
//! (`processing-failed/`), or an `AllData` backup has to be sent again, this reads the objects,
//! decodes every format Firehose writes there, and sends the records to a delivery stream (with
//! the front door's own producer) or to a front door, at a chosen rate, recording each finished
//! object in a checkpoint so that a re-run resumes and never sends a finished object twice.
//!
//! It is its own crate and binary, not a subcommand of `ingest`, so that its dependencies
//! (`aws-sdk-s3`, `indicatif`) stay out of the front door's image.
//!
//! Layout:
//! - [`config`]: flags and environment, checked up front.
//! - [`source`]: listing and fetching objects (S3 or a directory).
//! - [`layout`]: what a key says (error type, hour), for the filters.
//! - [`read`]: bytes of an object → records, with unreadable lines reported.
//! - [`target`]: the [`target::Target`] trait; [`stream`] and [`http`] implement it.
//! - [`checkpoint`]: finished objects and progress, written atomically; [`journal`] keeps the
//!   changes between two such writes.
//! - [`rate`]: the pacer behind `--rate`.
//! - [`age`]: events New Relic will drop for their `timestamp`'s age, counted.
//! - [`replay`]: the loop that ties them together; [`summary`] is what it returns.
//! - [`progress`]: the terminal progress bar.
//! - [`error`]: what stops a replay before it starts.

pub mod age;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod http;
pub mod journal;
pub mod layout;
pub mod progress;
pub mod rate;
pub mod read;
pub mod replay;
pub mod source;
pub mod stream;
pub mod summary;
pub mod target;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use tokio_util::sync::CancellationToken;

use crate::checkpoint::Checkpoint;
use crate::config::{Config, TargetChoice};
use crate::error::AppError;
use crate::http::{HttpTarget, HttpTargetConfig};
use crate::progress::Progress;
use crate::replay::{Options, Run, Selection};
use crate::source::{Location, Source};
use crate::stream::{StreamLocation, StreamTarget};
use crate::summary::Summary;
use crate::target::{NoTarget, Target};

/// Runs the replay `config` describes.
///
/// `preview` receives the dry-run listing; `cancel` stops the run after the batch in flight
/// (wire it to Ctrl-C). The progress bar is drawn when stderr is a terminal.
///
/// # Errors
/// See [`AppError`]. A replay that ran but did not deliver everything is `Ok` with a
/// [`Summary`] that says so.
pub async fn run(
    config: &Config,
    preview: &mut (dyn Write + Send),
    cancel: &CancellationToken,
) -> Result<Summary, AppError> {
    let (location, target_choice) = config.validate()?;
    let needs_aws =
        matches!(location, Location::S3 { .. }) || matches!(target_choice, TargetChoice::Stream(_));
    let sdk = if needs_aws {
        Some(aws_config(config).await?)
    } else {
        None
    };
    let source = match (&location, &sdk) {
        (Location::S3 { bucket, prefix }, Some(sdk)) => Source::S3 {
            client: s3_client(sdk, config),
            bucket: bucket.clone(),
            prefix: prefix.clone(),
        },
        (Location::Dir(path), _) => Source::Dir(path.clone()),
        (Location::S3 { .. }, None) => return Err(AppError::NoRegion),
    };

    let mut selection = Selection {
        error_types: config.error_types.iter().map(|&t| t.into()).collect(),
        since: config.since.map(layout::HourBound::as_start),
        until: config.until.map(layout::HourBound::as_end),
        keys: config.keys.clone(),
        exclude_keys: Vec::new(),
    };
    if let Location::S3 { prefix, .. } = &location {
        // A `--key` may be the object's key as the summary prints it, or its path below the
        // source, as for a directory (the summary of a directory source prints those).
        for key in &mut selection.keys {
            if !key.starts_with(prefix.as_str()) {
                key.insert_str(0, prefix);
            }
        }
    }
    if let Location::Dir(dir) = &location {
        // A checkpoint kept inside the source directory is not a backup object.
        if let (Ok(cp), Ok(dir)) = (
            std::path::absolute(&config.checkpoint),
            std::path::absolute(dir),
        ) && let Ok(relative) = cp.strip_prefix(&dir)
        {
            // Nor are the problems file and the journal beside it.
            let problems = checkpoint::problems_path(relative);
            let journal = journal::path_of(relative);
            for path in [relative, problems.as_path(), journal.as_path()] {
                selection
                    .exclude_keys
                    .push(path.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let options = Options {
        selection,
        dry_run: config.dry_run,
        show: config.show,
        rate: config.rate,
        restamp: config.restamp,
    };
    let source_name = match &source {
        Source::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}"),
        Source::Dir(path) => std::path::absolute(path)
            .unwrap_or_else(|_| path.clone())
            .display()
            .to_string(),
    };
    // The checkpoint is opened once the target is known (and, for a stream, checked), so that
    // it is checked against the target's full name.
    // A dry run reads the file without its lock and never writes it.
    let open = |target: &str| {
        if config.dry_run {
            Checkpoint::open_read_only(&config.checkpoint, &source_name, target)
        } else {
            Checkpoint::open(&config.checkpoint, &source_name, target)
        }
    };

    match target_choice {
        TargetChoice::Stream(stream) => {
            let Some(sdk) = &sdk else {
                return Err(AppError::NoRegion);
            };
            // The SDK's own retries off for Firehose calls: the producer retries.
            let client = ingest::sink::firehose_client(sdk);
            let Some(region) = client.config().region() else {
                return Err(AppError::NoRegion);
            };
            let location = StreamLocation {
                region: region.to_string(),
                endpoint: firehose_endpoint(sdk),
            };
            let producer = ingest::producer::ProducerConfig {
                retry_budget: Duration::from_secs(config.retry_budget_secs),
                // One batch in flight at a time: the checkpoint stays exact (see `replay`).
                max_concurrent_calls: 1,
                ..ingest::producer::ProducerConfig::default()
            };
            let target = StreamTarget::start(Arc::new(client), &stream, location, producer)
                .await?
                .with_cancel(cancel.clone());
            let checkpoint = open(&target.describe())?;
            drive(&source, &target, checkpoint, &options, preview, cancel).await
        }
        TargetChoice::Http(url) => {
            let mut http = HttpTargetConfig::new(url);
            http.api_key.clone_from(&config.http_api_key);
            http.max_attempts = config.http_max_attempts;
            http.events_per_request = config.http_batch;
            let target = HttpTarget::new(http)?.with_cancel(cancel.clone());
            let checkpoint = open(&target.describe())?;
            drive(&source, &target, checkpoint, &options, preview, cancel).await
        }
        TargetChoice::None => {
            let checkpoint = Checkpoint::open_without_target(&config.checkpoint, &source_name)?;
            drive(&source, &NoTarget, checkpoint, &options, preview, cancel).await
        }
    }
}

async fn drive<T: Target>(
    source: &Source,
    target: &T,
    mut checkpoint: Checkpoint,
    options: &Options,
    preview: &mut (dyn Write + Send),
    cancel: &CancellationToken,
) -> Result<Summary, AppError> {
    let progress = Progress::for_terminal();
    let summary = replay::replay(
        Run {
            source,
            target,
            checkpoint: &mut checkpoint,
            progress: &progress,
            preview,
            cancel,
        },
        options,
    )
    .await?;
    Ok(summary)
}

/// The S3 client for the source: the shared AWS settings, path-style addressing when asked,
/// and the bucket's own region when `--source-region` names one (a bucket in another region
/// than the stream; the Rust SDK does not follow S3's redirect to the bucket's region).
fn s3_client(sdk: &SdkConfig, config: &Config) -> aws_sdk_s3::Client {
    let mut s3 =
        aws_sdk_s3::config::Builder::from(sdk).force_path_style(config.s3_force_path_style);
    if let Some(region) = &config.source_region {
        s3 = s3.region(Region::new(region.clone()));
    }
    aws_sdk_s3::Client::from_conf(s3.build())
}

/// The endpoint override the Firehose client uses, resolved the way `aws-sdk-firehose` resolves
/// it (its `From<&SdkConfig>`): one set in code (`--endpoint-url`, or `AWS_ENDPOINT_URL` read by
/// the flag) wins; otherwise the service's own setting (`AWS_ENDPOINT_URL_FIREHOSE`, or
/// `endpoint_url` in the profile's `firehose` section), then the shared one. Reading only the
/// shared one named no endpoint when the records went to `AWS_ENDPOINT_URL_FIREHOSE`, so a
/// checkpoint written against a local or test stream could be resumed against the real one of
/// the same name, which never received the records it counts as done.
fn firehose_endpoint(sdk: &SdkConfig) -> Option<String> {
    let shared = || sdk.endpoint_url().map(str::to_owned);
    if sdk.get_origin("endpoint_url").is_client_config() {
        return shared();
    }
    let key = aws_types::service_config::ServiceConfigKey::builder()
        .service_id("Firehose")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok()?;
    sdk.service_config()
        .and_then(|service| service.load_config(key))
        .or_else(shared)
}

async fn aws_config(config: &Config) -> Result<SdkConfig, AppError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &config.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &config.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let sdk = loader.load().await;
    if sdk.region().is_none() {
        return Err(AppError::NoRegion);
    }
    Ok(sdk)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn sdk(region: &str) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .build()
    }

    #[test]
    fn the_source_region_moves_the_s3_calls_only() {
        let config = Config::try_parse_from([
            "replay",
            "s3://bucket/prefix/",
            "--dry-run",
            "--source-region",
            "eu-central-1",
        ])
        .unwrap();
        let s3 = s3_client(&sdk("us-east-1"), &config);
        assert_eq!(s3.config().region().unwrap().as_ref(), "eu-central-1");
        let firehose = ingest::sink::firehose_client(&sdk("us-east-1"));
        assert_eq!(firehose.config().region().unwrap().as_ref(), "us-east-1");

        let config =
            Config::try_parse_from(["replay", "s3://bucket/prefix/", "--dry-run"]).unwrap();
        let s3 = s3_client(&sdk("us-east-1"), &config);
        assert_eq!(s3.config().region().unwrap().as_ref(), "us-east-1");
    }

    /// The SDK configuration [`aws_config`] loads with `vars` as the whole environment (no
    /// profile files) and `flag` as `--endpoint-url`. The binary's `--endpoint-url` also reads
    /// `AWS_ENDPOINT_URL` (clap's `env`), so in the binary that variable always arrives as the
    /// flag; in `vars` it stands for a profile's shared `endpoint_url`.
    async fn sdk_from_env(flag: Option<&str>, vars: &[(&str, &str)]) -> SdkConfig {
        let mut env: Vec<(&str, &str)> = vec![
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ];
        env.extend_from_slice(vars);
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .env(aws_types::os_shim_internal::Env::from_slice(&env))
            .fs(aws_types::os_shim_internal::Fs::from_slice(&[]));
        if let Some(url) = flag {
            loader = loader.endpoint_url(url);
        }
        loader.load().await
    }

    /// Which of the three listeners (named by their URLs) the Firehose client built from `sdk`
    /// connects to.
    async fn endpoint_the_client_uses(
        sdk: &SdkConfig,
        listeners: [(&str, &tokio::net::TcpListener); 3],
    ) -> String {
        let client = ingest::sink::firehose_client(sdk);
        let call = tokio::spawn(async move {
            let _ = client
                .describe_delivery_stream()
                .delivery_stream_name("events")
                .send()
                .await;
        });
        let [(a, la), (b, lb), (c, lc)] = listeners;
        let connected = tokio::time::timeout(Duration::from_secs(30), async {
            tokio::select! {
                _ = la.accept() => a,
                _ = lb.accept() => b,
                _ = lc.accept() => c,
            }
        })
        .await
        .expect("the client connected to none of the endpoints");
        call.abort();
        connected.to_owned()
    }

    /// What is checked, the flag, the environment, and the endpoint expected.
    type Case<'a> = (&'a str, Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);

    #[tokio::test]
    async fn the_checkpoint_names_the_endpoint_the_firehose_client_uses() {
        let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
        let (shared, service, flag) = (
            bind().await.unwrap(),
            bind().await.unwrap(),
            bind().await.unwrap(),
        );
        let url = |l: &tokio::net::TcpListener| format!("http://{}", l.local_addr().unwrap());
        let (shared_url, service_url, flag_url) = (url(&shared), url(&service), url(&flag));
        let listeners = [
            (shared_url.as_str(), &shared),
            (service_url.as_str(), &service),
            (flag_url.as_str(), &flag),
        ];
        let service_only = [("AWS_ENDPOINT_URL_FIREHOSE", service_url.as_str())];
        let both = [
            ("AWS_ENDPOINT_URL", shared_url.as_str()),
            ("AWS_ENDPOINT_URL_FIREHOSE", service_url.as_str()),
        ];
        let shared_only = [("AWS_ENDPOINT_URL", shared_url.as_str())];
        let cases: [Case<'_>; 4] = [
            (
                "the service's own variable",
                None,
                &service_only,
                &service_url,
            ),
            (
                "the service's setting before a shared one from the profile",
                None,
                &both,
                &service_url,
            ),
            ("a shared setting alone", None, &shared_only, &shared_url),
            (
                "--endpoint-url (or AWS_ENDPOINT_URL, which it reads) before the service's variable",
                Some(&flag_url),
                &both,
                &flag_url,
            ),
        ];
        for (case, flag, vars, expected) in cases {
            let sdk = sdk_from_env(flag, vars).await;
            assert_eq!(firehose_endpoint(&sdk).as_deref(), Some(expected), "{case}");
            assert_eq!(
                endpoint_the_client_uses(&sdk, listeners).await,
                expected,
                "{case}: the SDK agrees"
            );
        }

        let sdk = sdk_from_env(None, &[]).await;
        assert_eq!(firehose_endpoint(&sdk), None, "no override");
    }
}
