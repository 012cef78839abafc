//! CALLER_LIMITS: per-caller overrides of SESSIONS_PER_MINUTE, LOOKUPS_PER_MINUTE and
//! OPEN_SESSIONS_PER_CALLER, written like CALLER_PERMISSIONS: `name=sessions:N+lookups:N+open:N`,
//! entries comma-separated, any subset of the three keys.

use std::collections::HashMap;

use super::Bound;

/// One caller's bounds, whole: the defaults with its overrides applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Sessions it may begin per window (SESSIONS_PER_MINUTE).
    pub sessions: u64,
    /// PortOne look-ups its Verify and CheckDuplicate may cause per window (LOOKUPS_PER_MINUTE).
    pub lookups: u64,
    /// Its sessions unredeemed and unexpired (OPEN_SESSIONS_PER_CALLER).
    pub open: u64,
}

/// What an entry overrides; `None` keeps the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Overrides {
    sessions: Option<u64>,
    lookups: Option<u64>,
    open: Option<u64>,
}

/// The parsed CALLER_LIMITS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallerLimits {
    by_caller: HashMap<String, Overrides>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallerLimitsError {
    #[error("CALLER_LIMITS entry {0} is not `name=sessions:N+lookups:N+open:N` (any of the three)")]
    Malformed(usize),
    #[error("CALLER_LIMITS entry {0} names {1:?}, which is not a limit (known: sessions, lookups, open)")]
    UnknownKey(usize, String),
    #[error("CALLER_LIMITS entry {0} sets {1} twice")]
    DuplicateKey(usize, &'static str),
    #[error("CALLER_LIMITS entry {0}: {1} must be a whole number from 1 to {max}, not {2:?}", max = MAX_LIMIT)]
    BadNumber(usize, &'static str, String),
    #[error("CALLER_LIMITS names the caller {0:?} twice")]
    DuplicateCaller(String),
}

/// The largest bound a setting takes: past it a bound is no bound.
pub(crate) const MAX_LIMIT: u64 = 1_000_000_000;

impl CallerLimits {
    /// `signup=sessions:100+lookups:200,batch=open:10`; blank: no overrides.
    pub fn parse(spec: &str) -> Result<Self, CallerLimitsError> {
        let mut by_caller = HashMap::new();
        for (position, named) in crate::access::named_entries(spec) {
            let (name, items) = named.ok_or(CallerLimitsError::Malformed(position))?;
            let overrides = parse_overrides(position, items)?;
            if by_caller.insert(name.to_owned(), overrides).is_some() {
                return Err(CallerLimitsError::DuplicateCaller(name.to_owned()));
            }
        }
        Ok(Self { by_caller })
    }

    /// The callers named, for the start-up check against CALLER_TOKENS.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.by_caller.keys().map(String::as_str)
    }

    /// `caller`'s bounds: `defaults` with its entry's overrides.
    pub(crate) fn for_caller(&self, caller: &str, defaults: Limits) -> Limits {
        let Some(overrides) = self.by_caller.get(caller) else {
            return defaults;
        };
        Limits {
            sessions: overrides.sessions.unwrap_or(defaults.sessions),
            lookups: overrides.lookups.unwrap_or(defaults.lookups),
            open: overrides.open.unwrap_or(defaults.open),
        }
    }
}

fn parse_overrides(position: usize, items: &str) -> Result<Overrides, CallerLimitsError> {
    let mut overrides = Overrides::default();
    for item in items.split('+').map(str::trim) {
        let (key, value) = item
            .split_once(':')
            .map(|(key, value)| (key.trim(), value.trim()))
            .ok_or(CallerLimitsError::Malformed(position))?;
        let bound = [Bound::Sessions, Bound::Lookups, Bound::Open]
            .into_iter()
            .find(|bound| bound.as_str() == key)
            .ok_or_else(|| CallerLimitsError::UnknownKey(position, key.to_owned()))?;
        let number = value
            .parse::<u64>()
            .ok()
            .filter(|number| (1..=MAX_LIMIT).contains(number))
            .ok_or_else(|| CallerLimitsError::BadNumber(position, bound.as_str(), value.to_owned()))?;
        let slot = match bound {
            Bound::Sessions => &mut overrides.sessions,
            Bound::Lookups => &mut overrides.lookups,
            Bound::Open | Bound::InFlight => &mut overrides.open,
        };
        if slot.replace(number).is_some() {
            return Err(CallerLimitsError::DuplicateKey(position, bound.as_str()));
        }
    }
    Ok(overrides)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Limits = Limits {
        sessions: 600,
        lookups: 1200,
        open: 100_000,
    };

    #[test]
    fn an_entry_overrides_only_the_keys_it_names_for_only_its_caller() {
        let limits = CallerLimits::parse(" signup = sessions:5 + open:7 , batch=lookups:9").unwrap();
        assert_eq!(
            limits.for_caller("signup", DEFAULTS),
            Limits {
                sessions: 5,
                lookups: 1200,
                open: 7
            }
        );
        assert_eq!(limits.for_caller("batch", DEFAULTS).lookups, 9);
        assert_eq!(limits.for_caller("other", DEFAULTS), DEFAULTS);
        assert_eq!(CallerLimits::parse("").unwrap(), CallerLimits::default());
    }

    #[test]
    fn junk_is_refused_naming_the_entry() {
        use CallerLimitsError as E;
        for (spec, expected) in [
            ("signup", E::Malformed(1)),
            ("a=sessions:1,signup=", E::Malformed(2)),
            ("signup=sessions", E::Malformed(1)),
            ("signup=calls:5", E::UnknownKey(1, "calls".into())),
            ("signup=sessions:5+sessions:6", E::DuplicateKey(1, "sessions")),
            ("signup=open:0", E::BadNumber(1, "open", "0".into())),
            ("signup=lookups:-3", E::BadNumber(1, "lookups", "-3".into())),
            ("signup=lookups:ten", E::BadNumber(1, "lookups", "ten".into())),
            (
                "signup=open:1000000001",
                E::BadNumber(1, "open", "1000000001".into()),
            ),
            (
                "signup=open:1,signup=lookups:2",
                E::DuplicateCaller("signup".into()),
            ),
        ] {
            assert_eq!(CallerLimits::parse(spec), Err(expected), "{spec}");
        }
    }
}
