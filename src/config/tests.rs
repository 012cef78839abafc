//! `serve`'s flags into settings: what is refused, what is reported, what is never printed.

use clap::Parser;

use super::{Cli, Command};

fn serve(args: &[&str]) -> super::ServeArgs {
    let mut argv = vec!["certification-service", "serve"];
    argv.extend_from_slice(args);
    match Cli::try_parse_from(argv).unwrap().command {
        Command::Serve(serve) => serve,
        _ => unreachable!(),
    }
}

/// `serve --sandbox` and `args` on SQLite and without Redis whatever the environment running
/// the tests says (the PostgreSQL run sets DATABASE_URL and REDIS_URL, which `--sandbox` refuses).
fn sandboxed(args: &[&str]) -> super::ServeArgs {
    let mut argv = vec!["--sandbox"];
    for (flag, local) in [
        (
            "--database-url=",
            "--database-url=sqlite://data/certification-service.db?mode=rwc",
        ),
        ("--redis-url=", "--redis-url="),
    ] {
        if !args.iter().any(|arg| arg.starts_with(flag)) {
            argv.push(local);
        }
    }
    argv.extend_from_slice(args);
    serve(&argv)
}

#[test]
fn every_missing_setting_is_reported_at_once_and_once() {
    // Explicit empty values, so the environment of whoever runs the test cannot fill them in.
    let error = serve(&[
        "--portone-imp-key=",
        "--portone-imp-secret=",
        "--portone-v2-api-secret=",
        "--max-in-flight=0",
        "--metrics-listen-addr=nowhere",
    ])
    .into_settings(None)
    .unwrap_err()
    .to_string();
    for setting in [
        "PORTONE_IMP_KEY",
        "CI_INDEX_KEY",
        "CI_ENCRYPTION_KEYS",
        "AUDIT_KEY",
        "MAX_IN_FLIGHT",
        "METRICS_LISTEN_ADDR",
    ] {
        assert!(error.contains(setting), "{setting} missing in {error}");
    }
    assert_eq!(error.matches("CI_INDEX_KEY missing").count(), 1, "{error}");
    assert!(error.starts_with("7 configuration problems:"), "{error}");
    assert!(error.contains("ALLOW_UNAUTHENTICATED"), "{error}");
}

const SECRETS: [&str; 8] = [
    "portone-secret-value",
    "portone-v2-secret-value",
    "db-password-value",
    "redis-password-value",
    "caller-token-value-0123456789",
    "c2VjcmV0LWluZGV4LWtleS1mb3ItdGhlLWNsaS10ZXN0cyE=",
    "c2VjcmV0LWVuY3J5cHRpb24ta2V5LW9mLTMyLWJ5dGU=",
    "c2VjcmV0LWF1ZGl0LWtleS1vZi10aGlydHktdHdvLWI=",
];

fn configured() -> super::ServeArgs {
    serve(&[
        "--portone-imp-key=key",
        "--portone-imp-secret=portone-secret-value",
        "--portone-v2-api-secret=portone-v2-secret-value",
        "--database-url=postgres://service:db-password-value@db/certification",
        "--redis-url=redis://:redis-password-value@redis:6379",
        "--caller-tokens=signup=caller-token-value-0123456789",
        "--caller-permissions=signup=*",
        "--ci-index-key=c2VjcmV0LWluZGV4LWtleS1mb3ItdGhlLWNsaS10ZXN0cyE=",
        "--ci-encryption-keys=k1:c2VjcmV0LWVuY3J5cHRpb24ta2V5LW9mLTMyLWJ5dGU=",
        "--audit-key=c2VjcmV0LWF1ZGl0LWtleS1vZi10aGlydHktdHdvLWI=",
    ])
}

#[test]
fn no_debug_of_the_arguments_or_the_settings_shows_a_secret() {
    let args = configured();
    let printed_args = format!("{args:?}");
    let settings = args.into_settings(None).unwrap();
    let printed_settings = format!("{settings:?}");
    for secret in SECRETS {
        assert!(!printed_args.contains(secret), "{secret} in {printed_args}");
        assert!(
            !printed_settings.contains(secret),
            "{secret} in {printed_settings}"
        );
    }
}

#[test]
fn reflection_is_on_with_the_sandbox_and_off_otherwise_unless_set() {
    assert!(!configured().into_settings(None).unwrap().server.grpc_reflection);
    let sandbox = sandboxed(&[])
        .into_settings(Some("http://127.0.0.1:1".into()))
        .unwrap();
    assert!(sandbox.server.grpc_reflection);
    assert!(
        sandbox.server.allow_unauthenticated,
        "--sandbox serves without callers' tokens"
    );
    let off = sandboxed(&["--grpc-reflection=false"]).into_settings(Some("http://127.0.0.1:1".into()));
    assert!(!off.unwrap().server.grpc_reflection);
}

