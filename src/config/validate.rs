//! `serve`'s flags into [`Settings`]. Every problem is collected and reported at once, one line
//! each naming the setting, so an operator fixes a configuration in one restart, not three.

use std::{path::Path, time::Duration};

use super::{
    ConnectionSettings, KeySettings, MaintenanceSettings, RedisSettings, RetentionArgs, ServeArgs,
    ServerSettings, Settings, ShutdownSettings, TlsSettings,
    errors::{ConfigError, ConfigErrors, Problems},
};
use crate::{
    access::{CallerPermissions, CallerTokens},
    audit::AuditKey,
    domain::{CiIndexKey, MinAge, SealingKeys},
    quota::{CallerLimits, Limits, MAX_LIMIT, NAMESPACE, QuotaSettings},
    secret::Secret,
    service::Policy,
};

/// The fixed CI index key of `serve --sandbox`: development only, never for real CIs.
const SANDBOX_CI_INDEX_KEY: &str = "Y2VydGlmaWNhdGlvbi1zZXJ2aWNlIHNhbmRib3ggZGV2ZWxvcG1lbnQga2V5IQ==";
/// The fixed encryption key of `serve --sandbox` (32 bytes): development only.
const SANDBOX_CI_ENCRYPTION_KEYS: &str = "sandbox-dev:c2FuZGJveCBkZXZlbG9wbWVudCBrZXksIG5vdCAgb2s=";
/// The fixed AUDIT_KEY of `serve --sandbox` (32 bytes): development only.
const SANDBOX_AUDIT_KEY: &str = "c2FuZGJveCBhdWRpdCBrZXksIGRldmVsb3BtZW50IDEh";

const ZERO: Duration = Duration::ZERO;
const MILLISECOND: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// A bound as an operator would write it: `3650d`, `5m`, `1ms`.
fn human(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0 if duration.is_zero() => "0s".into(),
        0 => format!("{}ms", duration.as_millis()),
        _ if seconds.is_multiple_of(86_400) => format!("{}d", seconds / 86_400),
        _ if seconds.is_multiple_of(3600) => format!("{}h", seconds / 3600),
        _ if seconds.is_multiple_of(60) => format!("{}m", seconds / 60),
        _ => format!("{seconds}s"),
    }
}

impl RetentionArgs {
    /// Bounds the retention settings, which `purge` uses too: past them, date arithmetic
    /// overflows (a re-signup cooldown of 270000 years once made a bind panic).
    pub(crate) fn validate(&self) -> Result<(), ConfigErrors> {
        let mut problems = Problems::default();
        for (name, value, min) in [
            ("CERTIFICATION_RETENTION", self.certification_retention, SECOND),
            ("REJOIN_COOLDOWN", self.rejoin_cooldown, ZERO),
            // The law's shortest: a year.
            ("AUDIT_RETENTION", self.audit_retention, 365 * DAY),
        ] {
            problems.check(
                (min..=10 * 365 * DAY).contains(&value),
                ConfigError::Duration(name, human(min), human(10 * 365 * DAY)),
            );
        }
        if problems.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(problems.0))
        }
    }
}

/// Whether `value` is the default written on `serve`'s flag `id`: a base URL left as it ships.
fn is_flag_default(id: &str, value: &str) -> bool {
    use clap::Args;
    let serve = ServeArgs::augment_args(clap::Command::new("serve"));
    serve
        .get_arguments()
        .find(|arg| arg.get_id() == id)
        .and_then(|arg| arg.get_default_values().first())
        .is_some_and(|default| default.to_str() == Some(value))
}

fn read_pem(path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|error| ConfigError::TlsFile(path.display().to_string(), error.kind().to_string()))
}

