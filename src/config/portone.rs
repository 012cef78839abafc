//! The PortOne part of the settings: V1, V2 or both, or the sandbox's development credentials.

use std::time::Duration;

use super::{ServeArgs, TOKEN_MARGIN, TOKEN_REFRESH_AHEAD, errors::Problems};
use crate::{
    config::ConfigError,
    portone::{
        CircuitSettings, HttpSettings, http::check_base_url, v1::PortoneSettings, v2::PortoneV2Settings,
    },
    sandbox,
    secret::Secret,
};

/// V1's settings (disabled for a V2-only merchant) and V2's when configured; None after a
/// problem was recorded.
pub(super) fn portone_settings(
    args: &ServeArgs,
    sandbox_base_url: Option<&str>,
    problems: &mut Problems,
) -> Option<(PortoneSettings, Option<PortoneV2Settings>)> {
    let http = HttpSettings {
        request_timeout: args.portone_timeout,
        connect_timeout: Duration::from_secs(3).min(args.portone_timeout),
        max_attempts: args.portone_max_attempts,
        max_connections: args.portone_max_connections,
        circuit: CircuitSettings {
            failure_threshold: args.portone_circuit_failures,
            open_for: args.portone_circuit_open_for,
        },
    };
    let checked_url = |url: &str, problems: &mut Problems| {
        let url = url.trim_end_matches('/').to_owned();
        problems
            .take(check_base_url(&url).map_err(ConfigError::BaseUrl))
            .map(|()| url)
    };
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
    let identifier = |raw: &Option<String>, name: &'static str, problems: &mut Problems| {
        raw.as_deref().filter(|raw| !raw.is_empty()).and_then(|raw| {
            let fine = raw.len() <= 128 && raw.bytes().all(|byte| byte.is_ascii_graphic());
            problems.take(if fine {
                Ok(raw.to_owned())
            } else {
                Err(ConfigError::PortoneIdentifier(name))
            })
        })
    };
    let store_id = identifier(&args.portone_store_id, "PORTONE_STORE_ID", problems);
    let channel_key = identifier(&args.portone_v2_channel_key, "PORTONE_V2_CHANNEL_KEY", problems);

    let v1 = |base_url: String, imp_key: String, imp_secret: Secret, enabled: bool| PortoneSettings {
        enabled,
        base_url,
        imp_key,
        imp_secret,
        token_margin: TOKEN_MARGIN,
        token_refresh_ahead: TOKEN_REFRESH_AHEAD,
        token_lock_ttl: args.token_lock_ttl,
        tier: tier.clone(),
        http: http.clone(),
    };
    let v2 = |base_url: String, api_secret: Secret, store_id: Option<String>, channel_key: Option<String>| {
        PortoneV2Settings {
            base_url,
            api_secret,
            store_id,
            channel_key,
            http: http.clone(),
        }
    };

    if let Some(url) = sandbox_base_url {
        // The sandbox answers both APIs on one address with fixed development credentials.
        let url = checked_url(url, problems)?;
        return Some((
            v1(
                url.clone(),
                sandbox::SANDBOX_IMP_KEY.to_owned(),
                Secret::new(sandbox::SANDBOX_IMP_SECRET),
                true,
            ),
            Some(v2(
                url,
                args.portone_v2_api_secret
                    .clone()
                    .unwrap_or_else(|| Secret::new(sandbox::SANDBOX_V2_API_SECRET)),
                store_id.or_else(|| Some(sandbox::SANDBOX_STORE_ID.to_owned())),
                channel_key.or_else(|| Some(sandbox::SANDBOX_V2_CHANNEL_KEY.to_owned())),
            )),
        ));
    }

    let given = |value: Option<&str>| value.filter(|value| !value.is_empty()).is_some();
    let v1_settings = match (
        given(args.portone_imp_key.as_deref()),
        given(args.portone_imp_secret.as_ref().map(Secret::expose)),
    ) {
        (true, true) => {
            let url = checked_url(&args.portone_base_url, problems)?;
            let key = args.portone_imp_key.clone().unwrap_or_default();
            let secret = args.portone_imp_secret.clone().unwrap_or_else(|| Secret::new(""));
            Some(v1(url, key, secret, true))
        }
        (false, false) => None,
        _ => return problems.fail(ConfigError::HalfPortoneCredentials),
    };
    let v2_settings = match args
        .portone_v2_api_secret
        .clone()
        .filter(|secret| !secret.expose().is_empty())
    {
        Some(secret) => {
            let url = checked_url(&args.portone_v2_base_url, problems)?;
            Some(v2(url, secret, store_id, channel_key))
        }
        None => None,
    };
    match (v1_settings, v2_settings) {
        (None, None) => problems.fail(ConfigError::MissingPortoneCredentials),
        // Silently deleting nothing would let an operator believe PortOne keeps no copies.
        (None, Some(_)) if args.portone_delete_after.is_some() => problems.fail(ConfigError::DeleteWithoutV1),
        (Some(v1), v2) => Some((v1, v2)),
        // V2 only: V1 stays off; its settings are never used.
        (None, Some(v2)) => Some((v1(String::new(), String::new(), Secret::new(""), false), Some(v2))),
    }
}
