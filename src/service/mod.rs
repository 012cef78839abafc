//! The use cases: verify a certification (and bind its person), and check for a duplicate.
//! Transport-free: the gRPC layer parses requests into commands and maps results back.
//! Provider-free too: certifications are looked up through [`Providers`].

mod decide;
mod deletions;
mod error;
mod provider;
mod sessions;
mod verify;

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tracing::Instrument;

use crate::{
    audit::{AccessRecord, AuditKey, OUTCOME_OK, Subject, Work},
    domain::{
        AccountId, AgeCheck, CertificationFacts, CertificationRef, Ci, CiIndexKey, Holder, Identity,
        MerchantUid, MinAge, PersonIndex, ProviderCertification, Purpose, SealingKeys, Session,
        VerificationPurpose,
    },
    quota::Quotas,
    store::{RecordWritten, Recordable, Store, StoreError},
};

pub(crate) use deletions::Deleter;
pub(crate) use error::{CALLER_QUOTA, DEADLINE_EXCEEDED, ErrorKind, ServiceError, quota_metadata};
pub use provider::{BoxFuture, CertificationEraser, Erased, IdentityProvider, ProviderError, Providers};
pub(crate) use sessions::Began;
use sessions::SessionUse;

/// The checks every Verify applies.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Minimum full age, unless a request overrides it.
    pub min_age: u32,
    /// Fail the call with UNDERAGE instead of only reporting `satisfied: false`.
    pub reject_underage: bool,
    /// How old `certified_at` may be: a certification is proof of a moment, not a standing fact.
    pub max_certification_age: Duration,
    /// How long after Unlink the person may not be bound to a new account (0: at once).
    pub rejoin_cooldown: Duration,
    /// How far a certification's time may be ahead of our clock (PortOne's clock and ours).
    pub(crate) clock_skew: Duration,
    /// A Verify must redeem a session BeginVerification issued (REQUIRE_SESSION).
    pub require_session: bool,
    /// How long a session may wait for its Verify (VERIFICATION_SESSION_TTL).
    pub session_ttl: Duration,
    /// Accept PortOne V2 verifications made on a TEST channel (PORTONE_ALLOW_TEST_CHANNEL).
    pub allow_test_channel: bool,
    /// PORTONE_DELETE_AFTER: how long after its session was redeemed a V1 certification is
    /// deleted at PortOne; None keeps it there.
    pub delete_after: Option<Duration>,
}

/// A parsed Verify request.
#[derive(Debug)]
pub(crate) struct VerifyCommand {
    pub(crate) certification: CertificationRef,
    pub(crate) account: Option<AccountId>,
    pub(crate) merchant_uid: Option<MerchantUid>,
    pub(crate) min_age: Option<MinAge>,
}

/// Which person CheckDuplicate asks about.
#[derive(Debug)]
pub(crate) enum DuplicateKey {
    /// A certification through the session it was made for: a Verify's certification and
    /// session, without account or minimum age.
    Certification(VerifyCommand),
    Ci(Ci),
}

/// A Verify that passed every check.
#[derive(Debug)]
pub(crate) struct Verified {
    pub(crate) identity: Identity,
    pub(crate) certification: CertificationFacts,
    pub(crate) certified_at: DateTime<Utc>,
    pub(crate) age: AgeCheck,
    /// Who held the person before this call (before the session's first redemption).
    pub(crate) holder_before: Option<Holder>,
    /// Whether the requested account holds the person after this call.
    pub(crate) bound: bool,
    /// The purpose of the session this Verify redeemed.
    pub(crate) purpose: Option<VerificationPurpose>,
    /// PURPOSE_REVERIFY: when the account's person was confirmed.
    pub(crate) reverified_at: Option<DateTime<Utc>>,
}

/// What BeginVerification tells a caller's browser for a V2 session: the store and channel its
/// SDK takes.
#[derive(Clone, Debug, Default)]
pub(crate) struct BrowserSetup {
    pub(crate) store_id: Option<String>,
    pub(crate) channel_key: Option<String>,
}

pub(crate) struct IdentityService {
    browser: BrowserSetup,
    providers: Providers,
    store: Store,
    index_key: CiIndexKey,
    sealing: SealingKeys,
    policy: Policy,
    /// Each caller's bounds: sessions begun, look-ups caused, sessions open.
    quotas: Quotas,
    /// AUDIT_KEY, for the person pseudonyms of access records.
    audit_key: AuditKey,
}