#[test]
fn boolean_flags_take_an_explicit_value_or_none() {
    assert_eq!(
        serve(&["--sandbox", "--grpc-reflection=false"]).grpc_reflection,
        Some(false)
    );
    assert_eq!(
        serve(&["--sandbox", "--grpc-reflection", "false"]).grpc_reflection,
        Some(false)
    );
    assert_eq!(
        serve(&["--sandbox", "--grpc-reflection"]).grpc_reflection,
        Some(true)
    );
    assert!(serve(&["--sandbox", "--reject-underage"]).reject_underage);
    assert!(!serve(&["--sandbox", "--skip-migrations=no"]).skip_migrations);
}

const KEYS: [&str; 4] = [
    "--ci-index-key=c2VjcmV0LWluZGV4LWtleS1mb3ItdGhlLWNsaS10ZXN0cyE=",
    "--ci-encryption-keys=k1:c2VjcmV0LWVuY3J5cHRpb24ta2V5LW9mLTMyLWJ5dGU=",
    "--audit-key=c2VjcmV0LWF1ZGl0LWtleS1vZi10aGlydHktdHdvLWI=",
    "--allow-unauthenticated",
];

fn with_keys(args: &[&str]) -> Result<super::Settings, super::ConfigErrors> {
    let mut all = KEYS.to_vec();
    all.extend_from_slice(args);
    serve(&all).into_settings(None)
}

#[test]
fn either_portone_api_alone_or_both_configure_the_service() {
    let v2_only = with_keys(&[
        "--portone-imp-key=",
        "--portone-imp-secret=",
        "--portone-v2-api-secret=v2-secret",
        "--portone-store-id=store-1",
        "--portone-v2-channel-key=channel-key-1",
    ])
    .unwrap();
    assert!(v2_only.portone_v1.is_none());
    let v2 = v2_only.portone_v2.unwrap();
    assert_eq!(v2.base_url, "https://api.portone.io");
    assert_eq!(v2.store_id.as_deref(), Some("store-1"));
    assert_eq!(v2.channel_key.as_deref(), Some("channel-key-1"));

    let both = with_keys(&[
        "--portone-imp-key=key",
        "--portone-imp-secret=secret",
        "--portone-v2-api-secret=v2-secret",
        "--portone-tier=T01",
    ])
    .unwrap();
    assert!(both.portone_v1.is_some() && both.portone_v2.is_some());
    assert_eq!(both.portone_v1.as_ref().unwrap().tier.as_deref(), Some("T01"));
    assert!(
        !both.policy.allow_test_channel,
        "test channels are refused unless allowed"
    );

    let v1_only = with_keys(&[
        "--portone-imp-key=key",
        "--portone-imp-secret=secret",
        "--portone-v2-api-secret=",
    ]);
    assert!(v1_only.unwrap().portone_v2.is_none());
}

#[test]
fn half_credentials_a_bad_tier_or_no_api_at_all_are_refused() {
    let half = with_keys(&[
        "--portone-imp-key=key",
        "--portone-imp-secret=",
        "--portone-v2-api-secret=v2",
    ]);
    assert!(half.unwrap_err().to_string().contains("set both or neither"));
    let tier = with_keys(&[
        "--portone-imp-key=k",
        "--portone-imp-secret=s",
        "--portone-tier=T0/1",
    ]);
    assert!(tier.unwrap_err().to_string().contains("PORTONE_TIER"));
    let none = with_keys(&[
        "--portone-imp-key=",
        "--portone-imp-secret=",
        "--portone-v2-api-secret=",
    ]);
    assert!(none.unwrap_err().to_string().contains("PORTONE_V2_API_SECRET"));
    let sandbox = sandboxed(&[])
        .into_settings(Some("http://127.0.0.1:1".into()))
        .unwrap();
    assert!(
        sandbox.portone_v1.is_some() && sandbox.portone_v2.is_some() && sandbox.policy.allow_test_channel
    );
}

#[test]
fn portone_delete_after_is_off_unless_set_and_needs_v1() {
    let unset = with_keys(&["--portone-imp-key=k", "--portone-imp-secret=s"]).unwrap();
    assert_eq!(unset.policy.delete_after, None);
    let set = with_keys(&[
        "--portone-imp-key=k",
        "--portone-imp-secret=s",
        "--portone-delete-after=10m",
    ])
    .unwrap();
    assert_eq!(set.policy.delete_after, Some(std::time::Duration::from_secs(600)));
    let too_long = with_keys(&[
        "--portone-imp-key=k",
        "--portone-imp-secret=s",
        "--portone-delete-after=31d",
    ]);
    assert!(too_long.unwrap_err().to_string().contains("PORTONE_DELETE_AFTER"));
    let v2_only = with_keys(&[
        "--portone-imp-key=",
        "--portone-imp-secret=",
        "--portone-v2-api-secret=v2",
        "--portone-delete-after=10m",
    ]);
    let error = v2_only.unwrap_err().to_string();
    assert!(error.contains("V2 has no delete endpoint"), "{error}");
}

