//! The shared-memory zone that keeps Redis writes until Redis acknowledges
//! them (`sessions_core::stores::redis::journal`). Every worker reads through it and every
//! worker's Redis thread flushes it; it outlives reloads and crashed
//! workers, as the session zone does.

use std::ptr::NonNull;
use std::slice;

use ngx::core::SlabPool;
use sessions_core::stores::redis::journal::{Journal, JournalHeader, JournalPlan, JournalSlot};

use sessions_sidecar::PendingWrites;

/// The zone's name; one `http` block has one.
pub(crate) const NAME: &str = "sessions_redis_pending";

/// Where the journal lives; identical in every worker.
#[derive(Clone)]
pub struct SharedJournal {
    pub(crate) pool: SlabPool,
    pub(crate) region: NonNull<u8>,
    pub(crate) plan: JournalPlan,
}

// SAFETY: `region` points into shared memory mapped for the worker's whole
// life; it is only touched under the slab pool's mutex (`with`), which is
// process-shared and excludes the nginx thread and the Redis thread alike
// (each takes it by compare-and-swap, whatever their pid).
unsafe impl Send for SharedJournal {}
// SAFETY: as above.
unsafe impl Sync for SharedJournal {}

impl SharedJournal {
    /// Logs, once per time it is reached, that the journal is full.
    pub fn report_full(&self) {
        if self.with(|j| j.report_full()) {
            // SAFETY: the cycle's log lives as long as the worker.
            let log = unsafe { (*nginx_sys::ngx_cycle).log };
            ngx::ngx_log_error!(
                nginx_sys::NGX_LOG_ERR,
                log,
                "sessions: {} Redis writes are waiting for Redis, the most \"sessions_redis_pending\" \
                 keeps; further writes are sent once and lost if Redis does not take them",
                self.capacity()
            );
        }
    }

    /// Runs `f` over the journal with the zone locked.
    pub fn with<R>(&self, f: impl FnOnce(&mut Journal<'_>) -> R) -> R {
        let _locked = self.pool.lock();
        // SAFETY: `region` holds a journal formatted with `plan` (see
        // `init`); the lock held by `_locked` makes this access exclusive.
        let (hdr, buckets, slots) = unsafe { carve(self.region.as_ptr(), self.plan) };
        let mut j = Journal::attach(hdr, buckets, slots).expect("formatted journal");
        f(&mut j)
    }

    pub fn capacity(&self) -> u32 {
        self.plan.capacity
    }
}

impl PendingWrites for SharedJournal {
    fn with(&self, f: &mut dyn FnMut(&mut Journal<'_>)) {
        SharedJournal::with(self, |j| f(j));
    }
}

/// # Safety
/// `base` points to `plan.bytes()` bytes of zeroed or formatted shared
/// memory that the caller may access exclusively for `'a`.
pub(crate) unsafe fn carve<'a>(
    base: *mut u8,
    plan: JournalPlan,
) -> (&'a mut JournalHeader, &'a mut [u32], &'a mut [JournalSlot]) {
    // SAFETY: offsets and lengths come from `plan`; the parts do not overlap
    // and each is aligned for its type; all fields are valid when zeroed.
    unsafe {
        (
            &mut *base.cast::<JournalHeader>(),
            slice::from_raw_parts_mut(
                base.add(plan.buckets_offset()).cast::<u32>(),
                plan.buckets as usize,
            ),
            slice::from_raw_parts_mut(
                base.add(plan.slots_offset()).cast::<JournalSlot>(),
                plan.capacity as usize,
            ),
        )
    }
}
