//! What the binaries here share at the edge of the process: clap errors that name the
//! environment variable as well as the flag (this module), and how they stop ([`stop`]:
//! signals, escalation, exit).
//!
//! Every binary here (`ingest`, `firehose-local`, `replay`) takes each setting from a flag or
//! from an environment variable (clap's `env`). In a pod, a Lambda or a CI job it is almost
//! always the variable that holds the bad value, but clap's message names only the flag:
//! `invalid value 'abc' for '--linger <LINGER>'`. [`parse`] and [`name_the_variable`] add the
//! variable: `invalid value 'abc' for '--linger <LINGER> or INGEST_LINGER'`, and the same for
//! a missing required setting and for positional arguments (`<SOURCE> or REPLAY_SOURCE`). A
//! setting declared with `hide_env_values` (a secret) never has its value echoed: clap's
//! `invalid value '<the secret>'` becomes `invalid value '<hidden>'`, and when the value
//! parser's own reason repeats the value, the reason is dropped too (the error then says only
//! that the value was refused). Everything else about the error (kind, exit status 2,
//! `--help`) is clap's.

pub mod stop;

use clap::error::{ContextKind, ContextValue};
use clap::{CommandFactory, Parser};

/// Parses the flags and the environment into `P`; on an error prints clap's message, with the
/// variable named ([`name_the_variable`]), and exits (status 2; 0 for `--help`/`--version`).
#[must_use]
pub fn parse<P: Parser>() -> P {
    parse_or_exit::<P>(USAGE_STATUS)
}

/// clap's exit status for a usage error.
const USAGE_STATUS: i32 = 2;

/// [`parse`], but a usage error exits with `status` instead of clap's 2: for a binary whose 2
/// means something else (`replay`: "incomplete, run it again", which a retry loop acts on).
/// `--help` and `--version` still exit 0.
#[must_use]
pub fn parse_or_exit<P: Parser>(status: i32) -> P {
    P::try_parse().unwrap_or_else(|e| {
        let e = name_the_variable::<P>(e);
        // Help and version go to stdout and are no error.
        let status = if e.use_stderr() { status } else { 0 };
        let _ = e.print();
        std::process::exit(status)
    })
}

