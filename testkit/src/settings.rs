//! The settings every test and benchmark starts from: the production defaults where they make
//! sense, short time-outs, fixed test keys, and the PortOne (sandbox) and database given.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD};
use certification_service::{
    config::{
        ConnectionSettings, KeySettings, MaintenanceSettings, ServerSettings, Settings, ShutdownSettings,
        TOKEN_MARGIN, TOKEN_REFRESH_AHEAD,
    },
    domain::{CiIndexKey, SealingKeys},
    portone::{CircuitSettings, HttpSettings, v1::PortoneSettings, v2::PortoneV2Settings},
    sandbox::{SANDBOX_STORE_ID, SANDBOX_V2_API_SECRET, SANDBOX_V2_CHANNEL_KEY},
    secret::Secret,
    service::Policy,
    store::StoreSettings,
};

pub const TEST_INDEX_KEY: [u8; 32] = [42; 32];

/// CI_ENCRYPTION_KEYS of the tests: one key, id `test-k1`.
pub fn test_encryption_keys() -> String {
    format!("test-k1:{}", STANDARD.encode([9u8; 32]))
}

/// Settings for a server on 127.0.0.1:0 against PortOne at `portone_base_url` with these
/// credentials, storing in `database_url`; no Redis, no authentication, no side ports.
pub fn test_settings(
    database_url: &str,
    portone_base_url: &str,
    imp_key: &str,
    imp_secret: &str,
) -> Settings {
    Settings {
        server: ServerSettings {
            grpc_listen_addr: "127.0.0.1:0".parse().expect("a literal address"),
            metrics_listen_addr: None,
            health_listen_addr: None,
            tls: None,
            caller_tokens: None,
            caller_permissions: None,
            // The tests' servers listen on 127.0.0.1 only; authentication tests turn it on.
            allow_unauthenticated: true,
            grpc_reflection: true,
            request_timeout: Duration::from_secs(10),
            max_in_flight: 1024,
            shutdown: ShutdownSettings {
                drain_delay: Duration::ZERO,
                timeout: Duration::from_secs(5),
            },
            connections: ConnectionSettings::default(),
        },
        store: StoreSettings {
            database_url: Secret::new(database_url),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            lock_timeout: Duration::from_secs(3),
            migrate_on_start: true,
            readiness_interval: Duration::from_millis(200),
        },
        redis: None,
        // The sandbox answers V2 on the same address, with its development secret and store.
        portone_v2: Some(PortoneV2Settings {
            base_url: portone_base_url.to_owned(),
            api_secret: Secret::new(SANDBOX_V2_API_SECRET),
            store_id: Some(SANDBOX_STORE_ID.to_owned()),
            channel_key: Some(SANDBOX_V2_CHANNEL_KEY.to_owned()),
            http: test_http(),
        }),
        portone: PortoneSettings {
            enabled: true,
            tier: None,
            base_url: portone_base_url.to_owned(),
            imp_key: imp_key.to_owned(),
            imp_secret: Secret::new(imp_secret),
            token_margin: TOKEN_MARGIN,
            token_refresh_ahead: TOKEN_REFRESH_AHEAD,
            token_lock_ttl: Duration::from_secs(3),
            http: test_http(),
        },
        keys: KeySettings {
            ci_index_key: CiIndexKey::from_base64(&STANDARD.encode(TEST_INDEX_KEY)).expect("a 32-byte key"),
            sealing_keys: SealingKeys::parse(&test_encryption_keys()).expect("a valid key list"),
        },
        policy: Policy {
            min_age: 14,
            reject_underage: false,
            max_certification_age: Duration::from_secs(30 * 60),
            rejoin_cooldown: Duration::ZERO,
            clock_skew: Duration::from_secs(60),
            // Most tests drive Verify straight from the sandbox's fixtures, as a caller that
            // issues its own merchant_uids does; the session tests turn it on (the default).
            require_session: false,
            session_ttl: Duration::from_secs(15 * 60),
            delete_after: None,
            // The sandbox's V2 test-channel fixtures are refused, as in production.
            allow_test_channel: false,
        },
        maintenance: MaintenanceSettings {
            purge_interval: None,
            certification_retention: Duration::from_secs(90 * 24 * 3600),
        },
    }
}

/// Short time-outs and the production retry and circuit defaults.
fn test_http() -> HttpSettings {
    HttpSettings {
        request_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(1),
        max_attempts: 3,
        circuit: CircuitSettings::default(),
        max_connections: 128,
    }
}
