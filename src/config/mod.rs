//! Configuration: command-line flags with environment fallbacks ([`args`]), validated into
//! [`Settings`] before anything starts ([`validate`]). Settings are grouped by what they
//! configure. Secrets are never printed: clap hides their environment values and
//! [`crate::secret::Secret`] redacts its `Debug`.

mod args;
mod errors;
mod portone;
#[cfg(test)]
mod tests;
mod validate;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

pub use args::{
    AuditCommand, AuditExportArgs, AuditKeyArgs, AuditReportArgs, AuditVerifyArgs, Cli, Command,
    DatabaseArgs, HealthArgs, OperatorArgs, PurgeArgs, RekeyArgs, RetentionArgs, ServeArgs,
};
pub use errors::{ConfigError, ConfigErrors};

use crate::{
    access::{CallerPermissions, CallerTokens},
    audit::AuditKey,
    domain::{CiIndexKey, SealingKeys},
    portone::{v1::PortoneSettings, v2::PortoneV2Settings},
    quota::QuotaSettings,
    secret::Secret,
    service::Policy,
    store::StoreSettings,
};

pub(crate) const DEFAULT_DATABASE_URL: &str = "sqlite://data/certification-service.db?mode=rwc";

/// A token is used until 30 s before PortOne's expiry, and refreshed in the background once it
/// has less than 25 s of that left: 55 s before expiry, inside the last minute in which PortOne
/// extends a token instead of returning the same expiry.
pub(crate) const TOKEN_MARGIN: Duration = Duration::from_secs(30);
pub(crate) const TOKEN_REFRESH_AHEAD: Duration = Duration::from_secs(25);

/// Everything the server needs, validated.
#[derive(Clone, Debug)]
pub struct Settings {
    pub server: ServerSettings,
    pub store: StoreSettings,
    /// None: the PortOne token stays in process.
    pub redis: Option<RedisSettings>,
    /// PortOne V1, when its key and secret are set (or `--sandbox`).
    pub portone_v1: Option<PortoneSettings>,
    /// PortOne V2, when PORTONE_V2_API_SECRET is set (or `--sandbox`).
    pub portone_v2: Option<PortoneV2Settings>,
    pub keys: KeySettings,
    pub policy: Policy,
    /// Bounds per caller (SESSIONS_PER_MINUTE, LOOKUPS_PER_MINUTE, OPEN_SESSIONS_PER_CALLER,
    /// CALLER_LIMITS).
    pub quotas: QuotaSettings,
    pub maintenance: MaintenanceSettings,
}

/// The gRPC port and its neighbours: listeners, TLS, callers, limits, shutdown.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub(crate) grpc_listen_addr: SocketAddr,
    /// None: no metrics listener.
    pub metrics_listen_addr: Option<SocketAddr>,
    pub health_listen_addr: Option<SocketAddr>,
    /// None: plain-text gRPC.
    pub tls: Option<TlsSettings>,
    /// None: no bearer tokens (then mTLS, or ALLOW_UNAUTHENTICATED, must be on).
    pub caller_tokens: Option<CallerTokens>,
    /// None only without caller authentication (ALLOW_UNAUTHENTICATED): every caller is then
    /// the same anonymous one. With tokens or mTLS it must be set (`*` for every caller, every
    /// method): default-deny.
    pub caller_permissions: Option<CallerPermissions>,
    /// Serve with neither tokens nor mTLS. Only ever set on purpose (`--sandbox`, tests).
    pub allow_unauthenticated: bool,
    pub grpc_reflection: bool,
    /// Upper bound of a call whose caller set no deadline.
    pub request_timeout: Duration,
    /// Calls admitted at once; the rest get RESOURCE_EXHAUSTED.
    pub max_in_flight: usize,
    pub shutdown: ShutdownSettings,
    pub(crate) connections: ConnectionSettings,
}

