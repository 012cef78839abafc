//! Beginning a verification session, and finding the one a Verify redeems.

use chrono::{DateTime, Utc};

use super::{IdentityService, ProviderError, ServiceError, VerifyCommand};
use crate::{
    audit::Subject,
    domain::{CertificationRef, ExpectedPerson, MinAge, Provider, Purpose, Session, SessionId, SessionSpec},
    quota::{Bound, QuotaExceeded},
    store::{StoreError, StoredSession},
};

/// A session begun: its id (V1's merchant_uid, V2's identity verification id), its deadline,
/// and what the browser needs for the provider.
#[derive(Debug)]
pub(crate) struct Began {
    pub(crate) merchant_uid: SessionId,
    pub(crate) expires_at: DateTime<Utc>,
    pub(crate) provider: Provider,
    pub(crate) store_id: Option<String>,
    pub(crate) channel_key: Option<String>,
}

impl IdentityService {
    /// Issues a session for `caller`: only they can redeem it, once, before it expires.
    #[tracing::instrument(skip_all, fields(purpose = spec.purpose.as_str()))]
    pub(crate) async fn begin_verification(
        &self,
        spec: SessionSpec,
        caller: &str,
        subject: &Subject,
    ) -> Result<Began, ServiceError> {
        subject.purpose(spec.purpose.as_str());
        if let Some(account) = &spec.account {
            subject.account(account.as_str());
        }
        // Unnamed: V2 when it is configured (PortOne's recommendation for new sessions), else V1.
        let default = if self.providers.has(Provider::PortoneV2) {
            Provider::PortoneV2
        } else {
            Provider::PortoneV1
        };
        let provider = spec.provider.unwrap_or(default);
        if !self.providers.has(provider) {
            return Err(ProviderError::NotConfigured(provider).into());
        }
        self.quotas.begin_session(caller).await?;
        let open_bound = self.quotas.limits(caller).open;
        let created_at = crate::domain::stored_precision(Utc::now());
        let (open, soonest) = self.store.open_sessions(caller, created_at).await?;
        if open >= open_bound {
            // Room comes back when a session is redeemed or the first one expires.
            let retry_after = soonest
                .and_then(|expires_at| (expires_at - created_at).to_std().ok())
                .unwrap_or(self.policy.session_ttl);
            return Err(QuotaExceeded::refuse(caller, Bound::Open, retry_after).into());
        }
        if !spec.expected.is_empty() {
            // A session keeping an expected person is recorded: never kept unrecordable.
            self.recordable().await?;
        }
        let id = SessionId::generate();
        let expires_at = crate::domain::saturating_after(created_at, self.policy.session_ttl);
        let expected_sealed = (!spec.expected.is_empty()).then(|| {
            let plaintext =
                serde_json::to_string(&spec.expected).expect("a few strings and a date serialise");
            self.sealing
                .seal_row(Purpose::ExpectedPerson, id.as_str(), &plaintext)
        });
        let (store, stored) = (
            self.store.clone(),
            StoredSession {
                id: id.clone(),
                caller: caller.to_owned(),
                purpose: spec.purpose,
                provider,
                account: spec.account.clone(),
                min_age: spec.min_age,
                expected_sealed,
                created_at,
                expires_at,
                redemption: None,
            },
        );
        self.riding(
            subject,
            None,
            crate::audit::OUTCOME_OK,
            move |access| async move { store.begin_session(stored, access).await },
        )
        .await?;
        crate::telemetry::metrics::session_begun(spec.purpose);
        tracing::info!("verification session begun");
        let v2 = provider == Provider::PortoneV2;
        Ok(Began {
            merchant_uid: id,
            expires_at,
            provider,
            store_id: self.browser.store_id.clone().filter(|_| v2),
            channel_key: self.browser.channel_key.clone().filter(|_| v2),
        })
    }