impl ServeArgs {
    /// Validates the flags. `sandbox_base_url` is the in-process sandbox's address with
    /// `--sandbox`, whose fixed credentials and development keys then apply.
    pub fn into_settings(self, sandbox_base_url: Option<String>) -> Result<Settings, ConfigErrors> {
        let mut problems = Problems::default();
        let portone = super::portone::portone_settings(&self, sandbox_base_url.as_deref(), &mut problems);
        let keys = self.keys(&mut problems);
        let server = self.server(&mut problems);
        let quotas = self.quotas(
            server.as_ref().and_then(|server| server.caller_tokens.as_ref()),
            &mut problems,
        );
        self.check_counts(&mut problems);
        self.check_durations(&mut problems);
        problems.check(
            !self.sandbox || cfg!(feature = "sandbox"),
            ConfigError::SandboxNotBuilt,
        );
        if self.sandbox && !self.sandbox_allow_external {
            for (setting, signal) in self.production_signals() {
                problems.0.push(ConfigError::SandboxExternal(setting, signal));
            }
        }
        let with_v1 = portone.as_ref().is_none_or(|portone| portone.v1.is_some());
        // Silently deleting nothing would let an operator believe PortOne keeps no copies.
        problems.check(
            with_v1 || self.portone_delete_after.is_none(),
            ConfigError::DeleteWithoutV1,
        );
        let (Some(portone), Some(keys), Some(server), Some(quotas), true) =
            (portone, keys, server, quotas, problems.0.is_empty())
        else {
            return Err(ConfigErrors(problems.0));
        };
        let mut store = self.database.store_settings();
        store.migrate_on_start = !self.skip_migrations;
        Ok(Settings {
            server,
            store,
            redis: self
                .redis_url
                .clone()
                .filter(|url| !url.expose().is_empty())
                .map(|url| RedisSettings {
                    url,
                    timeout: self.redis_timeout,
                    ca_file: self.redis_ca_file.clone(),
                }),
            policy: self.policy(),
            quotas,
            portone_v1: portone.v1,
            portone_v2: portone.v2,
            keys,
            maintenance: MaintenanceSettings {
                purge_interval: self.purge_interval.filter(|interval| !interval.is_zero()),
                certification_retention: self.retention.certification_retention,
                audit_retention: self.retention.audit_retention,
                audit_head_interval: self.audit_head_interval,
            },
        })
    }

    /// What says this process runs beside real systems or real data, which `--sandbox` (fixed
    /// keys, no authentication, `Sandbox/Certify` minting identities) must never: each setting's
    /// name and what it signals.
    fn production_signals(&self) -> Vec<(&'static str, &'static str)> {
        let given = |value: Option<&str>| value.is_some_and(|value| !value.trim().is_empty());
        let database_url = self.database.database_url.expose();
        let postgres = database_url.starts_with("postgres://") || database_url.starts_with("postgresql://");
        let own_key = |value: Option<&Secret>, development: &str| {
            value
                .map(|value| value.expose().trim())
                .is_some_and(|key| !key.is_empty() && key != development)
        };
        [
            ("DATABASE_URL", "a PostgreSQL database", postgres),
            (
                "REDIS_URL",
                "a shared Redis",
                given(self.redis_url.as_ref().map(Secret::expose)),
            ),
            (
                "PORTONE_BASE_URL",
                "a PortOne V1 address",
                !is_flag_default("portone_base_url", &self.portone_base_url),
            ),
            (
                "PORTONE_V2_BASE_URL",
                "a PortOne V2 address",
                !is_flag_default("portone_v2_base_url", &self.portone_v2_base_url),
            ),
            (
                "PORTONE_IMP_KEY",
                "PortOne V1 credentials",
                given(self.portone_imp_key.as_deref()),
            ),
            (
                "PORTONE_IMP_SECRET",
                "PortOne V1 credentials",
                given(self.portone_imp_secret.as_ref().map(Secret::expose)),
            ),
            (
                "PORTONE_V2_API_SECRET",
                "PortOne V2 credentials",
                given(self.portone_v2_api_secret.as_ref().map(Secret::expose)),
            ),
            (
                "CI_INDEX_KEY",
                "a key other than the development one",
                own_key(self.ci_index_key.as_ref(), SANDBOX_CI_INDEX_KEY),
            ),
            (
                "CI_ENCRYPTION_KEYS",
                "keys other than the development one",
                own_key(self.ci_encryption_keys.as_ref(), SANDBOX_CI_ENCRYPTION_KEYS),
            ),
            (
                "AUDIT_KEY",
                "a key other than the development one",
                own_key(self.audit_key.as_ref(), SANDBOX_AUDIT_KEY),
            ),
        ]
        .into_iter()
        .filter_map(|(setting, signal, present)| present.then_some((setting, signal)))
        .collect()
    }