impl ServerSettings {
    /// Clients must present a certificate from our CA, which names the caller.
    pub(crate) fn mutual_tls(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.client_ca_file.is_some())
    }

    /// Callers authenticate (tokens or mTLS), or an open port was asked for in so many words.
    pub(crate) fn authentication_decided(&self) -> bool {
        self.caller_tokens.is_some() || self.mutual_tls() || self.allow_unauthenticated
    }

    /// How many callers may call, for the fair share of MAX_IN_FLIGHT: CALLER_TOKENS' names,
    /// one without authentication (every call is the anonymous caller), None under mTLS alone
    /// (any certificate from the client CA names a caller).
    pub(crate) fn known_callers(&self) -> Option<usize> {
        match &self.caller_tokens {
            Some(tokens) => Some(tokens.names().count()),
            None if self.mutual_tls() => None,
            None => Some(1),
        }
    }

    /// Authenticated callers have their permissions said, if only as `*`: nothing is granted by
    /// leaving CALLER_PERMISSIONS out.
    pub(crate) fn permissions_decided(&self) -> bool {
        self.caller_permissions.is_some() || (self.caller_tokens.is_none() && !self.mutual_tls())
    }
}

/// The shared PortOne token cache.
#[derive(Clone, Debug)]
pub struct RedisSettings {
    pub url: Secret,
    /// Bound on every Redis call; past it the in-process copy answers.
    pub timeout: Duration,
    /// PEM CA for `rediss://` with a private CA; None: the web PKI roots.
    pub ca_file: Option<PathBuf>,
}

/// The keys that protect CI and DI at rest.
#[derive(Clone, Debug)]
pub struct KeySettings {
    pub ci_index_key: CiIndexKey,
    pub sealing_keys: SealingKeys,
    /// AUDIT_KEY: the access records' MACs and person pseudonyms.
    pub audit_key: AuditKey,
}

/// What is kept, and how often the background purge runs.
#[derive(Clone, Debug)]
pub struct MaintenanceSettings {
    /// None: only the `purge` subcommand purges.
    pub purge_interval: Option<Duration>,
    pub certification_retention: Duration,
    /// AUDIT_RETENTION: how long access records are kept.
    pub audit_retention: Duration,
    /// AUDIT_HEAD_INTERVAL: how often the service logs the heads of its access-record chains.
    pub audit_head_interval: Duration,
}

/// What happens after SIGTERM.
#[derive(Clone, Debug)]
pub struct ShutdownSettings {
    pub drain_delay: Duration,
    pub timeout: Duration,
}

/// HTTP/2 connection management.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionSettings {
    pub(crate) max_connection_age: Duration,
    pub(crate) keepalive_interval: Duration,
    pub(crate) keepalive_timeout: Duration,
    pub(crate) max_concurrent_streams: u32,
}

/// Where the certificates for serving TLS are. They are read at start (a wrong path or a broken
/// file fails before serving) and again every `reload_interval`, so that a renewed certificate or
/// a rotated client CA is served without a restart.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Set: clients must present a certificate signed by this CA, for clientAuth (mTLS).
    pub client_ca_file: Option<PathBuf>,
    /// Under mTLS, which name of a client certificate is its caller's.
    pub caller_san: CallerSan,
    pub reload_interval: Duration,
}

/// TLS_CALLER_SAN: the subject alternative name of a client certificate that names its caller.
/// Never the subject's common name, which any CA-signed certificate has and which SAN-aware
/// issuers leave free-form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallerSan {
    /// `dns`: the certificate's one DNS name.
    Dns,
    /// `uri:<prefix>`: its one URI starting with the prefix (e.g. a SPIFFE id's
    /// `spiffe://cluster.local/ns/apps/sa/`), less the prefix.
    Uri { prefix: String },
}

impl CallerSan {
    pub(crate) fn parse(spec: &str) -> Result<Self, String> {
        match spec.trim() {
            "dns" => Ok(Self::Dns),
            other => other
                .strip_prefix("uri:")
                .map(|prefix| Self::Uri {
                    prefix: prefix.to_owned(),
                })
                .ok_or_else(|| format!("{other:?} is neither `dns` nor `uri:<prefix>`")),
        }
    }

    /// The caller a certificate with these names is, if exactly one name of the chosen kind
    /// matches: two would leave the choice to the order an issuer wrote them in.
    pub(crate) fn caller_name<'a>(
        &self,
        dns_names: impl IntoIterator<Item = &'a str>,
        uris: impl IntoIterator<Item = &'a str>,
    ) -> Option<String> {
        let mut candidates: Vec<&str> = match self {
            Self::Dns => dns_names.into_iter().collect(),
            Self::Uri { prefix } => uris
                .into_iter()
                .filter_map(|uri| uri.strip_prefix(prefix.as_str()))
                .collect(),
        };
        let name = candidates.pop()?;
        let name_ok = candidates.is_empty()
            && !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"._-".contains(&byte));
        name_ok.then(|| name.to_owned())
    }
}
