//! Configuration: command-line flags with environment fallbacks, validated into [`Settings`]
//! before anything starts. Secrets are never printed: clap hides their environment values and
//! [`Secret`] redacts its `Debug`.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, builder::BoolishValueParser};

use crate::{
    domain::{CiIndexKey, IndexKeyError, SealingError, SealingKeys},
    grpc::{CallerTokens, CallerTokensError},
    portone::PortoneSettings,
    service::Policy,
    store::StoreSettings,
};

pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/certification-service.db?mode=rwc";

/// The fixed CI index key of `serve --sandbox`: development only, never for real CIs.
const SANDBOX_CI_INDEX_KEY: &str = "Y2VydGlmaWNhdGlvbi1zZXJ2aWNlIHNhbmRib3ggZGV2ZWxvcG1lbnQga2V5IQ==";
/// The fixed encryption key of `serve --sandbox` (32 bytes): development only.
const SANDBOX_CI_ENCRYPTION_KEYS: &str = "sandbox-dev:c2FuZGJveCBkZXZlbG9wbWVudCBrZXksIG5vdCAgb2s=";

/// A token is used until 30 s before PortOne's expiry, and refreshed in the background once it
/// has less than 25 s of that left: 55 s before expiry, inside the last minute in which PortOne
/// extends a token instead of returning the same expiry.
pub const TOKEN_MARGIN: Duration = Duration::from_secs(30);
pub const TOKEN_REFRESH_AHEAD: Duration = Duration::from_secs(25);

/// A string that must never reach a log: its `Debug` and `Display` redact.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
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
    /// Re-encrypt stored CI/DI under the first CI_ENCRYPTION_KEYS key, in batches. Resumable and
    /// safe while the service runs.
    Rekey(RekeyArgs),
    /// Delete certification records past CERTIFICATION_RETENTION, and persons nobody holds any more.
    Purge(PurgeArgs),
    /// Ask a running server's gRPC health; exit 0 when SERVING (probes, `helm test`, no shell needed).
    Health(HealthArgs),
}

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// host:port of the gRPC (or plain health) port.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub addr: String,
    /// The service to ask about: "" (the process) or certification.v1.CertificationService.
    #[arg(long, default_value = "")]
    pub service: String,
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct RekeyArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[arg(long, env = "CI_ENCRYPTION_KEYS", hide_env_values = true)]
    pub ci_encryption_keys: String,
    /// Rows per batch; each batch is read, re-sealed and written back row by row.
    #[arg(long, default_value_t = 500)]
    pub batch_size: u64,
}

#[derive(Args, Debug)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
}

