//! The PortOne part of the settings: V1, V2 or both, or the sandbox's development credentials.
//! Each API is configured or absent: a V2-only merchant has no V1 settings, so no V1 client.

use std::time::Duration;

use super::{ServeArgs, TOKEN_MARGIN, TOKEN_REFRESH_AHEAD, errors::Problems};
use crate::{
    config::ConfigError,
    portone::{
        CircuitSettings, HttpSettings, http::check_base_url, v1::PortoneSettings, v2::PortoneV2Settings,
    },
    secret::Secret,
};

/// The APIs configured: at least one of them.
pub(super) struct Portone {
    pub(super) v1: Option<PortoneSettings>,
    pub(super) v2: Option<PortoneV2Settings>,
}

/// What both APIs share, and what V2 hands the browser.
struct Common {
    http: HttpSettings,
    tier: Option<String>,
    store_id: Option<String>,
    channel_key: Option<String>,
}

/// The configured APIs; None after a problem was recorded.
pub(super) fn portone_settings(
    args: &ServeArgs,
    sandbox_base_url: Option<&str>,
    problems: &mut Problems,
) -> Option<Portone> {
    let common = common(args, problems);
    #[cfg(feature = "sandbox")]
    if let Some(url) = sandbox_base_url {
        return sandbox_apis(args, &common, checked_url(url, problems)?);
    }
    #[cfg(not(feature = "sandbox"))]
    debug_assert!(
        sandbox_base_url.is_none(),
        "a build without the sandbox runs none"
    );
    let v1 = v1_from(args, &common, problems)?;
    let v2 = match args
        .portone_v2_api_secret
        .clone()
        .filter(|secret| !secret.expose().is_empty())
    {
        Some(secret) => {
            let url = checked_url(&args.portone_v2_base_url, problems)?;
            Some(v2_settings(
                &common,
                url,
                secret,
                common.store_id.clone(),
                common.channel_key.clone(),
            ))
        }
        None => None,
    };
    match (v1, v2) {
        (None, None) => problems.fail(ConfigError::MissingPortoneCredentials),
        (v1, v2) => Some(Portone { v1, v2 }),
    }
}

fn common(args: &ServeArgs, problems: &mut Problems) -> Common {
    let tier = args
        .portone_tier
        .as_deref()
        .filter(|tier| !tier.is_empty())
        .and_then(|tier| {
            let fine = tier.len() == 3 && tier.bytes().all(|byte| byte.is_ascii_alphanumeric());
            problems.take(if fine {
                Ok(tier.to_owned())
            } else {
                Err(ConfigError::Tier)
            })
        });
    Common {
        http: HttpSettings {
            request_timeout: args.portone_timeout,
            connect_timeout: Duration::from_secs(3).min(args.portone_timeout),
            max_attempts: args.portone_max_attempts,
            max_connections: args.portone_max_connections,
            circuit: CircuitSettings {
                failure_threshold: args.portone_circuit_failures,
                open_for: args.portone_circuit_open_for,
            },
        },
        tier,
        store_id: identifier(&args.portone_store_id, "PORTONE_STORE_ID", problems),
        channel_key: identifier(&args.portone_v2_channel_key, "PORTONE_V2_CHANNEL_KEY", problems),
    }
}

/// The sandbox answers both APIs on one address with fixed development credentials.
#[cfg(feature = "sandbox")]
fn sandbox_apis(args: &ServeArgs, common: &Common, url: String) -> Option<Portone> {
    let v1 = v1_settings(
        args,
        common,
        url.clone(),
        crate::sandbox::SANDBOX_IMP_KEY.to_owned(),
        Secret::new(crate::sandbox::SANDBOX_IMP_SECRET),
    );
    let v2 = v2_settings(
        common,
        url,
        args.portone_v2_api_secret
            .clone()
            .unwrap_or_else(|| Secret::new(crate::sandbox::SANDBOX_V2_API_SECRET)),
        common
            .store_id
            .clone()
            .or_else(|| Some(crate::sandbox::SANDBOX_STORE_ID.to_owned())),
        common
            .channel_key
            .clone()
            .or_else(|| Some(crate::sandbox::SANDBOX_V2_CHANNEL_KEY.to_owned())),
    );
    Some(Portone {
        v1: Some(v1),
        v2: Some(v2),
    })
}

/// V1 when its key and secret are both given; neither is no V1; one alone is a mistake. The
/// outer None means a problem was recorded.
fn v1_from(args: &ServeArgs, common: &Common, problems: &mut Problems) -> Option<Option<PortoneSettings>> {
    let given = |value: Option<&str>| value.filter(|value| !value.is_empty()).is_some();
    match (
        given(args.portone_imp_key.as_deref()),
        given(args.portone_imp_secret.as_ref().map(Secret::expose)),
    ) {
        (true, true) => {
            let url = checked_url(&args.portone_base_url, problems)?;
            let key = args.portone_imp_key.clone().unwrap_or_default();
            let secret = args.portone_imp_secret.clone().unwrap_or_else(|| Secret::new(""));
            Some(Some(v1_settings(args, common, url, key, secret)))
        }
        (false, false) => Some(None),
        _ => problems.fail(ConfigError::HalfPortoneCredentials),
    }
}

fn v1_settings(
    args: &ServeArgs,
    common: &Common,
    base_url: String,
    imp_key: String,
    imp_secret: Secret,
) -> PortoneSettings {
    PortoneSettings {
        base_url,
        imp_key,
        imp_secret,
        token_margin: TOKEN_MARGIN,
        token_refresh_ahead: TOKEN_REFRESH_AHEAD,
        token_lock_ttl: args.token_lock_ttl,
        tier: common.tier.clone(),
        http: common.http.clone(),
    }
}

fn v2_settings(
    common: &Common,
    base_url: String,
    api_secret: Secret,
    store_id: Option<String>,
    channel_key: Option<String>,
) -> PortoneV2Settings {
    PortoneV2Settings {
        base_url,
        api_secret,
        store_id,
        channel_key,
        http: common.http.clone(),
    }
}

fn checked_url(url: &str, problems: &mut Problems) -> Option<String> {
    let url = url.trim_end_matches('/').to_owned();
    problems
        .take(check_base_url(&url).map_err(ConfigError::BaseUrl))
        .map(|()| url)
}

/// A store id or channel key: printable ASCII, at most 128 characters; empty is unset.
fn identifier(raw: &Option<String>, name: &'static str, problems: &mut Problems) -> Option<String> {
    raw.as_deref().filter(|raw| !raw.is_empty()).and_then(|raw| {
        let fine = raw.len() <= 128 && raw.bytes().all(|byte| byte.is_ascii_graphic());
        problems.take(if fine {
            Ok(raw.to_owned())
        } else {
            Err(ConfigError::PortoneIdentifier(name))
        })
    })
}
