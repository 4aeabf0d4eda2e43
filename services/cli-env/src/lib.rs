//! Clap errors that name the environment variable as well as the flag.
//!
//! Every binary here (`ingest`, `firehose-local`, `replay`) takes each setting from a flag or
//! from an environment variable (clap's `env`). In a pod, a Lambda or a CI job it is almost
//! always the variable that holds the bad value, but clap's message names only the flag:
//! `invalid value 'abc' for '--linger <LINGER>'`. [`parse`] and [`name_the_variable`] add the
//! variable: `invalid value 'abc' for '--linger <LINGER> or INGEST_LINGER'`, and the same for
//! a missing required setting. Everything else about the error (kind, exit status 2, `--help`)
//! is clap's.

use clap::error::{ContextKind, ContextValue};
use clap::{CommandFactory, Parser};

/// Parses the flags and the environment into `P`; on an error prints clap's message, with the
/// variable named ([`name_the_variable`]), and exits (status 2; 0 for `--help`/`--version`).
#[must_use]
pub fn parse<P: Parser>() -> P {
    P::try_parse().unwrap_or_else(|e| name_the_variable::<P>(e).exit())
}

/// Adds the environment variable to each flag that `error` names, when `C` gives that flag
/// one. Errors that name no flag with a variable are returned unchanged.
#[must_use]
pub fn name_the_variable<C: CommandFactory>(mut error: clap::Error) -> clap::Error {
    let command = C::command();
    let named = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => with_variable(&command, arg).map(ContextValue::String),
        Some(ContextValue::Strings(args)) => {
            let named: Vec<_> = args
                .iter()
                .map(|arg| with_variable(&command, arg).unwrap_or_else(|| arg.clone()))
                .collect();
            (named != *args).then_some(ContextValue::Strings(named))
        }
        _ => None,
    };
    if let Some(named) = named {
        error.insert(ContextKind::InvalidArg, named);
    }
    error
}

/// `--linger <LINGER>` → `--linger <LINGER> or INGEST_LINGER`, when `--linger` has a variable.
fn with_variable(command: &clap::Command, arg: &str) -> Option<String> {
    let long = arg.split(' ').next()?.strip_prefix("--")?;
    let var = command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(clap::Arg::get_env)?;
    Some(format!("{arg} or {}", var.to_string_lossy()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A stand-in for a binary's settings: one with a variable, one without, one required.
    #[derive(Debug, Parser)]
    struct Settings {
        #[arg(long, env = "TEST_CLI_ENV_WAIT", value_parser = seconds)]
        wait: Option<Duration>,
        #[arg(long)]
        count: Option<u32>,
        #[arg(long, env = "TEST_CLI_ENV_STREAM", required = true)]
        stream: Option<String>,
    }

    fn seconds(text: &str) -> Result<Duration, String> {
        text.parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("{text:?} is not a number of seconds"))
    }

    fn message(args: &[&str]) -> String {
        let error = Settings::try_parse_from(args).expect_err("the arguments are bad");
        name_the_variable::<Settings>(error).to_string()
    }

    #[test]
    fn a_bad_value_names_the_flag_and_the_variable() {
        let message = message(&["t", "--stream", "s", "--wait", "soon"]);
        assert!(
            message.contains("'--wait <WAIT> or TEST_CLI_ENV_WAIT'"),
            "{message}"
        );
        assert!(message.contains("not a number of seconds"), "{message}");
    }

    #[test]
    fn a_missing_required_setting_names_the_variable() {
        let message = message(&["t"]);
        assert!(
            message.contains("--stream <STREAM> or TEST_CLI_ENV_STREAM"),
            "{message}"
        );
    }

    #[test]
    fn a_flag_without_a_variable_and_other_errors_are_left_alone() {
        for args in [
            &["t", "--stream", "s", "--count", "many"][..],
            &["t", "--stream", "s", "--no-such-flag"][..],
        ] {
            let plain = Settings::try_parse_from(args).expect_err("bad").to_string();
            assert_eq!(message(args), plain);
            assert!(!plain.contains("TEST_CLI_ENV"), "{plain}");
        }
    }

    #[test]
    fn the_kind_of_error_is_kept() {
        let error =
            Settings::try_parse_from(["t", "--stream", "s", "--wait", "x"]).expect_err("bad value");
        let kind = error.kind();
        assert_eq!(name_the_variable::<Settings>(error).kind(), kind);
    }
}