    /// The CI index, sealing and audit keys: given, or with `--sandbox` the fixed development
    /// ones.
    fn keys(&self, problems: &mut Problems) -> Option<KeySettings> {
        let ci_index_key = self.key(
            problems,
            (self.ci_index_key.as_ref(), "CI_INDEX_KEY", SANDBOX_CI_INDEX_KEY),
            CiIndexKey::from_base64,
            ConfigError::MissingIndexKey,
        );
        let sealing_keys = self.key(
            problems,
            (
                self.ci_encryption_keys.as_ref(),
                "CI_ENCRYPTION_KEYS",
                SANDBOX_CI_ENCRYPTION_KEYS,
            ),
            SealingKeys::parse,
            ConfigError::MissingEncryptionKeys,
        );
        let audit_key = self.key(
            problems,
            (self.audit_key.as_ref(), "AUDIT_KEY", SANDBOX_AUDIT_KEY),
            AuditKey::from_base64,
            ConfigError::MissingAuditKey,
        );
        Some(KeySettings {
            ci_index_key: ci_index_key?,
            sealing_keys: sealing_keys?,
            audit_key: audit_key?,
        })
    }

    /// One key setting: `given` (blank counts as unset), else with `--sandbox` its development
    /// value, else `missing`.
    fn key<T, E: Into<ConfigError>>(
        &self,
        problems: &mut Problems,
        (given, setting, development): (Option<&Secret>, &str, &str),
        parse: impl Fn(&str) -> Result<T, E>,
        missing: ConfigError,
    ) -> Option<T> {
        match given.map(Secret::expose).filter(|value| !value.trim().is_empty()) {
            Some(value) => problems.take(parse(value)),
            None if self.sandbox => {
                tracing::warn!(
                    "--sandbox: using the fixed development {setting}; never use it for real data"
                );
                problems.take(parse(development))
            }
            None => problems.fail(missing),
        }
    }

    /// The gRPC port's listeners, TLS, callers and limits.
    fn server(&self, problems: &mut Problems) -> Option<ServerSettings> {
        let (caller_tokens, caller_permissions, unparsed_tokens) = self.callers(problems);
        let tls = self.tls(problems);
        // Unusable tokens or TLS files were reported already; they were meant to authenticate.
        let reported = unparsed_tokens || tls.is_none();
        let metrics_listen_addr = match self.metrics_listen_addr.trim() {
            "" | "off" => Some(None),
            address => problems
                .take(address.parse().map_err(|_| ConfigError::MetricsAddr))
                .map(Some),
        };
        let usable = tls.is_some() && metrics_listen_addr.is_some();
        let server = ServerSettings {
            grpc_listen_addr: self.grpc_listen_addr,
            metrics_listen_addr: metrics_listen_addr.flatten(),
            health_listen_addr: self.health_listen_addr,
            tls: tls.flatten(),
            caller_tokens,
            caller_permissions,
            allow_unauthenticated: self.allow_unauthenticated || self.sandbox,
            grpc_reflection: self.grpc_reflection.unwrap_or(self.sandbox),
            request_timeout: self.request_timeout,
            max_in_flight: self.max_in_flight,
            shutdown: ShutdownSettings {
                drain_delay: self.shutdown_drain_delay,
                timeout: self.shutdown_timeout,
            },
            connections: ConnectionSettings {
                max_connection_age: self.grpc_max_connection_age,
                keepalive_interval: self.grpc_keepalive_interval,
                keepalive_timeout: self.grpc_keepalive_timeout,
                max_concurrent_streams: self.grpc_max_concurrent_streams,
            },
        };
        problems.check(
            server.authentication_decided() || reported,
            ConfigError::NoAuthentication,
        );
        problems.check(
            server.permissions_decided() || reported,
            ConfigError::PermissionsUndecided,
        );
        usable.then_some(server)
    }