/// The defaults docs/configuration.md gives, by variable: the first `code` of the default cell
/// (positionally when a row names several variables), None where the cell names no value.
fn documented_defaults() -> std::collections::HashMap<String, Option<String>> {
    let doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md"));
    let code =
        |cell: &str| -> Vec<String> { cell.split('`').skip(1).step_by(2).map(str::to_owned).collect() };
    let mut defaults = std::collections::HashMap::new();
    for row in doc.lines().filter(|line| line.starts_with("| `")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let variables: Vec<String> = code(cells[0])
            .into_iter()
            .filter(|name| {
                name.bytes()
                    .all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit() || byte == b'_')
            })
            .collect();
        let values = if cells[1].trim_start().starts_with('`') {
            code(cells[1])
        } else {
            Vec::new()
        };
        let positional = variables.len() > 1 && values.len() == variables.len();
        for (index, variable) in variables.iter().enumerate() {
            let value = if positional {
                values.get(index)
            } else {
                values.first()
            };
            defaults.insert(variable.clone(), value.cloned());
        }
    }
    defaults
}

/// Each default is written once, on its flag: the documentation's table says the same, and the
/// tests' settings are parsed from the same flags (testkit).
#[test]
fn the_documented_defaults_are_the_flags_own() {
    use clap::CommandFactory;

    let documented = documented_defaults();
    let command = Cli::command();
    let serve = command.find_subcommand("serve").unwrap();
    let mut checked = 0;
    for arg in serve.get_arguments() {
        let Some(variable) = arg.get_env().and_then(|env| env.to_str()) else {
            continue;
        };
        let in_doc = documented
            .get(variable)
            .unwrap_or_else(|| panic!("{variable} is missing from docs/configuration.md"));
        let default = arg.get_default_values().first().and_then(|value| value.to_str());
        assert_eq!(
            in_doc.as_deref(),
            default,
            "{variable}: documented vs the flag's default"
        );
        checked += 1;
    }
    assert!(checked >= 45, "only {checked} variables checked");
}

/// `--sandbox` (fixed keys, no authentication, Sandbox/Certify minting identities) beside real
/// systems or data: each sign named, never its value, unless SANDBOX_ALLOW_EXTERNAL=true.
#[test]
fn the_sandbox_refuses_signs_of_production_unless_allowed() {
    let production = [
        "--database-url=postgres://service:db-password-value@db/certification",
        "--redis-url=redis://:redis-password-value@redis:6379",
        "--portone-base-url=https://portone-v1.example",
        "--portone-v2-base-url=https://portone-v2.example",
        "--portone-imp-key=key",
        "--portone-imp-secret=portone-secret-value",
        "--portone-v2-api-secret=portone-v2-secret-value",
        "--ci-index-key=c2VjcmV0LWluZGV4LWtleS1mb3ItdGhlLWNsaS10ZXN0cyE=",
        "--ci-encryption-keys=k1:c2VjcmV0LWVuY3J5cHRpb24ta2V5LW9mLTMyLWJ5dGU=",
        "--audit-key=c2VjcmV0LWF1ZGl0LWtleS1vZi10aGlydHktdHdvLWI=",
    ];
    let error = sandboxed(&production)
        .into_settings(Some("http://127.0.0.1:1".into()))
        .unwrap_err()
        .to_string();
    for setting in [
        "DATABASE_URL",
        "REDIS_URL",
        "PORTONE_BASE_URL",
        "PORTONE_V2_BASE_URL",
        "PORTONE_IMP_KEY",
        "PORTONE_IMP_SECRET",
        "PORTONE_V2_API_SECRET",
        "CI_INDEX_KEY",
        "CI_ENCRYPTION_KEYS",
        "AUDIT_KEY",
    ] {
        assert!(
            error.contains(&format!("--sandbox refuses {setting} (")),
            "{setting} not named in {error}"
        );
    }
    assert!(error.starts_with("10 configuration problems:"), "{error}");
    for secret in SECRETS {
        assert!(!error.contains(secret), "{secret} in {error}");
    }
    assert!(!error.contains("example"), "{error}");

    let mut allowed = production.to_vec();
    allowed.push("--sandbox-allow-external=true");
    assert!(
        sandboxed(&allowed)
            .into_settings(Some("http://127.0.0.1:1".into()))
            .is_ok()
    );
    // The defaults as they ship, and the sandbox's own development keys, are no signs.
    assert!(
        sandboxed(&[
            "--portone-base-url=https://api.iamport.kr",
            "--ci-index-key=Y2VydGlmaWNhdGlvbi1zZXJ2aWNlIHNhbmRib3ggZGV2ZWxvcG1lbnQga2V5IQ==",
            "--database-url=sqlite://data/other.db?mode=rwc",
        ])
        .into_settings(Some("http://127.0.0.1:1".into()))
        .is_ok()
    );
}

