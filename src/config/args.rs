//! The command line: subcommands and flags, each with an environment variable behind it.
//! Parsing only; [`super::validate`] turns `serve`'s flags into [`super::Settings`].

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use chrono::{DateTime, Utc};
use clap::{ArgAction, Args, Parser, Subcommand, builder::BoolishValueParser};

use super::{CallerSan, DEFAULT_DATABASE_URL};
use crate::{
    audit::{Actor, AuditKey, AuditKeyError, export::ExportReason, report::Month},
    secret::Secret,
    store::StoreSettings,
};

/// Parses a flag's value into a [`Secret`], so no `Debug` of the arguments can print it.
fn secret(raw: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(raw))
}

#[derive(Parser, Debug)]
#[command(
    name = "certification-service",
    version,
    about = "PortOne phone identity verification, as a gRPC service"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start; boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve CertificationService over gRPC (applies pending migrations first unless told not to).
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Re-encrypt stored CI/DI under the first CI_ENCRYPTION_KEYS key and re-index them by their
    /// canonical form, in batches. Resumable and safe while the service runs; exits non-zero when
    /// two rows are one person (listed for the operator, never merged). Leaves an access record
    /// (work `change`).
    Rekey(RekeyArgs),
    /// Delete certification records past CERTIFICATION_RETENTION, and persons nobody holds any more.
    /// Leaves an access record (work `deletion`).
    Purge(PurgeArgs),
    /// Ask a running server's gRPC health; exit 0 when SERVING (probes, `helm test`, no shell needed).
    Health(HealthArgs),
    /// The access records (접속기록).
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Recompute the access records' chains: exits non-zero at the first record changed,
    /// inserted or removed, or a chain cut short of the head its writer logged (--heads).
    Verify(AuditVerifyArgs),
    /// Write the access records of a span as JSON lines on stdout, ordered by time. The export
    /// first leaves its own record (work `download`, naming --actor): if that cannot be
    /// written, nothing is printed and the command fails.
    Export(AuditExportArgs),
    /// Print the monthly review of a month (UTC): records per caller and kind of work,
    /// refusals by reason, callers and actors departing from their usual, the exports made.
    Report(AuditReportArgs),
}

/// AUDIT_KEY, for the commands that chain records or name a person by their pseudonym.
#[derive(Args, Debug)]
pub struct AuditKeyArgs {
    /// The service's AUDIT_KEY.
    #[arg(long, env = "AUDIT_KEY", hide_env_values = true, value_parser = secret)]
    pub(crate) audit_key: Secret,
}

impl AuditKeyArgs {
    pub(crate) fn key(&self) -> Result<AuditKey, AuditKeyError> {
        AuditKey::from_base64(self.audit_key.expose())
    }
}

/// What an operator command's own access record needs.
#[derive(Args, Debug)]
pub struct OperatorArgs {
    #[command(flatten)]
    pub(crate) audit: AuditKeyArgs,
    /// Who runs the command (an operator's id: 1 to 64 characters of A-Z a-z 0-9 . _ @ -),
    /// the actor of its access record.
    #[arg(long, value_parser = actor)]
    pub(crate) actor: Option<Actor>,
}

fn export_reason(raw: &str) -> Result<ExportReason, String> {
    ExportReason::parse(raw).ok_or_else(|| {
        let known: Vec<&str> = ExportReason::ALL.iter().map(|reason| reason.as_str()).collect();
        format!("not a reason: one of {}", known.join(", "))
    })
}

fn actor(raw: &str) -> Result<Actor, String> {
    Actor::parse(raw).map_err(|violation| violation.description)
}

