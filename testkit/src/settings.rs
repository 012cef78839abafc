//! The settings every test and benchmark starts from: `serve`'s own defaults (parsed by its
//! command line and validated by the one constructor, so a default is written once), with the
//! PortOne (sandbox) and database given, fixed test keys, short time-outs, and no side ports.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD};
use certification_service::config::{Cli, Command, Settings};
use clap::{CommandFactory, FromArgMatches};

pub const TEST_INDEX_KEY: [u8; 32] = [42; 32];
/// AUDIT_KEY of the tests.
pub const TEST_AUDIT_KEY: [u8; 32] = [77; 32];

/// CI_ENCRYPTION_KEYS of the tests: one key, id `test-k1`.
pub fn test_encryption_keys() -> String {
    format!("test-k1:{}", STANDARD.encode([9u8; 32]))
}

/// Settings for a server on 127.0.0.1:0 against PortOne at `portone_base_url` with these
/// credentials (V1, and the sandbox's V2 on the same address), storing in `database_url`; no
/// Redis, no authentication, no side ports.
pub fn test_settings(
    database_url: &str,
    portone_base_url: &str,
    imp_key: &str,
    imp_secret: &str,
) -> Settings {
    let index_key = STANDARD.encode(TEST_INDEX_KEY);
    let encryption_keys = test_encryption_keys();
    let audit_key = STANDARD.encode(TEST_AUDIT_KEY);
    let args = [
        ("--database-url", database_url),
        ("--grpc-listen-addr", "127.0.0.1:0"),
        ("--metrics-listen-addr", "off"),
        ("--portone-base-url", portone_base_url),
        ("--portone-imp-key", imp_key),
        ("--portone-imp-secret", imp_secret),
        // The sandbox answers V2 on the same address, with its development secret and store.
        ("--portone-v2-base-url", portone_base_url),
        (
            "--portone-v2-api-secret",
            certification_service::sandbox::SANDBOX_V2_API_SECRET,
        ),
        (
            "--portone-store-id",
            certification_service::sandbox::SANDBOX_STORE_ID,
        ),
        (
            "--portone-v2-channel-key",
            certification_service::sandbox::SANDBOX_V2_CHANNEL_KEY,
        ),
        ("--portone-timeout", "2s"),
        ("--ci-index-key", &index_key),
        ("--ci-encryption-keys", &encryption_keys),
        ("--audit-key", &audit_key),
        // The tests' servers listen on 127.0.0.1 only; authentication tests turn it on.
        ("--allow-unauthenticated", "true"),
        ("--grpc-reflection", "true"),
        // Most tests drive Verify straight from the sandbox's fixtures, as a caller that issues
        // its own merchant_uids does; the session tests turn it on (the default).
        ("--require-session", "false"),
        ("--request-timeout", "10s"),
        ("--shutdown-drain-delay", "0s"),
        ("--shutdown-timeout", "5s"),
    ];
    let mut settings = serve_args(&args)
        .into_settings(None)
        .unwrap_or_else(|errors| panic!("the tests' settings are valid: {errors}"));
    settings.store.readiness_interval = Duration::from_millis(200);
    settings
}

/// `serve`'s flags as given, every other one at its default: the environment is not read, so
/// a developer's DATABASE_URL or CALLER_TOKENS cannot leak into a test.
fn serve_args(args: &[(&str, &str)]) -> certification_service::config::ServeArgs {
    let command = Cli::command().mut_subcommand("serve", |serve| serve.mut_args(|arg| arg.env(None::<&str>)));
    let line = std::iter::once("certification-service".to_owned())
        .chain(std::iter::once("serve".to_owned()))
        .chain(args.iter().map(|(flag, value)| format!("{flag}={value}")));
    let matches = command
        .try_get_matches_from(line)
        .unwrap_or_else(|error| panic!("the tests' flags parse: {error}"));
    match Cli::from_arg_matches(&matches)
        .unwrap_or_else(|error| panic!("the tests' flags parse: {error}"))
        .command
    {
        Command::Serve(args) => args,
        _ => unreachable!("parsed as serve"),
    }
}