/// `configured()` with its one caller `signup` and `more` flags, as `serve` would validate them.
fn configured_with(more: &[&str]) -> Result<super::Settings, super::ConfigErrors> {
    let mut argv = vec![
        "--portone-imp-key=key",
        "--portone-imp-secret=portone-secret-value",
        "--database-url=sqlite://data/certification-service.db?mode=rwc",
        "--redis-url=",
        "--caller-tokens=signup=caller-token-value-0123456789",
        "--caller-permissions=signup=*",
        "--ci-index-key=c2VjcmV0LWluZGV4LWtleS1mb3ItdGhlLWNsaS10ZXN0cyE=",
        "--ci-encryption-keys=k1:c2VjcmV0LWVuY3J5cHRpb24ta2V5LW9mLTMyLWJ5dGU=",
        "--audit-key=c2VjcmV0LWF1ZGl0LWtleS1vZi10aGlydHktdHdvLWI=",
    ];
    argv.extend_from_slice(more);
    serve(&argv).into_settings(None)
}

#[test]
fn caller_quotas_default_to_the_documented_bounds_and_take_overrides() {
    let settings = configured_with(&[]).unwrap();
    let defaults = settings.quotas.defaults;
    assert_eq!(
        (defaults.sessions, defaults.lookups, defaults.open),
        (600, 1200, 100_000)
    );
    assert_eq!(settings.quotas.window, std::time::Duration::from_secs(60));
    let settings = configured_with(&[
        "--sessions-per-minute=10",
        "--caller-limits=signup=lookups:7+open:3",
    ])
    .unwrap();
    let signup = settings
        .quotas
        .per_caller
        .for_caller("signup", settings.quotas.defaults);
    assert_eq!((signup.sessions, signup.lookups, signup.open), (10, 7, 3));
}

#[test]
fn caller_limits_that_do_not_parse_or_name_an_unknown_caller_refuse_to_start() {
    for (flags, expected) in [
        (
            vec!["--caller-limits=signup=sessions:0"],
            "CALLER_LIMITS entry 1: sessions must be a whole number",
        ),
        (
            vec!["--caller-limits=signup=lookups:many"],
            "CALLER_LIMITS entry 1: lookups must be a whole number",
        ),
        (
            vec!["--caller-limits=signup=calls:5"],
            "CALLER_LIMITS entry 1 names \"calls\", which is not a limit",
        ),
        (
            vec!["--caller-limits=signup=open:1+open:2"],
            "CALLER_LIMITS entry 1 sets open twice",
        ),
        (
            vec!["--caller-limits=signup"],
            "CALLER_LIMITS entry 1 is not `name=sessions:N+lookups:N+open:N`",
        ),
        (
            vec!["--caller-limits=sginup=open:5"],
            "CALLER_LIMITS names the caller \"sginup\", which CALLER_TOKENS does not",
        ),
        (
            vec!["--lookups-per-minute=0"],
            "LOOKUPS_PER_MINUTE must be between 1 and 1000000000",
        ),
        (
            vec!["--open-sessions-per-caller=0", "--sessions-per-minute=0"],
            "SESSIONS_PER_MINUTE must be between 1 and 1000000000",
        ),
    ] {
        let error = configured_with(&flags).unwrap_err().to_string();
        assert!(error.contains(expected), "{flags:?}: {error}");
    }
}

/// Access records are kept a year at least, by law: a shorter AUDIT_RETENTION never starts.
#[test]
fn audit_retention_below_a_year_is_refused() {
    let with = |retention: &str| {
        let mut args = configured();
        args.retention.audit_retention = humantime::parse_duration(retention).unwrap();
        args.into_settings(None)
    };
    let error = with("364d").unwrap_err().to_string();
    assert!(
        error.contains("AUDIT_RETENTION must be between 365d and 3650d"),
        "{error}"
    );
    assert_eq!(
        with("365d").unwrap().maintenance.audit_retention.as_secs(),
        365 * 86_400
    );
    assert_eq!(
        configured()
            .into_settings(None)
            .unwrap()
            .maintenance
            .audit_retention
            .as_secs(),
        730 * 86_400,
        "two years unless set"
    );
}