    /// Whether this request may use the stored session at all: alive (or, to ask through it,
    /// redeemed by this very certification), not redeemed by another certification, and asking
    /// for the session's own account and minimum age.
    fn admits(
        &self,
        stored: &StoredSession,
        command: &VerifyCommand,
        to: SessionUse,
    ) -> Result<(), ServiceError> {
        let reference = &command.certification;
        let expired = Utc::now() >= stored.expires_at;
        if expired && !(to == SessionUse::Ask && redeemed_by(stored, reference)) {
            return Err(ServiceError::SessionExpired {
                expires_at: stored.expires_at,
            });
        }
        if stored.provider != reference.provider() {
            return Err(ServiceError::SessionMismatch { field: "provider" });
        }
        if stored.redemption.is_some() && !redeemed_by(stored, reference) {
            return Err(ServiceError::SessionUsed);
        }
        if command
            .account
            .as_ref()
            .is_some_and(|account| Some(account) != stored.account.as_ref())
        {
            return Err(ServiceError::SessionMismatch { field: "account_id" });
        }
        let effective_min_age = stored.min_age.map_or(self.policy.min_age, MinAge::get);
        if command.min_age.is_some_and(|age| age.get() != effective_min_age) {
            return Err(ServiceError::SessionMismatch { field: "min_age" });
        }
        Ok(())
    }

    /// The session a request names, admitted for `to`, and whether its certification already
    /// redeemed it: `None` only when the service runs without REQUIRE_SESSION and the
    /// merchant_uid is not one it issues.
    pub(super) async fn admitted(
        &self,
        command: &VerifyCommand,
        caller: &str,
        to: SessionUse,
        subject: &Subject,
    ) -> Result<Option<(Session, bool)>, ServiceError> {
        let Some(merchant_uid) = &command.merchant_uid else {
            return if self.policy.require_session {
                Err(ServiceError::SessionRequired)
            } else {
                Ok(None)
            };
        };
        let Some(id) = SessionId::recognise(merchant_uid.as_str()) else {
            return if self.policy.require_session {
                Err(ServiceError::SessionNotFound)
            } else {
                Ok(None)
            };
        };
        // Another caller's session does not exist for this one.
        let stored = self
            .store
            .session(&id)
            .await?
            .filter(|stored| stored.caller == caller)
            .ok_or(ServiceError::SessionNotFound)?;
        subject.purpose(stored.purpose.as_str());
        if let Some(account) = &stored.account {
            subject.account(account.as_str());
        }
        if let Err(refusal) = self.admits(&stored, command, to) {
            crate::telemetry::metrics::session_refused(Some(stored.purpose), refusal.reason());
            return Err(refusal);
        }
        let redeemed = redeemed_by(&stored, &command.certification);
        Ok(Some((self.opened(stored)?, redeemed)))
    }

    /// The stored session with its expected person unsealed.
    fn opened(&self, stored: StoredSession) -> Result<Session, ServiceError> {
        let expected = match &stored.expected_sealed {
            None => ExpectedPerson::default(),
            Some(sealed) => {
                let unreadable = |why: String| {
                    ServiceError::Store(StoreError::Failure(format!("session's expected person: {why}")))
                };
                let plaintext = self
                    .sealing
                    .open_row(Purpose::ExpectedPerson, stored.id.as_str(), sealed)
                    .map_err(|error| unreadable(error.to_string()))?;
                serde_json::from_str(&plaintext).map_err(|_| unreadable("not the stored shape".into()))?
            }
        };
        Ok(Session {
            id: stored.id,
            purpose: stored.purpose,
            account: stored.account,
            min_age: stored.min_age,
            expected,
            created_at: stored.created_at,
            expires_at: stored.expires_at,
        })
    }
}

/// What a request does with a session: redeem it (Verify), or only ask through it
/// (CheckDuplicate), which a session its certification redeemed still answers once expired: the
/// question "did my signup complete?" comes after a Verify whose answer was lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SessionUse {
    Redeem,
    Ask,
}

/// Whether this certification is the one that redeemed the session.
fn redeemed_by(stored: &StoredSession, reference: &CertificationRef) -> bool {
    stored.redemption.as_ref().is_some_and(|redemption| {
        redemption.provider == reference.provider() && redemption.certification_id == reference.id()
    })
}