#[derive(Args, Debug)]
pub struct AuditVerifyArgs {
    #[command(flatten)]
    pub(crate) database: DatabaseArgs,
    #[command(flatten)]
    pub(crate) audit: AuditKeyArgs,
    /// Check the chains that have records from this time on (RFC 3339).
    #[arg(long, value_parser = rfc3339)]
    pub(crate) from: Option<DateTime<Utc>>,
    /// … and before this time (RFC 3339).
    #[arg(long, value_parser = rfc3339)]
    pub(crate) to: Option<DateTime<Utc>>,
    /// Logs of the service (JSON or text lines) with the heads its writers logged: a chain
    /// stored short of a logged head was cut. Repeatable.
    #[arg(long)]
    pub(crate) heads: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct AuditExportArgs {
    #[command(flatten)]
    pub(crate) database: DatabaseArgs,
    #[command(flatten)]
    pub(crate) audit: AuditKeyArgs,
    /// Who takes the records out (an operator's id: 1 to 64 characters of A-Z a-z 0-9 . _ @ -),
    /// the actor of the export's own `download` record.
    #[arg(long, value_parser = actor)]
    pub(crate) actor: Actor,
    /// Why: monthly-review, subject-request, investigation or audit. Kept as the `purpose` of
    /// the export's own record, for the monthly review to check.
    #[arg(long, value_parser = export_reason)]
    pub(crate) reason: ExportReason,
    /// Records from this time on (RFC 3339).
    #[arg(long, value_parser = rfc3339)]
    pub(crate) from: DateTime<Utc>,
    /// … and before this time (RFC 3339).
    #[arg(long, value_parser = rfc3339)]
    pub(crate) to: DateTime<Utc>,
    /// Only the records of this caller (its configured name; `operator` for operator commands).
    #[arg(long)]
    pub(crate) caller: Option<String>,
    /// Only the records of this account.
    #[arg(long)]
    pub(crate) account: Option<String>,
    /// Only the records of the person with this CI (any base64 form), found by its pseudonym
    /// under AUDIT_KEY. The CI itself is neither printed nor recorded; pass it in the
    /// environment, where other users' `ps` does not show it.
    #[arg(long, env = "AUDIT_PERSON_CI", hide_env_values = true, value_parser = secret)]
    pub(crate) person_ci: Option<Secret>,
}

#[derive(Args, Debug)]
pub struct AuditReportArgs {
    #[command(flatten)]
    pub(crate) database: DatabaseArgs,
    /// The month to review, YYYY-MM (UTC).
    #[arg(long, value_parser = Month::parse)]
    pub(crate) month: Month,
}

fn rfc3339(raw: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(raw)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|error| format!("not an RFC 3339 time (e.g. 2026-12-01T00:00:00Z): {error}"))
}

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// host:port of the gRPC (or plain health) port.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub(crate) addr: String,
    /// The service to ask about: "" (the process) or certification.v1.CertificationService.
    #[arg(long, default_value = "")]
    pub(crate) service: String,
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub(crate) timeout: Duration,
}

#[derive(Args, Debug)]
pub struct RekeyArgs {
    #[command(flatten)]
    pub(crate) database: DatabaseArgs,
    #[arg(long, env = "CI_ENCRYPTION_KEYS", hide_env_values = true, value_parser = secret)]
    pub(crate) ci_encryption_keys: Secret,
    /// The service's CI_INDEX_KEY: rows are re-indexed by the hash of their canonical CI/DI.
    #[arg(long, env = "CI_INDEX_KEY", hide_env_values = true, value_parser = secret)]
    pub(crate) ci_index_key: Secret,
    /// Rows per batch; each batch is read, re-sealed and written back row by row.
    #[arg(long, default_value_t = 500)]
    pub(crate) batch_size: u64,
    #[command(flatten)]
    pub(crate) operator: OperatorArgs,
}

#[derive(Args, Debug)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub(crate) database: DatabaseArgs,
    #[command(flatten)]
    pub(crate) retention: RetentionArgs,
    #[command(flatten)]
    pub(crate) operator: OperatorArgs,
}