#[derive(Args, Debug, Clone)]
pub struct RetentionArgs {
    /// How long a certification record is kept after it was last seen, e.g. 90d.
    #[arg(long, env = "CERTIFICATION_RETENTION", default_value = "90d", value_parser = humantime::parse_duration)]
    pub certification_retention: Duration,
    /// After Unlink, how long the person may not bind to a new account, e.g. 30d; 0s: at once.
    #[arg(long, env = "REJOIN_COOLDOWN", default_value = "0s", value_parser = humantime::parse_duration)]
    pub rejoin_cooldown: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// postgres://… in production; the default is an embedded SQLite file under ./data.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[arg(long, env = "GRPC_LISTEN_ADDR", default_value = "0.0.0.0:50051")]
    pub grpc_listen_addr: SocketAddr,
    /// Prometheus text at http://<this>/metrics; `off` for none.
    #[arg(long, env = "METRICS_LISTEN_ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_listen_addr: String,
    /// redis://, or rediss:// for TLS; unset keeps the PortOne token in process.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// PEM file of the CA that signed the Redis server's certificate, for `rediss://` with a
    /// private CA; unset: the public web PKI roots.
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// Bound on every Redis call; past it the in-process token copy answers, e.g. 250ms.
    #[arg(long, env = "REDIS_TIMEOUT", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub redis_timeout: Duration,
    /// Longest time one replica holds the fleet-wide getToken lock, e.g. 3s.
    #[arg(long, env = "TOKEN_LOCK_TTL", default_value = "3s", value_parser = humantime::parse_duration)]
    pub token_lock_ttl: Duration,
    #[arg(long, env = "PORTONE_BASE_URL", default_value = "https://api.iamport.kr")]
    pub portone_base_url: String,
    #[arg(long, env = "PORTONE_IMP_KEY", hide_env_values = true)]
    pub portone_imp_key: Option<String>,
    #[arg(long, env = "PORTONE_IMP_SECRET", hide_env_values = true)]
    pub portone_imp_secret: Option<String>,
    /// One HTTP attempt at PortOne, e.g. 5s.
    #[arg(long, env = "PORTONE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub portone_timeout: Duration,
    /// Attempts for an idempotent PortOne call on 5xx, timeouts and connection errors.
    #[arg(long, env = "PORTONE_MAX_ATTEMPTS", default_value_t = 3)]
    pub portone_max_attempts: u32,
    /// Consecutive failed PortOne attempts (connection errors, timeouts, 5xx) after which calls
    /// fail at once with UNAVAILABLE instead of waiting on an outage; 0 never stops calling.
    #[arg(long, env = "PORTONE_CIRCUIT_FAILURES", default_value_t = 5)]
    pub portone_circuit_failures: u32,
    /// How long the circuit stays open before one probe call tests PortOne again.
    #[arg(long, env = "PORTONE_CIRCUIT_OPEN_FOR", default_value = "5s", value_parser = humantime::parse_duration)]
    pub portone_circuit_open_for: Duration,
    /// Requests to PortOne at once (and so connections to it); more wait for a place within
    /// their deadline.
    #[arg(long, env = "PORTONE_MAX_CONNECTIONS", default_value_t = 128)]
    pub portone_max_connections: usize,
    /// Calls in progress at once; past it a call is refused at once with RESOURCE_EXHAUSTED
    /// (reason OVERLOADED) instead of queueing behind the others.
    #[arg(long, env = "MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,
    /// Base64 HMAC key (at least 32 bytes) for the CI/DI lookup hashes. Required unless --sandbox.
    #[arg(long, env = "CI_INDEX_KEY", hide_env_values = true)]
    pub ci_index_key: Option<String>,
    /// `id:base64key,…` AES-256 keys for CI/DI at rest: the first encrypts, all decrypt.
    /// Required unless --sandbox.
    #[arg(long, env = "CI_ENCRYPTION_KEYS", hide_env_values = true)]
    pub ci_encryption_keys: Option<String>,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// After SIGTERM: health turns NOT_SERVING at once and calls are still served this long,
    /// while Kubernetes takes the pod out of the Service's endpoints.
    #[arg(long, env = "SHUTDOWN_DRAIN_DELAY", default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_drain_delay: Duration,
    /// After the drain: how long calls in flight may take to finish before the process exits.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// A connection is closed (gracefully) after this age, so clients rebalance onto new pods.
    #[arg(long, env = "GRPC_MAX_CONNECTION_AGE", default_value = "5m", value_parser = humantime::parse_duration)]
    pub grpc_max_connection_age: Duration,
    /// HTTP/2 PING interval on idle connections, and how long to wait for the answer.
    #[arg(long, env = "GRPC_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub grpc_keepalive_interval: Duration,
    #[arg(long, env = "GRPC_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub grpc_keepalive_timeout: Duration,
    /// Concurrent calls per HTTP/2 connection.
    #[arg(long, env = "GRPC_MAX_CONCURRENT_STREAMS", default_value_t = 256)]
    pub grpc_max_concurrent_streams: u32,
    /// Run `purge` in the background this often, e.g. 24h; unset: only the subcommand purges.
    #[arg(long, env = "PURGE_INTERVAL", value_parser = humantime::parse_duration)]
    pub purge_interval: Option<Duration>,
    /// `name=token,…`: every CertificationService call must carry `authorization: Bearer <token>`
    /// of one of them. Unset (and no file): no authentication, with a warning at start.
    #[arg(long, env = "CALLER_TOKENS", hide_env_values = true)]
    pub caller_tokens: Option<String>,
    /// A file of `name=token` lines, instead of CALLER_TOKENS (a mounted Kubernetes Secret).
    #[arg(long, env = "CALLER_TOKENS_FILE")]
    pub caller_tokens_file: Option<PathBuf>,
    /// PEM certificate chain: serve gRPC over TLS (with TLS_KEY_FILE).
    #[arg(long, env = "TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of TLS_CERT_FILE.
    #[arg(long, env = "TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA: require client certificates signed by it (mTLS); the caller's name is the
    /// certificate's common name (or first DNS name).
    #[arg(long, env = "TLS_CLIENT_CA_FILE")]
    pub tls_client_ca_file: Option<PathBuf>,
    /// A plain-text port serving only health, for kubelet probes when the gRPC port needs mTLS.
    #[arg(long, env = "HEALTH_LISTEN_ADDR")]
    pub health_listen_addr: Option<SocketAddr>,
    /// Serve gRPC server reflection (grpcurl without .proto files); `false` in production if wanted.
    #[arg(long, env = "GRPC_REFLECTION", default_value = "true", value_parser = BoolishValueParser::new())]
    pub grpc_reflection: bool,
    /// Minimum full age (만 나이) when a request does not say.
    #[arg(long, env = "MIN_AGE", default_value_t = 14)]
    pub min_age: u32,
    /// Fail Verify with UNDERAGE below the minimum age, instead of only reporting it.
    #[arg(long, env = "REJECT_UNDERAGE", default_value = "false", value_parser = BoolishValueParser::new())]
    pub reject_underage: bool,
    /// How old a certification may be when verified, e.g. 30m.
    #[arg(long, env = "CERTIFICATION_MAX_AGE", default_value = "30m", value_parser = humantime::parse_duration)]
    pub certification_max_age: Duration,
    /// Upper bound of one call when the caller sets no deadline, e.g. 15s.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Do not apply pending migrations at start (run `migrate` separately).
    #[arg(long, env = "SKIP_MIGRATIONS", default_value = "false", value_parser = BoolishValueParser::new())]
    pub skip_migrations: bool,
    /// Run the built-in PortOne sandbox in process and use it: development only.
    #[arg(long)]
    pub sandbox: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "PortOne credentials missing: set PORTONE_IMP_KEY and PORTONE_IMP_SECRET (or --portone-imp-key/--portone-imp-secret), or run `serve --sandbox` for development"
    )]
    MissingPortoneCredentials,
    #[error(
        "CI_INDEX_KEY missing: set it to a base64 key of at least 32 bytes (e.g. `openssl rand -base64 32`), or run `serve --sandbox` for development"
    )]
    MissingIndexKey,
    #[error(transparent)]
    IndexKey(#[from] IndexKeyError),
    #[error(
        "CI_ENCRYPTION_KEYS missing: set it to `id:base64key` (32-byte key, e.g. `k1:$(openssl rand -base64 32)`), or run `serve --sandbox` for development"
    )]
    MissingEncryptionKeys,
    #[error(transparent)]
    EncryptionKeys(#[from] SealingError),
    #[error(transparent)]
    CallerTokens(#[from] CallerTokensError),
    #[error("reading CALLER_TOKENS_FILE {0}: {1}")]
    CallerTokensFile(String, String),
    #[error("set CALLER_TOKENS or CALLER_TOKENS_FILE, not both")]
    CallerTokensTwice,
    #[error("TLS_CERT_FILE and TLS_KEY_FILE go together; TLS_CLIENT_CA_FILE needs both")]
    TlsIncomplete,
    #[error("reading {0}: {1}")]
    TlsFile(String, String),
    #[error("PORTONE_BASE_URL must be an http:// or https:// URL")]
    BaseUrl,
    #[error("{0}")]
    OutOfRange(&'static str),
    #[error("METRICS_LISTEN_ADDR must be host:port or `off`")]
    MetricsAddr,
}

/// What happens after SIGTERM.
#[derive(Clone, Debug)]
pub struct ShutdownSettings {
    pub drain_delay: Duration,
    pub timeout: Duration,
}

/// HTTP/2 connection management.
#[derive(Clone, Debug)]
pub struct ConnectionSettings {
    pub max_connection_age: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub max_concurrent_streams: u32,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        Self {
            max_connection_age: Duration::from_secs(300),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            max_concurrent_streams: 256,
        }
    }
}

/// Certificates for serving TLS, read at start so a wrong path fails before serving.
#[derive(Clone)]
pub struct TlsSettings {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// Set: clients must present a certificate signed by this CA (mTLS).
    pub client_ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("mutual", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

fn read_pem(path: &std::path::Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|error| ConfigError::TlsFile(path.display().to_string(), error.kind().to_string()))
}

/// Everything the server needs, validated.
#[derive(Clone, Debug)]
pub struct Settings {
    pub grpc_listen_addr: SocketAddr,
    /// None: no metrics listener.
    pub metrics_listen_addr: Option<SocketAddr>,
    pub store: StoreSettings,
    pub redis_url: Option<Secret>,
    pub redis_timeout: Duration,
    pub redis_ca_file: Option<PathBuf>,
    pub portone: PortoneSettings,
    pub ci_index_key: CiIndexKey,
    pub sealing_keys: SealingKeys,
    /// None: no caller authentication.
    pub caller_tokens: Option<CallerTokens>,
    pub grpc_reflection: bool,
    /// None: plain-text gRPC.
    pub tls: Option<TlsSettings>,
    pub health_listen_addr: Option<SocketAddr>,
    pub shutdown: ShutdownSettings,
    pub connections: ConnectionSettings,
    /// Background purge: how often, and what it keeps.
    pub purge_interval: Option<Duration>,
    pub certification_retention: Duration,
    pub policy: Policy,
    pub request_timeout: Duration,
    /// Calls admitted at once; the rest get RESOURCE_EXHAUSTED.
    pub max_in_flight: usize,
    pub migrate_on_start: bool,
    /// How often readiness re-checks the database.
    pub readiness_interval: Duration,
}

impl DatabaseArgs {
    pub fn store_settings(&self) -> StoreSettings {
        StoreSettings {
            database_url: self.database_url.clone(),
            max_connections: self.database_max_connections.max(1),
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

impl ServeArgs {
    /// Validates the flags. `sandbox_base_url` is the in-process sandbox's address with
    /// `--sandbox`, whose fixed credentials and development key then apply.
    pub fn into_settings(self, sandbox_base_url: Option<String>) -> Result<Settings, ConfigError> {
        let (base_url, imp_key, imp_secret) = match sandbox_base_url {
            Some(url) => (
                url,
                crate::sandbox::SANDBOX_IMP_KEY.to_owned(),
                crate::sandbox::SANDBOX_IMP_SECRET.to_owned(),
            ),
            None => match (self.portone_imp_key, self.portone_imp_secret) {
                (Some(key), Some(secret)) if !key.is_empty() && !secret.is_empty() => {
                    (self.portone_base_url, key, secret)
                }
                _ => return Err(ConfigError::MissingPortoneCredentials),
            },
        };
        let base_url = base_url.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ConfigError::BaseUrl);
        }
        let ci_index_key = match (self.ci_index_key, self.sandbox) {
            (Some(encoded), _) => CiIndexKey::from_base64(&encoded)?,
            (None, true) => {
                tracing::warn!(
                    "--sandbox: using the fixed development CI_INDEX_KEY; never use it for real data"
                );
                CiIndexKey::from_base64(SANDBOX_CI_INDEX_KEY)?
            }
            (None, false) => return Err(ConfigError::MissingIndexKey),
        };
        let sealing_keys = match (self.ci_encryption_keys, self.sandbox) {
            (Some(spec), _) if !spec.trim().is_empty() => SealingKeys::parse(&spec)?,
            (_, true) => {
                tracing::warn!(
                    "--sandbox: using the fixed development CI_ENCRYPTION_KEYS; never use it for real data"
                );
                SealingKeys::parse(SANDBOX_CI_ENCRYPTION_KEYS)?
            }
            (_, false) => return Err(ConfigError::MissingEncryptionKeys),
        };
        let caller_tokens = match (
            self.caller_tokens.filter(|spec| !spec.trim().is_empty()),
            self.caller_tokens_file,
        ) {
            (Some(_), Some(_)) => return Err(ConfigError::CallerTokensTwice),
            (Some(spec), None) => Some(CallerTokens::parse(&spec)?),
            (None, Some(path)) => {
                let spec = std::fs::read_to_string(&path).map_err(|error| {
                    ConfigError::CallerTokensFile(path.display().to_string(), error.kind().to_string())
                })?;
                Some(CallerTokens::parse(&spec)?)
            }
            (None, None) => None,
        };
        let tls = match (self.tls_cert_file, self.tls_key_file, self.tls_client_ca_file) {
            (None, None, None) => None,
            (Some(cert), Some(key), client_ca) => Some(TlsSettings {
                cert_pem: read_pem(&cert)?,
                key_pem: read_pem(&key)?,
                client_ca_pem: client_ca.as_deref().map(read_pem).transpose()?,
            }),
            _ => return Err(ConfigError::TlsIncomplete),
        };
        if self.min_age > crate::domain::MinAge::MAX {
            return Err(ConfigError::OutOfRange("MIN_AGE must be between 0 and 150"));
        }
        if !(1..=10).contains(&self.portone_max_attempts) {
            return Err(ConfigError::OutOfRange(
                "PORTONE_MAX_ATTEMPTS must be between 1 and 10",
            ));
        }
        if self.max_in_flight == 0 || self.max_in_flight > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(ConfigError::OutOfRange(
                "MAX_IN_FLIGHT must be between 1 and 2^61 - 1",
            ));
        }
        if self.portone_max_connections == 0 {
            return Err(ConfigError::OutOfRange(
                "PORTONE_MAX_CONNECTIONS must be at least 1",
            ));
        }
        if self.portone_circuit_open_for.is_zero() {
            return Err(ConfigError::OutOfRange(
                "PORTONE_CIRCUIT_OPEN_FOR must be positive",
            ));
        }
        if self.redis_timeout.is_zero() || self.token_lock_ttl.is_zero() {
            return Err(ConfigError::OutOfRange(
                "REDIS_TIMEOUT and TOKEN_LOCK_TTL must be positive",
            ));
        }
        if self.portone_timeout.is_zero() || self.request_timeout.is_zero() {
            return Err(ConfigError::OutOfRange(
                "PORTONE_TIMEOUT and REQUEST_TIMEOUT must be positive",
            ));
        }
        let metrics_listen_addr = match self.metrics_listen_addr.trim() {
            "" | "off" => None,
            address => Some(address.parse().map_err(|_| ConfigError::MetricsAddr)?),
        };
        Ok(Settings {
            grpc_listen_addr: self.grpc_listen_addr,
            metrics_listen_addr,
            store: self.database.store_settings(),
            redis_url: self.redis_url.filter(|url| !url.is_empty()).map(Secret::new),
            redis_timeout: self.redis_timeout,
            redis_ca_file: self.redis_ca_file,
            portone: PortoneSettings {
                base_url,
                imp_key,
                imp_secret: Secret::new(imp_secret),
                request_timeout: self.portone_timeout,
                connect_timeout: Duration::from_secs(3).min(self.portone_timeout),
                max_attempts: self.portone_max_attempts,
                token_margin: TOKEN_MARGIN,
                token_refresh_ahead: TOKEN_REFRESH_AHEAD,
                token_lock_ttl: self.token_lock_ttl,
                max_connections: self.portone_max_connections,
                circuit: crate::portone::CircuitSettings {
                    failure_threshold: self.portone_circuit_failures,
                    open_for: self.portone_circuit_open_for,
                },
            },
            ci_index_key,
            sealing_keys,
            caller_tokens,
            grpc_reflection: self.grpc_reflection,
            tls,
            health_listen_addr: self.health_listen_addr,
            shutdown: ShutdownSettings {
                drain_delay: self.shutdown_drain_delay,
                timeout: self.shutdown_timeout,
            },
            connections: ConnectionSettings {
                max_connection_age: self.grpc_max_connection_age,
                keepalive_interval: self.grpc_keepalive_interval,
                keepalive_timeout: self.grpc_keepalive_timeout,
                max_concurrent_streams: self.grpc_max_concurrent_streams.max(1),
            },
            purge_interval: self.purge_interval.filter(|interval| !interval.is_zero()),
            certification_retention: self.retention.certification_retention,
            policy: Policy {
                min_age: self.min_age,
                reject_underage: self.reject_underage,
                max_certification_age: self.certification_max_age,
                rejoin_cooldown: self.retention.rejoin_cooldown,
            },
            request_timeout: self.request_timeout,
            max_in_flight: self.max_in_flight,
            migrate_on_start: !self.skip_migrations,
            readiness_interval: Duration::from_secs(5),
        })
    }
}