/// Parses `args` (the program name first) into `P` as if no environment variable were set:
/// every `env` binding is removed first. For tests of the flags, which would otherwise read
/// whatever the developer's shell exports (`INGEST_LINGER`, `REPLAY_TO_STREAM`, …) and pass or
/// fail with it.
///
/// # Errors
/// clap's error for arguments that do not parse.
pub fn parse_args_only<P, I, T>(args: I) -> Result<P, clap::Error>
where
    P: Parser,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = P::command()
        .mut_args(|arg| arg.env(None::<&'static str>))
        .try_get_matches_from(args)?;
    P::from_arg_matches(&matches)
}

/// Adds the environment variable to each flag that `error` names, when `C` gives that flag
/// one, and hides the value of a flag declared `hide_env_values`. Errors that name no flag with
/// a variable are returned unchanged.
#[must_use]
pub fn name_the_variable<C: CommandFactory>(mut error: clap::Error) -> clap::Error {
    let mut command = C::command();
    match error.get(ContextKind::InvalidArg) {
        // A bad value: one flag.
        Some(ContextValue::String(arg)) => {
            let arg = arg.clone();
            let Some(found) = find(&command, &arg) else {
                return error;
            };
            let named = with_variable(found, &arg);
            let mut secret = None;
            if found.is_hide_env_values_set() {
                if let Some(ContextValue::String(value)) = error.get(ContextKind::InvalidValue) {
                    secret = Some(value.clone()).filter(|v| !v.is_empty());
                }
                let hidden = ContextValue::String(HIDDEN.to_owned());
                error.insert(ContextKind::InvalidValue, hidden);
            }
            let shown = named.unwrap_or_else(|| arg.clone());
            error.insert(ContextKind::InvalidArg, ContextValue::String(shown.clone()));
            // The value parser's reason is clap's `source`, which cannot be edited: if it repeats
            // the secret, a new error without it.
            // As given, or escaped as `{:?}` prints it (a quote or a tab inside it).
            let repeats = |secret: String| {
                let text = error.render().to_string();
                let escaped = format!("{secret:?}");
                text.contains(&secret) || text.contains(&escaped[1..escaped.len() - 1])
            };
            if secret.is_some_and(repeats) {
                return command.error(
                    error.kind(),
                    format!(
                        "invalid value '{HIDDEN}' for '{shown}': refused (the reason is not shown: it repeats the value, a secret)"
                    ),
                );
            }
        }
        // Missing required settings: a list of flags.
        Some(ContextValue::Strings(args)) => {
            let named: Vec<_> = args
                .iter()
                .map(|arg| {
                    find(&command, arg)
                        .and_then(|found| with_variable(found, arg))
                        .unwrap_or_else(|| arg.clone())
                })
                .collect();
            if named != *args {
                error.insert(ContextKind::InvalidArg, ContextValue::Strings(named));
            }
        }
        _ => {}
    }
    error
}

/// What a secret's value is replaced with in an error.
const HIDDEN: &str = "<hidden>";

/// The argument that clap's error text is about: a flag (`--linger <LINGER>`,
/// `--linger=<LINGER>`, `-l <LINGER>`) or a positional argument (`<SOURCE>` or `[SOURCE]`, by
/// its value name).
fn find<'c>(command: &'c clap::Command, arg: &str) -> Option<&'c clap::Arg> {
    let first = arg.split([' ', '=']).next()?;
    if let Some(long) = first.strip_prefix("--") {
        return command.get_arguments().find(|a| a.get_long() == Some(long));
    }
    if let Some(short) = first.strip_prefix('-') {
        let mut chars = short.chars();
        let (Some(short), None) = (chars.next(), chars.next()) else {
            return None;
        };
        return command
            .get_arguments()
            .find(|a| a.get_short() == Some(short));
    }
    // `<NAME>` when required, `[NAME]` when optional.
    let name = first
        .strip_prefix('<')
        .or_else(|| first.strip_prefix('['))?
        .split(['>', ']'])
        .next()?;
    command.get_positionals().find(|a| {
        a.get_value_names()
            .and_then(|names| names.first())
            .map_or_else(
                || a.get_id().as_str().eq_ignore_ascii_case(name),
                |n| n == name,
            )
    })
}