    /// CALLER_TOKENS (or its file) and CALLER_PERMISSIONS. A set but blank or unparsable
    /// CALLER_TOKENS is a mistake, never "no authentication".
    fn callers(&self, problems: &mut Problems) -> (Option<CallerTokens>, Option<CallerPermissions>, bool) {
        let tokens_given = self.caller_tokens.is_some() || self.caller_tokens_file.is_some();
        let caller_tokens = match (&self.caller_tokens, &self.caller_tokens_file) {
            (Some(_), Some(_)) => problems.fail(ConfigError::CallerTokensTwice),
            (Some(spec), None) => problems.take(CallerTokens::parse(spec.expose())),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|error| {
                    ConfigError::CallerTokensFile(path.display().to_string(), error.kind().to_string())
                })
                .and_then(|spec| CallerTokens::parse(&spec).map_err(ConfigError::from))
                .map_err(|error| problems.0.push(error))
                .ok(),
            (None, None) => None,
        };
        let caller_permissions = self
            .caller_permissions
            .as_ref()
            .and_then(|spec| problems.take(CallerPermissions::parse(spec)));
        // Tokens name every caller there is: a name they lack is a typo or a caller removed.
        if let (Some(tokens), Some(permissions)) = (&caller_tokens, &caller_permissions) {
            let mut unknown: Vec<&str> = permissions.names().filter(|name| !tokens.knows(name)).collect();
            unknown.sort_unstable();
            for name in unknown {
                problems.0.push(ConfigError::UnknownCaller(name.to_owned()));
            }
        }
        // Tokens that did not parse were reported already.
        let unparsed_tokens = tokens_given && caller_tokens.is_none();
        (
            caller_tokens.filter(|_| !unparsed_tokens),
            caller_permissions,
            unparsed_tokens,
        )
    }

    /// The bounds per caller, CALLER_LIMITS parsed and its names checked against CALLER_TOKENS
    /// (as CALLER_PERMISSIONS' are).
    fn quotas(&self, tokens: Option<&CallerTokens>, problems: &mut Problems) -> Option<QuotaSettings> {
        let per_caller = match &self.caller_limits {
            Some(spec) => problems.take(CallerLimits::parse(spec))?,
            None => CallerLimits::default(),
        };
        if let Some(tokens) = tokens {
            let mut unknown: Vec<&str> = per_caller.names().filter(|name| !tokens.knows(name)).collect();
            unknown.sort_unstable();
            for name in unknown {
                problems
                    .0
                    .push(ConfigError::UnknownLimitedCaller(name.to_owned()));
            }
        }
        Some(QuotaSettings {
            defaults: Limits {
                sessions: self.sessions_per_minute,
                lookups: self.lookups_per_minute,
                open: self.open_sessions_per_caller,
            },
            per_caller,
            window: MINUTE,
            namespace: NAMESPACE.to_owned(),
        })
    }

    /// TLS_CERT_FILE and TLS_KEY_FILE together, TLS_CLIENT_CA_FILE only with them. `Some(None)`:
    /// plain text; None: a problem was recorded.
    fn tls(&self, problems: &mut Problems) -> Option<Option<TlsSettings>> {
        match (&self.tls_cert_file, &self.tls_key_file, &self.tls_client_ca_file) {
            (None, None, None) => Some(None),
            (Some(cert), Some(key), client_ca) => {
                let cert_read = problems.take(read_pem(cert));
                let key_read = problems.take(read_pem(key));
                let client_ca_read = problems.take(client_ca.as_deref().map(read_pem).transpose());
                cert_read.and(key_read).and(client_ca_read)?;
                Some(Some(TlsSettings {
                    cert_file: cert.clone(),
                    key_file: key.clone(),
                    client_ca_file: client_ca.clone(),
                    caller_san: self.tls_caller_san.clone(),
                    reload_interval: self.tls_reload_interval,
                }))
            }
            _ => problems.fail(ConfigError::TlsIncomplete),
        }
    }

    /// The checks every Verify applies. Deleting after use needs V1 (checked above): V2 has no
    /// delete call.
    fn policy(&self) -> Policy {
        Policy {
            min_age: self.min_age,
            reject_underage: self.reject_underage,
            max_certification_age: self.certification_max_age,
            rejoin_cooldown: self.retention.rejoin_cooldown,
            clock_skew: self.clock_skew,
            require_session: self.require_session,
            // The sandbox's verifications are test data by design.
            allow_test_channel: self.portone_allow_test_channel || self.sandbox,
            session_ttl: self.verification_session_ttl,
            delete_after: self.portone_delete_after,
        }
    }

    fn check_counts(&self, problems: &mut Problems) {
        let bounded = |value: u64| (1..=MAX_LIMIT).contains(&value);
        let counts: [(bool, &'static str); 11] = [
            (
                bounded(self.sessions_per_minute),
                "SESSIONS_PER_MINUTE must be between 1 and 1000000000",
            ),
            (
                bounded(self.lookups_per_minute),
                "LOOKUPS_PER_MINUTE must be between 1 and 1000000000",
            ),
            (
                bounded(self.open_sessions_per_caller),
                "OPEN_SESSIONS_PER_CALLER must be between 1 and 1000000000",
            ),
            (self.min_age <= MinAge::MAX, "MIN_AGE must be between 0 and 150"),
            (
                (1..=10).contains(&self.portone_max_attempts),
                "PORTONE_MAX_ATTEMPTS must be between 1 and 10",
            ),
            (
                (1..=1_000_000).contains(&self.max_in_flight),
                "MAX_IN_FLIGHT must be between 1 and 1000000",
            ),
            (
                (1..=10_000).contains(&self.portone_max_connections),
                "PORTONE_MAX_CONNECTIONS must be between 1 and 10000",
            ),
            (
                self.portone_circuit_failures <= 1000,
                "PORTONE_CIRCUIT_FAILURES must be between 0 (never open) and 1000",
            ),
            (
                (1..=100_000).contains(&self.grpc_max_concurrent_streams),
                "GRPC_MAX_CONCURRENT_STREAMS must be between 1 and 100000",
            ),
            (
                (1..=1000).contains(&self.database.database_max_connections),
                "DATABASE_MAX_CONNECTIONS must be between 1 and 1000",
            ),
            (
                self.retention.certification_retention >= self.certification_max_age,
                "CERTIFICATION_RETENTION must be at least CERTIFICATION_MAX_AGE: a purged certification could otherwise be verified (and bound) again while still fresh",
            ),
        ];
        for (ok, message) in counts {
            problems.check(ok, ConfigError::OutOfRange(message));
        }
    }

    fn check_durations(&self, problems: &mut Problems) {
        for (name, value, min, max) in self.duration_bounds() {
            problems.check(
                (min..=max).contains(&value),
                ConfigError::Duration(name, human(min), human(max)),
            );
        }
        if let Err(error) = self.retention.validate() {
            problems.0.extend(error.0);
        }
    }

    /// Each duration flag, its value and its bounds: past them, date arithmetic overflows or a
    /// time-out means nothing.
    fn duration_bounds(&self) -> [(&'static str, Duration, Duration, Duration); 18] {
        [
            ("PORTONE_TIMEOUT", self.portone_timeout, MILLISECOND, 5 * MINUTE),
            ("REQUEST_TIMEOUT", self.request_timeout, MILLISECOND, 10 * MINUTE),
            ("REDIS_TIMEOUT", self.redis_timeout, MILLISECOND, MINUTE),
            ("TOKEN_LOCK_TTL", self.token_lock_ttl, MILLISECOND, MINUTE),
            (
                "PORTONE_CIRCUIT_OPEN_FOR",
                self.portone_circuit_open_for,
                MILLISECOND,
                HOUR,
            ),
            (
                "CERTIFICATION_MAX_AGE",
                self.certification_max_age,
                SECOND,
                7 * DAY,
            ),
            ("CLOCK_SKEW", self.clock_skew, ZERO, HOUR),
            (
                "PORTONE_DELETE_AFTER",
                self.portone_delete_after.unwrap_or(ZERO),
                ZERO,
                30 * DAY,
            ),
            (
                "VERIFICATION_SESSION_TTL",
                self.verification_session_ttl,
                MINUTE,
                DAY,
            ),
            (
                "SHUTDOWN_DRAIN_DELAY",
                self.shutdown_drain_delay,
                ZERO,
                10 * MINUTE,
            ),
            ("SHUTDOWN_TIMEOUT", self.shutdown_timeout, ZERO, 10 * MINUTE),
            (
                "GRPC_MAX_CONNECTION_AGE",
                self.grpc_max_connection_age,
                SECOND,
                30 * DAY,
            ),
            (
                "GRPC_KEEPALIVE_INTERVAL",
                self.grpc_keepalive_interval,
                SECOND,
                DAY,
            ),
            (
                "GRPC_KEEPALIVE_TIMEOUT",
                self.grpc_keepalive_timeout,
                SECOND,
                HOUR,
            ),
            ("TLS_RELOAD_INTERVAL", self.tls_reload_interval, MILLISECOND, DAY),
            (
                "PURGE_INTERVAL",
                self.purge_interval.unwrap_or(MINUTE),
                ZERO,
                365 * DAY,
            ),
            (
                "DATABASE_STATEMENT_TIMEOUT",
                self.database.database_statement_timeout,
                MILLISECOND,
                HOUR,
            ),
            (
                "DATABASE_LOCK_TIMEOUT",
                self.database.database_lock_timeout,
                MILLISECOND,
                HOUR,
            ),
        ]
    }
}