/// Who a look-up is for, so it is metered: the caller's LOOKUPS_PER_MINUTE, and the session's
/// look-ups while it is unredeemed.
pub(super) struct Metered<'a> {
    pub(super) caller: &'a str,
    /// The session the look-up goes through, when it is not redeemed yet.
    pub(super) unredeemed: Option<&'a Session>,
    /// Whose data the call touches: the person found.
    pub(super) subject: &'a Subject,
}

impl IdentityService {
    pub(crate) fn new(
        providers: Providers,
        store: Store,
        index_key: CiIndexKey,
        sealing: SealingKeys,
        policy: Policy,
        quotas: Quotas,
        audit_key: AuditKey,
    ) -> Self {
        Self {
            browser: BrowserSetup::default(),
            providers,
            store,
            index_key,
            sealing,
            policy,
            quotas,
            audit_key,
        }
    }

    /// ACCESS_RECORD_UNAVAILABLE unless an access record can be written now: asked before a
    /// call reaches PortOne or writes, so a call whose record would fail does nothing at all.
    pub(super) async fn recordable(&self) -> Result<(), ServiceError> {
        self.store
            .access_writable()
            .await
            .map_err(ServiceError::AccessRecordUnavailable)
    }

    /// Runs a store call that commits the call's access record (`outcome`, and `work` where
    /// not the method's usual) with its own writes, where its result says it did so
    /// ([`RecordWritten`]), after which the call answers that outcome. Spawned: a call dropped meanwhile cannot cut the
    /// statement short and leave its record's fate unknown (the transport then records the drop
    /// only if the statement did not write the record). A statement that failed while records
    /// cannot be written failed for its record: ACCESS_RECORD_UNAVAILABLE.
    pub(super) async fn riding<T, F>(
        &self,
        subject: &Subject,
        work: Option<Work>,
        outcome: &str,
        write: impl FnOnce(Option<AccessRecord>) -> F,
    ) -> Result<T, ServiceError>
    where
        T: RecordWritten + Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (record, rider) = subject.ride(work, outcome).unzip();
        let riding = rider.is_some();
        let written = write(record);
        let written = tokio::spawn(
            async move {
                let written = written.await;
                if let Some(rider) = rider {
                    rider.settle(written.as_ref().is_ok_and(RecordWritten::record_written));
                }
                written
            }
            .in_current_span(),
        )
        .await
        .unwrap_or_else(|_| Err(StoreError::Failure("a store call's task ended early".into())));
        match written {
            Err(failed) if riding => {
                self.recordable().await?;
                Err(failed.into())
            }
            written => Ok(written?),
        }
    }

    /// Writes a call's access record: committed when Ok; ACCESS_RECORD_UNAVAILABLE otherwise,
    /// and the call must then answer that instead of its result.
    pub(crate) async fn record_access(&self, record: AccessRecord) -> Result<(), ServiceError> {
        self.store
            .record_access(record)
            .await
            .map_err(ServiceError::AccessRecordUnavailable)
    }

    /// The providers' browser-side facts, for BeginVerification.
    pub(crate) fn with_browser(mut self, browser: BrowserSetup) -> Self {
        self.browser = browser;
        self
    }

    /// The account no longer holds its person. Idempotent: `None` when it held nobody.
    #[tracing::instrument(skip_all)]
    pub(crate) async fn unlink(
        &self,
        account: &AccountId,
        subject: &Subject,
    ) -> Result<Option<DateTime<Utc>>, ServiceError> {
        subject.account(account.as_str());
        self.recordable().await?;
        let (store, account) = (self.store.clone(), account.clone());
        let unlinked = self
            .riding(subject, None, OUTCOME_OK, move |access| async move {
                store.unlink(&account, access).await
            })
            .await?;
        tracing::info!(existed = unlinked.is_some(), "account unlinked");
        Ok(unlinked)
    }

    /// Who holds the person, if anyone. By certification, only through the caller's own
    /// session whose purpose answers the holder, checked as a Verify checks it, and nothing is
    /// recorded or redeemed: a question leaves no trace. Our own record answers only for the
    /// certification that redeemed the session (and then after it expired too); otherwise the
    /// provider does.
    #[tracing::instrument(skip_all, fields(by = key_kind(&key)))]
    pub(crate) async fn check_duplicate(
        &self,
        key: DuplicateKey,
        caller: &str,
        deadline: Instant,
        subject: &Subject,
    ) -> Result<Option<Holder>, ServiceError> {
        let command = match key {
            DuplicateKey::Ci(ci) => {
                subject.person(&self.audit_key, &ci);
                return self.holder_answered(&self.index_key.ci_index(&ci), subject).await;
            }
            DuplicateKey::Certification(command) => command,
        };
        let admitted = self.admitted(&command, caller, SessionUse::Ask, subject).await?;
        let (session, redeemed) = match admitted {
            Some((session, _)) if !session.purpose.disclosure().holder => {
                return Err(ServiceError::PurposeAnswersNoHolder {
                    purpose: session.purpose,
                });
            }
            Some((session, true)) => {
                if let Some(holder) = self.store.holder_by_certification(&command.certification).await? {
                    return Ok(holder);
                }
                (Some(session), true)
            }
            Some((session, false)) => (Some(session), false),
            None => (None, false),
        };
        let metered = Metered {
            caller,
            unredeemed: session.as_ref().filter(|_| !redeemed),
            subject,
        };
        let found = self.lookup(&command.certification, metered, deadline).await?;
        let now = crate::domain::stored_precision(Utc::now());
        let (identity, _) = decide::proven(&found, session.as_ref(), &command, &self.policy, now)?;
        if let Some(fields) = session
            .as_ref()
            .map(|session| session.expected.mismatches(&identity))
            .filter(|fields| !fields.is_empty())
        {
            return Err(ServiceError::IdentityMismatch { fields });
        }
        self.holder_answered(&self.index_key.ci_index(&identity.ci), subject)
            .await
    }

    /// CheckDuplicate's answer: who holds the person, its access record committed with it.
    async fn holder_answered(
        &self,
        ci_index: &PersonIndex,
        subject: &Subject,
    ) -> Result<Option<Holder>, ServiceError> {
        let (store, ci_index) = (self.store.clone(), ci_index.clone());
        let holder = self.riding(subject, None, OUTCOME_OK, move |record| async move {
            store.holder_by_ci(&ci_index, record).await
        });
        Box::pin(holder).await
    }
}

