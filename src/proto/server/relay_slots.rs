//! Allocation slots by relay socket, looked up once per datagram from a peer.
//!
//! The UDP workers' relay ids are the keys of their socket slab (small, dense, reused), so the
//! slot is found by indexing a vector with the id: no hashing on the packet path. Ids beyond
//! [`DENSE_MAX`] (an I/O layer that numbers its relays otherwise) go to a hash map, so memory
//! stays proportional to the relays that exist.

use std::collections::HashMap;

use super::{FastHash, RelayId};

/// Ids below this are indexed directly (at most 4 MiB of index).
const DENSE_MAX: u32 = 1 << 20;
/// An empty entry of the dense index.
const NONE: u32 = u32::MAX;

/// Allocation slot by [`RelayId`].
#[derive(Debug, Default)]
pub struct RelaySlots {
    dense: Vec<u32>,
    sparse: HashMap<RelayId, u32, FastHash>,
}

impl RelaySlots {
    /// The allocation slot of relay `id`.
    #[inline]
    pub fn get(&self, id: RelayId) -> Option<u32> {
        if id.0 < DENSE_MAX {
            self.dense
                .get(id.0 as usize)
                .copied()
                .filter(|&s| s != NONE)
        } else {
            self.sparse.get(&id).copied()
        }
    }

    /// Records that relay `id` belongs to allocation slot `slot`.
    pub fn insert(&mut self, id: RelayId, slot: u32) {
        if id.0 < DENSE_MAX {
            let i = id.0 as usize;
            if i >= self.dense.len() {
                self.dense.resize(i + 1, NONE);
            }
            self.dense[i] = slot;
        } else {
            self.sparse.insert(id, slot);
        }
    }

    /// Forgets relay `id`.
    pub fn remove(&mut self, id: RelayId) {
        if id.0 < DENSE_MAX {
            if let Some(s) = self.dense.get_mut(id.0 as usize) {
                *s = NONE;
            }
            // Shrink when the top of the index is empty (relays closed): bounded by the live ids.
            while self.dense.last() == Some(&NONE) {
                self.dense.pop();
            }
        } else {
            self.sparse.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_and_sparse_ids_map_to_their_slots() {
        let mut r = RelaySlots::default();
        r.insert(RelayId(3), 7);
        r.insert(RelayId(DENSE_MAX + 5), 9);
        assert_eq!(r.get(RelayId(3)), Some(7));
        assert_eq!(r.get(RelayId(2)), None);
        assert_eq!(r.get(RelayId(100)), None);
        assert_eq!(r.get(RelayId(DENSE_MAX + 5)), Some(9));
        r.remove(RelayId(3));
        r.remove(RelayId(DENSE_MAX + 5));
        assert_eq!(r.get(RelayId(3)), None);
        assert_eq!(r.get(RelayId(DENSE_MAX + 5)), None);
        assert!(r.dense.is_empty(), "the index shrinks with the ids");
    }
}
