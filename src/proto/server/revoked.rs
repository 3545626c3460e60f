//! Revoked credentials: users and usernames whose Allocate and Refresh requests are refused
//! until a time, although their credentials verify.
//!
//! A REST credential cannot be taken back (its password is derived from the username and the
//! secret), so an operator whose credential leaked revokes it here: either the **user** (the
//! part after `expiry:` of every REST username minted for it, or a static user's name), or one
//! **username** (one leaked credential, whatever user it names). The list is bounded
//! ([`MAX_REVOCATIONS`]), entries past their time are pruned on every change, and it is
//! replaced as a whole ([`Revoked::replace`]): the cores read it lock-free on each Allocate and
//! Refresh only, never per relayed packet. Persistence and cluster propagation live in
//! `crate::admin`; this module is pure (times are passed in, UNIX seconds).

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

/// Most revocations held at once; adding one more is refused until some expire or are removed.
pub const MAX_REVOCATIONS: usize = 10_000;
/// Longest user or username accepted in a revocation (a STUN USERNAME is at most 513 bytes).
pub const MAX_SUBJECT_BYTES: usize = 513;

/// What a revocation applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// Every credential of a user: REST usernames `expiry:user`, or the static user `user`.
    User(String),
    /// One username exactly (one credential).
    Username(String),
}

impl Subject {
    /// The kind, as the API names it: `user` or `username`.
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::User(_) => "user",
            Subject::Username(_) => "username",
        }
    }

    /// The user or username.
    pub fn name(&self) -> &str {
        match self {
            Subject::User(n) | Subject::Username(n) => n,
        }
    }

    /// True when an allocation made with `username`, whose quota user (the REST user part or
    /// the static user's name) is `user`, falls under this subject.
    pub fn covers(&self, username: &str, user: &str) -> bool {
        match self {
            Subject::User(n) => n == user,
            Subject::Username(n) => n == username,
        }
    }
}

/// Why a revocation could not be added.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RevokeError {
    /// The user or username is empty or too long.
    #[error("the {0} must be 1 to {MAX_SUBJECT_BYTES} bytes")]
    BadSubject(&'static str),
    /// The time is not in the future.
    #[error("`until` ({until}) is not in the future (now {now})")]
    InThePast {
        /// The requested end, UNIX seconds.
        until: u64,
        /// The current time, UNIX seconds.
        now: u64,
    },
    /// The list holds [`MAX_REVOCATIONS`] live entries.
    #[error("the revocation list is full ({MAX_REVOCATIONS} entries): remove some first")]
    Full,
}

/// An immutable revocation list: subject → until (UNIX seconds; `None` for no end).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevocationList {
    entries: HashMap<Subject, Option<u64>>,
}

impl RevocationList {
    /// True when a request with `username` (quota user `user`) is revoked at `now`.
    pub fn is_revoked(&self, username: &str, user: &str, now: u64) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        let live = |s: Subject| {
            self.entries
                .get(&s)
                .is_some_and(|until| until.is_none_or(|t| now < t))
        };
        live(Subject::Username(username.to_owned())) || live(Subject::User(user.to_owned()))
    }

    /// A copy with `subject` revoked until `until` (replacing an earlier entry for it), and
    /// the entries past their time at `now` dropped.
    pub fn with(
        &self,
        subject: Subject,
        until: Option<u64>,
        now: u64,
    ) -> Result<RevocationList, RevokeError> {
        if subject.name().is_empty() || subject.name().len() > MAX_SUBJECT_BYTES {
            return Err(RevokeError::BadSubject(subject.kind()));
        }
        if let Some(t) = until {
            if t <= now {
                return Err(RevokeError::InThePast { until: t, now });
            }
        }
        let mut next = self.pruned(now);
        if !next.entries.contains_key(&subject) && next.entries.len() >= MAX_REVOCATIONS {
            return Err(RevokeError::Full);
        }
        next.entries.insert(subject, until);
        Ok(next)
    }

    /// A copy without `subject` (and without expired entries); `None` when it was not there.
    pub fn without(&self, subject: &Subject, now: u64) -> Option<RevocationList> {
        let mut next = self.pruned(now);
        next.entries.remove(subject).map(|_| next)
    }

    /// A copy without the entries past their time at `now`.
    pub fn pruned(&self, now: u64) -> RevocationList {
        RevocationList {
            entries: self
                .entries
                .iter()
                .filter(|(_, until)| until.is_none_or(|t| now < t))
                .map(|(s, u)| (s.clone(), *u))
                .collect(),
        }
    }

    /// A list from entries read back (a file, Redis): invalid and expired ones are skipped, and
    /// at most [`MAX_REVOCATIONS`] are kept (those that end last first).
    pub fn from_entries(
        entries: impl IntoIterator<Item = (Subject, Option<u64>)>,
        now: u64,
    ) -> RevocationList {
        let mut all: Vec<(Subject, Option<u64>)> = entries
            .into_iter()
            .filter(|(s, until)| {
                !s.name().is_empty()
                    && s.name().len() <= MAX_SUBJECT_BYTES
                    && until.is_none_or(|t| now < t)
            })
            .collect();
        // No end sorts last (`None` → u64::MAX): the longest revocations survive truncation.
        all.sort_by_key(|(s, until)| (std::cmp::Reverse(until.unwrap_or(u64::MAX)), s.clone()));
        all.truncate(MAX_REVOCATIONS);
        RevocationList {
            entries: all.into_iter().collect(),
        }
    }

    /// The entries, sorted by subject.
    pub fn entries(&self) -> Vec<(Subject, Option<u64>)> {
        let mut v: Vec<_> = self.entries.iter().map(|(s, u)| (s.clone(), *u)).collect();
        v.sort();
        v
    }

    /// The until of `subject`, if it is in the list (`Some(None)`: no end).
    pub fn get(&self, subject: &Subject) -> Option<Option<u64>> {
        self.entries.get(subject).copied()
    }

    /// Number of entries (expired ones included until the next change).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The revocation list every core consults, swapped as a whole when it changes.