/// `--linger <LINGER>` → `--linger <LINGER> or INGEST_LINGER` (and `<SOURCE>` → `<SOURCE> or
/// REPLAY_SOURCE`), when `found` has a variable.
fn with_variable(found: &clap::Arg, arg: &str) -> Option<String> {
    let var = found.get_env()?;
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
        #[arg(long, env = "TEST_CLI_ENV_TOKEN", hide_env_values = true, value_parser = token)]
        token: Option<String>,
    }

    fn token(text: &str) -> Result<String, String> {
        if text.contains(' ') {
            return Err("a token has no spaces".to_owned());
        }
        Ok(text.to_owned())
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
    fn a_secret_that_does_not_parse_is_not_echoed() {
        let args = ["t", "--stream", "s", "--token", "hunter 2"];
        let plain = Settings::try_parse_from(args)
            .expect_err("bad token")
            .to_string();
        assert!(plain.contains("hunter 2"), "clap alone echoes it: {plain}");
        let hidden = message(&args);
        assert!(!hidden.contains("hunter"), "{hidden}");
        assert!(hidden.contains("invalid value '<hidden>'"), "{hidden}");
        assert!(hidden.contains("or TEST_CLI_ENV_TOKEN'"), "{hidden}");
        assert!(hidden.contains("a token has no spaces"), "{hidden}");
        // Values of other settings are still shown: they are what to fix.
        let shown = message(&["t", "--stream", "s", "--wait", "soon"]);
        assert!(shown.contains("'soon'"), "{shown}");
    }

    /// Secrets given in the other shapes of flag clap knows.
    #[derive(Debug, Parser)]
    struct OtherShapes {
        #[arg(short = 'k', env = "TEST_CLI_ENV_KEY", hide_env_values = true, value_parser = token)]
        key: Option<String>,
        #[arg(long, require_equals = true, env = "TEST_CLI_ENV_TOK", hide_env_values = true, value_parser = token)]
        tok: Option<String>,
        #[arg(long, env = "TEST_CLI_ENV_PIN", hide_env_values = true, value_parser = echoing)]
        pin: Option<String>,
    }

    /// A value parser whose reason repeats the value.
    fn echoing(text: &str) -> Result<String, String> {
        Err(format!("{text:?} rejected"))
    }

    #[test]
    fn secrets_in_short_equals_and_echoing_flags_are_not_echoed() {
        for (args, named) in [
            (&["t", "-k", "hunter 2"][..], "-k <KEY> or TEST_CLI_ENV_KEY"),
            (
                &["t", "--tok=hunter 2"][..],
                "--tok=<TOK> or TEST_CLI_ENV_TOK",
            ),
            (
                &["t", "--pin", "hunter2"][..],
                "--pin <PIN> or TEST_CLI_ENV_PIN",
            ),
            // Echoed escaped, as `{:?}` prints it: `hunter\"2`.
            (
                &["t", "--pin", "hunter\"2"][..],
                "--pin <PIN> or TEST_CLI_ENV_PIN",
            ),
        ] {
            let plain = OtherShapes::try_parse_from(args)
                .expect_err("bad")
                .to_string();
            assert!(plain.contains("hunter"), "clap alone echoes it: {plain}");
            let error = OtherShapes::try_parse_from(args).expect_err("bad");
            let kind = error.kind();
            let error = name_the_variable::<OtherShapes>(error);
            assert_eq!(error.kind(), kind);
            let message = error.to_string();
            assert!(!message.contains("hunter"), "{message}");
            assert!(message.contains("invalid value '<hidden>'"), "{message}");
            assert!(message.contains(named), "{message}");
        }
    }

    /// A required positional argument with a variable, one with a value name.
    #[derive(Debug, Parser)]
    struct Positional {
        #[arg(env = "TEST_CLI_ENV_INPUT", required = true)]
        input: Option<String>,
        #[arg(value_name = "COUNT", env = "TEST_CLI_ENV_COUNT", value_parser = seconds)]
        count: Option<Duration>,
    }

    #[test]
    fn a_positional_setting_names_its_variable() {
        let missing = Positional::try_parse_from(["t"]).expect_err("input missing");
        let message = name_the_variable::<Positional>(missing).to_string();
        assert!(
            message.contains("<INPUT> or TEST_CLI_ENV_INPUT"),
            "{message}"
        );
        let bad = Positional::try_parse_from(["t", "in", "soon"]).expect_err("bad count");
        let message = name_the_variable::<Positional>(bad).to_string();
        assert!(
            message.contains("'[COUNT] or TEST_CLI_ENV_COUNT'"),
            "{message}"
        );
    }

    /// Bound to a variable every test process has.
    #[derive(Debug, Parser)]
    struct FromPath {
        #[arg(long, env = "PATH")]
        search: Option<String>,
        #[arg(long, env = "PATH", default_value = "fallback")]
        with_default: String,
    }

    #[test]
    fn parsing_the_arguments_only_ignores_the_environment() {
        assert!(
            std::env::var_os("PATH").is_some(),
            "the test needs PATH set"
        );
        let read = FromPath::try_parse_from(["t"]).expect("parses");
        assert!(read.search.is_some(), "clap itself reads PATH: {read:?}");
        let only = parse_args_only::<FromPath, _, _>(["t"]).expect("parses");
        assert_eq!(only.search, None);
        assert_eq!(only.with_default, "fallback");
        let given = parse_args_only::<FromPath, _, _>(["t", "--search", "x"]).expect("parses");
        assert_eq!(given.search.as_deref(), Some("x"));
        let error = parse_args_only::<FromPath, _, _>(["t", "--nope"]).expect_err("unknown flag");
        assert_eq!(error.kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[test]
    fn the_kind_of_error_is_kept() {
        let error =
            Settings::try_parse_from(["t", "--stream", "s", "--wait", "x"]).expect_err("bad value");
        let kind = error.kind();
        assert_eq!(name_the_variable::<Settings>(error).kind(), kind);
    }
}