#[derive(Args, Debug, Clone)]
pub struct RetentionArgs {
    /// How long a certification record is kept after it was last seen, e.g. 90d.
    #[arg(long, env = "CERTIFICATION_RETENTION", default_value = "90d", value_parser = humantime::parse_duration)]
    pub(crate) certification_retention: Duration,
    /// After Unlink, how long the person may not bind to a new account, e.g. 30d; 0s: at once.
    #[arg(long, env = "REJOIN_COOLDOWN", default_value = "0s", value_parser = humantime::parse_duration)]
    pub(crate) rejoin_cooldown: Duration,
    /// How long access records are kept: at least a year by law, two for a system holding
    /// 50,000 people or more (this default).
    #[arg(long, env = "AUDIT_RETENTION", default_value = "730d", value_parser = humantime::parse_duration)]
    pub(crate) audit_retention: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// postgres://… in production; the default is an embedded SQLite file under ./data.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true, value_parser = secret)]
    pub(crate) database_url: Secret,
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub(crate) database_max_connections: u32,
    /// PostgreSQL: a statement running longer is cancelled, so a stuck one cannot hold a pooled
    /// connection (and its locks) for ever, e.g. 10s.
    #[arg(long, env = "DATABASE_STATEMENT_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) database_statement_timeout: Duration,
    /// PostgreSQL: how long a statement waits for a row lock before giving up, e.g. 3s.
    #[arg(long, env = "DATABASE_LOCK_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub(crate) database_lock_timeout: Duration,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub(crate) database: DatabaseArgs,
    #[arg(long, env = "GRPC_LISTEN_ADDR", default_value = "0.0.0.0:50051")]
    pub(crate) grpc_listen_addr: SocketAddr,
    /// Prometheus text at http://<this>/metrics; `off` for none.
    #[arg(long, env = "METRICS_LISTEN_ADDR", default_value = "0.0.0.0:9090")]
    pub(crate) metrics_listen_addr: String,
    /// redis://, or rediss:// for TLS; unset keeps the PortOne token in process.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_parser = secret)]
    pub(crate) redis_url: Option<Secret>,
    /// PEM file of the CA that signed the Redis server's certificate, for `rediss://` with a
    /// private CA; unset: the public web PKI roots.
    #[arg(long, env = "REDIS_CA_FILE")]
    pub(crate) redis_ca_file: Option<PathBuf>,
    /// Bound on every Redis call; past it the in-process token copy answers, e.g. 250ms.
    #[arg(long, env = "REDIS_TIMEOUT", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub(crate) redis_timeout: Duration,
    /// Longest time one replica holds the fleet-wide getToken lock, e.g. 3s.
    #[arg(long, env = "TOKEN_LOCK_TTL", default_value = "3s", value_parser = humantime::parse_duration)]
    pub(crate) token_lock_ttl: Duration,
    #[arg(long, env = "PORTONE_BASE_URL", default_value = "https://api.iamport.kr")]
    pub(crate) portone_base_url: String,
    #[arg(long, env = "PORTONE_IMP_KEY", hide_env_values = true)]
    pub(crate) portone_imp_key: Option<String>,
    #[arg(long, env = "PORTONE_IMP_SECRET", hide_env_values = true, value_parser = secret)]
    pub(crate) portone_imp_secret: Option<Secret>,
    /// A V1 sub-merchant's 3-character code, sent as the `Tier` header on lookups.
    #[arg(long, env = "PORTONE_TIER")]
    pub(crate) portone_tier: Option<String>,
    /// PortOne V2 API secret: turns V2 identity verifications on (beside V1 when both are set).
    #[arg(long, env = "PORTONE_V2_API_SECRET", hide_env_values = true, value_parser = secret)]
    pub(crate) portone_v2_api_secret: Option<Secret>,
    #[arg(long, env = "PORTONE_V2_BASE_URL", default_value = "https://api.portone.io")]
    pub(crate) portone_v2_base_url: String,
    /// The V2 store, sent as `storeId`, and handed to callers for the browser SDK.
    #[arg(long, env = "PORTONE_STORE_ID")]
    pub(crate) portone_store_id: Option<String>,
    /// The V2 channel key handed to callers for the browser SDK.
    #[arg(long, env = "PORTONE_V2_CHANNEL_KEY")]
    pub(crate) portone_v2_channel_key: Option<String>,
    /// Accept V2 verifications made on a TEST channel (not real people). `--sandbox` sets it.
    #[arg(long, env = "PORTONE_ALLOW_TEST_CHANNEL", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = BoolishValueParser::new())]
    pub(crate) portone_allow_test_channel: bool,
    /// One HTTP attempt at PortOne, e.g. 5s.
    #[arg(long, env = "PORTONE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub(crate) portone_timeout: Duration,
    /// Attempts for an idempotent PortOne call on 5xx, timeouts and connection errors.
    #[arg(long, env = "PORTONE_MAX_ATTEMPTS", default_value_t = 3)]
    pub(crate) portone_max_attempts: u32,
    /// Consecutive failed PortOne attempts (connection errors, timeouts, 5xx) after which calls
    /// fail at once with UNAVAILABLE instead of waiting on an outage; 0 never stops calling.
    #[arg(long, env = "PORTONE_CIRCUIT_FAILURES", default_value_t = 5)]
    pub(crate) portone_circuit_failures: u32,
    /// How long the circuit stays open before one probe call tests PortOne again.
    #[arg(long, env = "PORTONE_CIRCUIT_OPEN_FOR", default_value = "5s", value_parser = humantime::parse_duration)]
    pub(crate) portone_circuit_open_for: Duration,
    /// Requests to PortOne at once (and so connections to it); more wait for a place within
    /// their deadline.
    #[arg(long, env = "PORTONE_MAX_CONNECTIONS", default_value_t = 128)]
    pub(crate) portone_max_connections: usize,
    /// Calls in progress at once; past it a call is refused at once with RESOURCE_EXHAUSTED
    /// (reason OVERLOADED) instead of queueing behind the others.
    #[arg(long, env = "MAX_IN_FLIGHT", default_value_t = 1024)]
    pub(crate) max_in_flight: usize,
    /// Sessions a caller may begin per minute, counted across replicas with REDIS_URL; past it
    /// RESOURCE_EXHAUSTED (reason CALLER_QUOTA) with a retry delay.
    #[arg(long, env = "SESSIONS_PER_MINUTE", default_value_t = 600)]
    pub(crate) sessions_per_minute: u64,
    /// PortOne look-ups a caller's Verify and CheckDuplicate may cause per minute, counted
    /// across replicas with REDIS_URL; past it RESOURCE_EXHAUSTED (CALLER_QUOTA), before PortOne.
    #[arg(long, env = "LOOKUPS_PER_MINUTE", default_value_t = 1200)]
    pub(crate) lookups_per_minute: u64,
    /// A caller's sessions unredeemed and unexpired; past it BeginVerification is
    /// RESOURCE_EXHAUSTED (CALLER_QUOTA) until one is redeemed or expires.
    #[arg(long, env = "OPEN_SESSIONS_PER_CALLER", default_value_t = 100_000)]
    pub(crate) open_sessions_per_caller: u64,
    /// Per-caller overrides of the three bounds: `name=sessions:N+lookups:N+open:N,…`, any of
    /// the three keys; every name must be one of CALLER_TOKENS'.
    #[arg(long, env = "CALLER_LIMITS")]
    pub(crate) caller_limits: Option<String>,
    /// Base64 HMAC key (at least 32 bytes) for the CI/DI lookup hashes. Required unless --sandbox.
    #[arg(long, env = "CI_INDEX_KEY", hide_env_values = true, value_parser = secret)]
    pub(crate) ci_index_key: Option<Secret>,
    /// `id:base64key,…` AES-256 keys for CI/DI at rest: the first encrypts, all decrypt.
    /// Required unless --sandbox.
    #[arg(long, env = "CI_ENCRYPTION_KEYS", hide_env_values = true, value_parser = secret)]
    pub(crate) ci_encryption_keys: Option<Secret>,
    /// Base64 HMAC key (at least 32 bytes) of the access records: their chains' MACs and the
    /// person pseudonyms. Required unless --sandbox.
    #[arg(long, env = "AUDIT_KEY", hide_env_values = true, value_parser = secret)]
    pub(crate) audit_key: Option<Secret>,
    /// How often each writer logs the head of its access-record chain (also at shutdown), so a
    /// cut tail is found by `audit verify --heads`.
    #[arg(long, env = "AUDIT_HEAD_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    pub(crate) audit_head_interval: Duration,
    #[command(flatten)]
    pub(crate) retention: RetentionArgs,
    /// After SIGTERM: health turns NOT_SERVING at once and calls are still served this long,
    /// while Kubernetes takes the pod out of the Service's endpoints.
    #[arg(long, env = "SHUTDOWN_DRAIN_DELAY", default_value = "5s", value_parser = humantime::parse_duration)]
    pub(crate) shutdown_drain_delay: Duration,
    /// After the drain: how long calls in flight may take to finish before the process exits.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub(crate) shutdown_timeout: Duration,
    /// A connection is closed (gracefully) after this age, so clients rebalance onto new pods.
    #[arg(long, env = "GRPC_MAX_CONNECTION_AGE", default_value = "5m", value_parser = humantime::parse_duration)]
    pub(crate) grpc_max_connection_age: Duration,
    /// HTTP/2 PING interval on idle connections, and how long to wait for the answer.
    #[arg(long, env = "GRPC_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub(crate) grpc_keepalive_interval: Duration,
    #[arg(long, env = "GRPC_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) grpc_keepalive_timeout: Duration,
    /// Concurrent calls per HTTP/2 connection.
    #[arg(long, env = "GRPC_MAX_CONCURRENT_STREAMS", default_value_t = 256)]
    pub(crate) grpc_max_concurrent_streams: u32,
    /// Run `purge` in the background this often, e.g. 24h; unset: only the subcommand purges.
    #[arg(long, env = "PURGE_INTERVAL", value_parser = humantime::parse_duration)]
    pub(crate) purge_interval: Option<Duration>,
    /// `name=token,…` (a name twice: two tokens, during a rotation): every CertificationService
    /// call must carry `authorization: Bearer <token>` of one of them. `serve` refuses to start with neither this (or its file) nor
    /// TLS_CLIENT_CA_FILE, unless ALLOW_UNAUTHENTICATED=true.
    #[arg(long, env = "CALLER_TOKENS", hide_env_values = true, value_parser = secret)]
    pub(crate) caller_tokens: Option<Secret>,
    /// A file of `name=token` lines, instead of CALLER_TOKENS (a mounted Kubernetes Secret).
    #[arg(long, env = "CALLER_TOKENS_FILE")]
    pub(crate) caller_tokens_file: Option<PathBuf>,
    /// PEM certificate chain: serve gRPC over TLS (with TLS_KEY_FILE).
    #[arg(long, env = "TLS_CERT_FILE")]
    pub(crate) tls_cert_file: Option<PathBuf>,
    /// PEM private key of TLS_CERT_FILE.
    #[arg(long, env = "TLS_KEY_FILE")]
    pub(crate) tls_key_file: Option<PathBuf>,
    /// PEM CA: require client certificates signed by it, for clientAuth (mTLS); TLS_CALLER_SAN
    /// says which of their names is the caller's.
    #[arg(long, env = "TLS_CLIENT_CA_FILE")]
    pub(crate) tls_client_ca_file: Option<PathBuf>,
    /// Which subject alternative name of a client certificate names its caller: `dns` (its one
    /// DNS name) or `uri:<prefix>` (its one URI starting with the prefix, less the prefix).
    #[arg(long, env = "TLS_CALLER_SAN", default_value = "dns", value_parser = CallerSan::parse)]
    pub(crate) tls_caller_san: CallerSan,
    /// How often the TLS files are read again: new connections get what changed; a broken file
    /// keeps the certificates in use.
    #[arg(long, env = "TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) tls_reload_interval: Duration,
    /// A plain-text port serving only health, for kubelet probes when the gRPC port needs mTLS.
    #[arg(long, env = "HEALTH_LISTEN_ADDR")]
    pub(crate) health_listen_addr: Option<SocketAddr>,
    /// `name=Item+Item,…`, an item a method or `BeginVerification:SIGNUP|REVERIFY` (`name=*`:
    /// every method; `*` alone: every caller, every method). Required with CALLER_TOKENS or
    /// TLS_CLIENT_CA_FILE: nothing is granted by leaving it out.
    #[arg(long, env = "CALLER_PERMISSIONS")]
    pub(crate) caller_permissions: Option<String>,
    /// Serve without caller authentication (no CALLER_TOKENS, no TLS_CLIENT_CA_FILE): anyone who
    /// reaches the port may call. `--sandbox` sets it.
    #[arg(long, env = "ALLOW_UNAUTHENTICATED", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = BoolishValueParser::new())]
    pub(crate) allow_unauthenticated: bool,
    /// Serve gRPC server reflection (grpcurl without .proto files). Default: on with
    /// `--sandbox`, off otherwise.
    #[arg(long, env = "GRPC_REFLECTION", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub(crate) grpc_reflection: Option<bool>,
    /// Minimum full age (만 나이) when a request does not say.
    #[arg(long, env = "MIN_AGE", default_value_t = 14)]
    pub(crate) min_age: u32,
    /// Fail Verify with UNDERAGE below the minimum age, instead of only reporting it.
    #[arg(long, env = "REJECT_UNDERAGE", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = BoolishValueParser::new())]
    pub(crate) reject_underage: bool,
    /// How old a certification may be when verified, e.g. 30m.
    #[arg(long, env = "CERTIFICATION_MAX_AGE", default_value = "30m", value_parser = humantime::parse_duration)]
    pub(crate) certification_max_age: Duration,
    /// How far a certification's time may be ahead of our clock; later is refused, e.g. 60s.
    #[arg(long, env = "CLOCK_SKEW", default_value = "60s", value_parser = humantime::parse_duration)]
    pub(crate) clock_skew: Duration,
    /// Verify must redeem a session BeginVerification issued (its merchant_uid). `false` keeps
    /// Verify working for callers that issue merchant_uids themselves.
    #[arg(long, env = "REQUIRE_SESSION", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value = "true", value_parser = BoolishValueParser::new())]
    pub(crate) require_session: bool,
    /// Delete a redeemed session's V1 certification at PortOne this long after (e.g. 10m);
    /// unset: never (PortOne keeps it).
    #[arg(long, env = "PORTONE_DELETE_AFTER", value_parser = humantime::parse_duration)]
    pub(crate) portone_delete_after: Option<Duration>,
    /// How long a verification session waits for its Verify, e.g. 15m.
    #[arg(long, env = "VERIFICATION_SESSION_TTL", default_value = "15m", value_parser = humantime::parse_duration)]
    pub(crate) verification_session_ttl: Duration,
    /// Upper bound of one call when the caller sets no deadline, e.g. 15s.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub(crate) request_timeout: Duration,
    /// Do not apply pending migrations at start (run `migrate` separately).
    #[arg(long, env = "SKIP_MIGRATIONS", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = BoolishValueParser::new())]
    pub(crate) skip_migrations: bool,
    /// Run the built-in PortOne sandbox in process and use it: development only.
    #[arg(long)]
    pub(crate) sandbox: bool,
    /// Where `--sandbox` serves its PortOne emulator and `/__sandbox/` fault routes; the sandbox
    /// image sets 0.0.0.0:8900.
    #[arg(long, env = "SANDBOX_LISTEN_ADDR", default_value = "127.0.0.1:0")]
    #[cfg_attr(not(feature = "sandbox"), allow(dead_code))]
    pub(crate) sandbox_listen_addr: SocketAddr,
    /// Let `--sandbox` start beside production signals (a PostgreSQL DATABASE_URL, REDIS_URL,
    /// PortOne URLs or secrets, non-development keys), which it otherwise refuses.
    #[arg(long, env = "SANDBOX_ALLOW_EXTERNAL", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = BoolishValueParser::new())]
    pub(crate) sandbox_allow_external: bool,
}

impl DatabaseArgs {
    pub(crate) fn store_settings(&self) -> StoreSettings {
        StoreSettings {
            database_url: self.database_url.clone(),
            max_connections: self.database_max_connections.max(1),
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: self.database_statement_timeout,
            lock_timeout: self.database_lock_timeout,
            migrate_on_start: true,
            readiness_interval: Duration::from_secs(5),
        }
    }
}