#[derive(Debug, Default)]
pub struct Revoked {
    list: ArcSwap<RevocationList>,
}

impl Revoked {
    /// The list in force.
    pub fn load(&self) -> Arc<RevocationList> {
        self.list.load_full()
    }

    /// True when `username` (quota user `user`) is revoked at `now` (one atomic load when the
    /// list is empty).
    pub fn is_revoked(&self, username: &str, user: &str, now: u64) -> bool {
        self.list.load().is_revoked(username, user, now)
    }

    /// Makes `list` the list in force.
    pub fn replace(&self, list: RevocationList) {
        self.list.store(Arc::new(list));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: &str) -> Subject {
        Subject::User(n.into())
    }

    #[test]
    fn a_user_covers_every_rest_username_and_a_username_only_itself() {
        let list = RevocationList::default()
            .with(user("alice"), None, 100)
            .unwrap()
            .with(Subject::Username("900:bob".into()), Some(200), 100)
            .unwrap();
        assert!(list.is_revoked("900:alice", "alice", 150));
        assert!(list.is_revoked("1900:alice", "alice", 150));
        assert!(list.is_revoked("900:bob", "bob", 150));
        assert!(!list.is_revoked("901:bob", "bob", 150));
        assert!(!list.is_revoked("900:carol", "carol", 150));
        // Until is exclusive: at 200 bob's username is usable again.
        assert!(!list.is_revoked("900:bob", "bob", 200));
        assert!(list.is_revoked("900:alice", "alice", u64::MAX - 1));
    }

    #[test]
    fn bad_revocations_are_refused() {
        let list = RevocationList::default();
        assert_eq!(
            list.with(user(""), None, 10),
            Err(RevokeError::BadSubject("user"))
        );
        assert_eq!(
            list.with(user(&"x".repeat(MAX_SUBJECT_BYTES + 1)), None, 10),
            Err(RevokeError::BadSubject("user"))
        );
        assert_eq!(
            list.with(user("a"), Some(10), 10),
            Err(RevokeError::InThePast { until: 10, now: 10 })
        );
    }

    #[test]
    fn the_list_is_bounded_and_expired_entries_make_room() {
        // Filled in one go (adding one at a time copies the list each time).
        let list = RevocationList::from_entries(
            (0..MAX_REVOCATIONS + 5).map(|i| (user(&format!("u{i}")), Some(50))),
            10,
        );
        assert_eq!(list.len(), MAX_REVOCATIONS);
        assert_eq!(
            list.with(user("one-more"), None, 10),
            Err(RevokeError::Full)
        );
        // Replacing an entry is not growth.
        assert!(list.with(user("u1"), Some(60), 10).is_ok());
        // Once they expired, they are pruned on the next change.
        let list = list.with(user("one-more"), None, 50).unwrap();
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn removal_and_reading_back() {
        let list = RevocationList::default()
            .with(user("a"), Some(100), 10)
            .unwrap();
        assert!(list.without(&user("b"), 10).is_none());
        assert!(list.without(&user("a"), 10).unwrap().is_empty());
        let back = RevocationList::from_entries(
            [
                (user("a"), Some(100)),
                (user(""), None),
                (user("old"), Some(5)),
            ],
            10,
        );
        assert_eq!(back.entries(), vec![(user("a"), Some(100))]);
    }
}