impl IdentityService {
    /// The certification at its provider. A V1 certification PortOne no longer has, and that we
    /// deleted there after use, is CERTIFICATION_DELETED: we know it existed.
    ///
    /// The one way Verify and CheckDuplicate reach a provider, so the one place look-ups are
    /// metered, before any provider call: past the caller's LOOKUPS_PER_MINUTE it is
    /// CALLER_QUOTA, and an unredeemed session that caused `SESSION_LOOKUPS` already is spent.
    /// A refused flood never reaches PortOne, so it cannot open the circuit for other callers.
    async fn lookup(
        &self,
        reference: &CertificationRef,
        metered: Metered<'_>,
        deadline: Instant,
    ) -> Result<ProviderCertification, ServiceError> {
        // Nothing reaches PortOne that could not be recorded.
        Box::pin(self.recordable()).await?;
        // The caller's bound first: a caller refused for its own flood and retrying later does
        // not spend its session's look-ups meanwhile.
        self.quotas.lookup(metered.caller).await?;
        if let Some(session) = metered.unredeemed
            && !self
                .quotas
                .session_lookup(session.id.as_str(), self.policy.session_ttl)
                .await
        {
            return Err(ServiceError::SessionSpent);
        }
        let found = self.providers.lookup(reference, deadline).await;
        if let Some(identity) = found.as_ref().ok().and_then(|found| found.identity.as_ref()) {
            metered.subject.person(&self.audit_key, &identity.ci);
        }
        match found {
            Err(ProviderError::NotFound)
                if reference.provider() == crate::domain::Provider::PortoneV1
                    // Boxed like Verify's other database calls: see verify.rs.
                    && Box::pin(self.store.deleted_at_provider(reference.id())).await? =>
            {
                Err(ServiceError::CertificationDeleted)
            }
            found => Ok(found?),
        }
    }
}

/// What a Verify records, its CI and DI sealed here: the store never sees them in the clear.
impl Recordable {
    fn new(
        service: &IdentityService,
        found: &ProviderCertification,
        identity: &Identity,
        ci_index: PersonIndex,
        certified_at: DateTime<Utc>,
    ) -> Self {
        let di_index = identity.di.as_ref().map(|di| service.index_key.di_index(di));
        let ci_sealed = service.sealing.seal(Purpose::Ci, &ci_index, identity.ci.expose());
        let di_sealed = identity
            .di
            .as_ref()
            .map(|di| service.sealing.seal(Purpose::Di, &ci_index, di.expose()));
        Self {
            provider: found.facts.provider,
            id: found.facts.id.clone(),
            ci_index,
            di_index,
            ci_sealed,
            di_sealed,
            certified_at,
        }
    }
}

fn key_kind(key: &DuplicateKey) -> &'static str {
    match key {
        DuplicateKey::Certification(_) => "certification",
        DuplicateKey::Ci(_) => "ci",
    }
}
