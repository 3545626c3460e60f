//! Allocation quotas shared by every worker: per user and in total.
//!
//! Touched only when an allocation is created or ends, never per packet, so a mutex is fine.
//! The per-user table only holds users with at least one allocation, so it is bounded by the
//! total quota.

use std::collections::HashMap;
use std::sync::Mutex;

/// Which quota refused an allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// The user has `allocations_per_user` already (486).
    #[error("allocation quota reached for this user")]
    User,
    /// The server has `allocations_total` already (508).
    #[error("server allocation capacity reached")]
    Total,
}

/// Shared allocation counters.
#[derive(Debug)]
pub struct Quota {
    per_user: u32,
    total: u32,
    used: Mutex<(u32, HashMap<String, u32>)>,
}

impl Quota {
    /// Quotas of `per_user` (0 = unlimited) and `total` allocations.
    pub fn new(per_user: u32, total: u32) -> Self {
        Quota { per_user, total, used: Mutex::new((0, HashMap::new())) }
    }

    /// Takes one allocation for `user`.
    pub fn acquire(&self, user: &str) -> Result<(), QuotaError> {
        let mut guard = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let (total, users) = &mut *guard;
        if *total >= self.total {
            return Err(QuotaError::Total);
        }
        let n = users.get(user).copied().unwrap_or(0);
        if self.per_user != 0 && n >= self.per_user {
            return Err(QuotaError::User);
        }
        *total += 1;
        users.insert(user.to_owned(), n + 1);
        Ok(())
    }

    /// Gives back one allocation of `user`.
    pub fn release(&self, user: &str) {
        let mut guard = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let (total, users) = &mut *guard;
        if let Some(n) = users.get_mut(user) {
            *n -= 1;
            *total = total.saturating_sub(1);
            if *n == 0 {
                users.remove(user);
            }
        }
    }

    /// Allocations in use across all workers.
    pub fn in_use(&self) -> u32 {
        self.used.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}
