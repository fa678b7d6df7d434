//! The shared-memory zone that keeps Redis writes until Redis acknowledges
//! them (`sessions_core::journal`). Every worker reads through it and every
//! worker's Redis thread flushes it; it outlives reloads and crashed
//! workers, as the session zone does.

use std::ffi::c_void;
use std::ptr::{self, NonNull};
use std::slice;
use std::sync::Arc;

use nginx_sys::{
    ngx_conf_t, ngx_int_t, ngx_shm_zone_t, ngx_slab_alloc, ngx_slab_pool_t, ngx_str_t, NGX_LOG_EMERG,
};
use ngx::core::{SlabPool, Status};
use ngx::ngx_log_error;
use sessions_core::journal::{Journal, JournalHeader, JournalPlan, JournalSlot};

use crate::conf::MainConf;
use crate::redis_client::PendingWrites;

/// The zone's name; one `http` block has one.
const NAME: &str = "sessions_redis_pending";

/// Where the journal lives; identical in every worker.
#[derive(Clone)]
pub struct SharedJournal {
    pool: SlabPool,
    region: NonNull<u8>,
    plan: JournalPlan,
}

// SAFETY: `region` points into shared memory mapped for the worker's whole
// life; it is only touched under the slab pool's mutex (`with`), which is
// process-shared and excludes the nginx thread and the Redis thread alike
// (each takes it by compare-and-swap, whatever their pid).
unsafe impl Send for SharedJournal {}
// SAFETY: as above.
unsafe impl Sync for SharedJournal {}

impl SharedJournal {
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
unsafe fn carve<'a>(
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

/// Declares the zone for `capacity` pending writes (postconfiguration).
pub fn add(cf: &mut ngx_conf_t, main: &mut MainConf, capacity: u32) -> Result<(), ()> {
    let plan = JournalPlan::for_capacity(capacity);
    // The slab pool's own bookkeeping takes about a page in 64, and the
    // allocation is rounded up to whole pages.
    let size = plan.bytes() + plan.bytes() / 32 + 16 * 4096;
    let name = ngx_str_t {
        len: NAME.len(),
        data: NAME.as_ptr().cast_mut(),
    };
    let zone = crate::directives::shm_zone(cf, name, size).ok_or(())?;
    zone.init = Some(init);
    zone.data = ptr::from_mut(main).cast();
    main.journal_plan = Some(plan);
    Ok(())
}

/// The zone's init callback: reattach to the journal a previous cycle
/// left (its pending writes go on), or carve and format a new one.
extern "C" fn init(shm_zone: *mut ngx_shm_zone_t, _old: *mut c_void) -> ngx_int_t {
    // SAFETY: nginx calls init with the zone `add` declared, whose `data`
    // is our main configuration and whose memory is a slab pool.
    let (zone, main) = unsafe { (&mut *shm_zone, &mut *(*shm_zone).data.cast::<MainConf>()) };
    let log = zone.shm.log;
    let Some(plan) = main.journal_plan else {
        return Status::NGX_ERROR.into();
    };
    let shpool = zone.shm.addr.cast::<ngx_slab_pool_t>();
    // SAFETY: the pool header is valid; init runs in the master before any
    // worker of this cycle, so no lock is needed.
    let existing = NonNull::new(unsafe { (*shpool).data.cast::<JournalHeader>() });
    // SAFETY: `data` was set below by an earlier init to a formatted journal.
    let region = match existing.filter(|h| unsafe { h.as_ref() }.plan() == Some(plan)) {
        Some(h) => h.cast::<u8>(),
        None => {
            // SAFETY: allocating from this zone's pool, in the master alone.
            let Some(region) = NonNull::new(unsafe { ngx_slab_alloc(shpool, plan.bytes()) }.cast::<u8>())
            else {
                ngx_log_error!(NGX_LOG_EMERG, log, "sessions: zone \"{NAME}\" is too small");
                return Status::NGX_ERROR.into();
            };
            // SAFETY: the fresh allocation is ours alone; `format` writes all of it.
            let (hdr, buckets, slots) = unsafe { carve(region.as_ptr(), plan) };
            Journal::format(hdr, buckets, slots);
            // SAFETY: publishing the journal to later cycles through the pool.
            unsafe { (*shpool).data = region.as_ptr().cast() };
            region
        }
    };
    // SAFETY: the zone was set up by nginx as a slab pool before init.
    let Some(pool) = (unsafe { SlabPool::from_shm_zone(zone) }) else {
        return Status::NGX_ERROR.into();
    };
    main.journal = Some(Arc::new(SharedJournal { pool, region, plan }));
    Status::NGX_OK.into()
}
