//! Where the session table lives in the zone, and how a worker reaches it:
//! locked by the slab pool's own mutex (which nginx force-unlocks if a
//! worker dies holding it).

use std::ptr::NonNull;
use std::slice;

use nginx_sys::ngx_shm_zone_t;
use ngx::core::SlabPool;
use sessions_core::stores::zone::table::{Chunk, Plan};
use sessions_core::{stores::zone::revoked, Header, Slot, Table};

use sessions_sidecar::SharedRecords;

/// Where the table lives in the zone; identical in every worker.
#[derive(Clone, Copy)]
pub struct SharedTable {
    pub(crate) zone: NonNull<ngx_shm_zone_t>,
    pub(crate) region: NonNull<u8>,
    pub(crate) plan: Plan,
}

// SAFETY: `zone` and `region` point into the cycle and into shared memory,
// both mapped for the worker's whole life; the table is only touched under
// the slab pool's mutex (`with`), which is process-shared and taken by
// compare-and-swap, so the nginx thread and the Redis thread exclude each
// other as workers do (as `SharedJournal`).
unsafe impl Send for SharedTable {}
// SAFETY: as above.
unsafe impl Sync for SharedTable {}

impl SharedRecords for SharedTable {
    fn apply(&self, records: &[revoked::SharedRecord], now: u64) {
        self.with(|t| {
            for r in records {
                revoked::apply(t, *r, now);
            }
        });
    }
}

impl SharedTable {
    /// Runs `f` over the table with the zone locked.
    pub fn with<R>(&self, f: impl FnOnce(&mut Table<'_>) -> R) -> R {
        // SAFETY: the zone is mapped for the worker's whole life and its slab
        // pool was set up by nginx before `init` ran.
        let pool = unsafe { SlabPool::from_shm_zone(self.zone.as_ref()) }.expect("mapped zone");
        let _locked = pool.lock();
        // SAFETY: `region` holds a table formatted with `plan` (see `init`),
        // and the slab mutex held by `_locked` gives this process exclusive
        // access until the guard drops at the end of the scope.
        let mut table = unsafe { self.parts() };
        f(&mut table)
    }

    /// # Safety
    /// The caller holds the zone's lock and `region` was laid out by `plan`.
    unsafe fn parts<'a>(&self) -> Table<'a> {
        // SAFETY: the caller holds the lock; the region was formatted with `plan`.
        let (hdr, buckets, slots, chunks) = unsafe { carve(self.region.as_ptr(), self.plan) };
        Table::attach(hdr, buckets, slots, chunks).expect("formatted table")
    }

    /// The zone's configured name.
    pub fn zone_name(&self) -> String {
        // SAFETY: the zone entry lives as long as the cycle that owns `self`.
        unsafe { self.zone.as_ref() }.shm.name.to_string()
    }
}

/// Splits a region into the table's parts.
///
/// # Safety
/// `base` points to `plan.bytes()` bytes of zeroed or formatted shared memory
/// that the caller may access exclusively for `'a`.
pub(crate) unsafe fn carve<'a>(
    base: *mut u8,
    plan: Plan,
) -> (&'a mut Header, &'a mut [u32], &'a mut [Slot], &'a mut [Chunk]) {
    // SAFETY: offsets and lengths come from `plan`; the pieces do not overlap
    // and each offset is aligned for its type (see `Plan`). All fields are
    // plain integers, valid when zeroed.
    unsafe {
        (
            &mut *base.cast::<Header>(),
            slice::from_raw_parts_mut(
                base.add(plan.buckets_offset()).cast::<u32>(),
                plan.buckets as usize,
            ),
            slice::from_raw_parts_mut(
                base.add(plan.slots_offset()).cast::<Slot>(),
                plan.capacity as usize,
            ),
            slice::from_raw_parts_mut(
                base.add(plan.chunks_offset()).cast::<Chunk>(),
                plan.chunks as usize,
            ),
        )
    }
}
