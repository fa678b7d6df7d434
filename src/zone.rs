//! The shared-memory zone: one slab allocation holding the session table,
//! formatted once and reused across reloads, guarded by the slab pool's own
//! mutex (which nginx force-unlocks if a worker dies holding it).

use std::ffi::c_void;
use std::ptr::NonNull;
use std::slice;

use nginx_sys::{
    ngx_int_t, ngx_pagesize, ngx_shm_zone_t, ngx_slab_alloc, ngx_slab_pool_t, NGX_LOG_EMERG, NGX_LOG_NOTICE,
};
use ngx::core::{SlabPool, Status};
use ngx::ngx_log_error;
use sessions_core::id::random_alnum;
use sessions_core::table::Chunk;
use sessions_core::table::Plan;
use sessions_core::{Header, Keyring, Slot, Table};

use crate::conf::MainConf;

/// Pages left to nginx's slab allocator after the table is carved out.
const RESERVED_PAGES: usize = 2;

/// Where the table lives in the zone; identical in every worker.
#[derive(Clone, Copy)]
pub struct SharedTable {
    zone: NonNull<ngx_shm_zone_t>,
    region: NonNull<u8>,
    plan: Plan,
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

    pub fn capacity(&self) -> u32 {
        self.plan.capacity
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
unsafe fn carve<'a>(
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

/// The zone's init callback: attach to the table a previous cycle left, or
/// carve and format a new one; then publish the `random` secret and name.
pub extern "C" fn init(shm_zone: *mut ngx_shm_zone_t, _old: *mut c_void) -> ngx_int_t {
    // SAFETY: nginx calls init with the zone it created for `add_zone`, whose
    // `data` is our main configuration and whose memory is a slab pool.
    let (zone, main) = unsafe { (&mut *shm_zone, &mut *(*shm_zone).data.cast::<MainConf>()) };
    let log = zone.shm.log;
    let shpool = zone.shm.addr.cast::<ngx_slab_pool_t>();

    // SAFETY: the pool header is valid; init runs in the master with no
    // worker running on this cycle's zone yet, so no lock is needed.
    let existing = unsafe { (*shpool).data.cast::<Header>() };
    let (region, plan, fresh) = if let Some(hdr) = NonNull::new(existing) {
        // SAFETY: `data` was set by a previous `init` to a formatted table.
        match unsafe { hdr.as_ref() }.plan() {
            Some(plan) => (hdr.cast::<u8>(), plan, false),
            None => {
                ngx_log_error!(
                    NGX_LOG_EMERG,
                    log,
                    "sessions zone \"{}\" was created by another version of the module: \
                     restart nginx, or rename or resize the zone",
                    zone.shm.name
                );
                return Status::NGX_ERROR.into();
            }
        }
    } else {
        // SAFETY: reading the pool's free-page count and nginx's page size.
        let free = unsafe { (*shpool).pfree } * unsafe { ngx_pagesize };
        let reserve = RESERVED_PAGES * unsafe { ngx_pagesize };
        // SAFETY: allocating from this zone's pool, single-threaded in the master.
        let carved = Plan::for_bytes(free.saturating_sub(reserve)).and_then(|plan| {
            NonNull::new(unsafe { ngx_slab_alloc(shpool, plan.bytes()) }.cast::<u8>()).map(|r| (plan, r))
        });
        let Some((plan, region)) = carved else {
            ngx_log_error!(
                NGX_LOG_EMERG,
                log,
                "sessions zone \"{}\" is too small",
                zone.shm.name
            );
            return Status::NGX_ERROR.into();
        };
        // SAFETY: the fresh region is ours alone (shared memory starts
        // zeroed); `format` initialises all of it. No lock: the master is
        // the only process that knows this zone yet.
        let (hdr, buckets, slots, chunks) = unsafe { carve(region.as_ptr(), plan) };
        let mut t = Table::format(hdr, buckets, slots, chunks);
        let h = t.header();
        let seeded = sessions_core::id::fill_random(&mut h.random_secret)
            .and_then(|()| random_alnum::<16>())
            .map(|name| h.random_name = name);
        if seeded.is_err() {
            ngx_log_error!(NGX_LOG_EMERG, log, "the system random source failed");
            return Status::NGX_ERROR.into();
        }
        // `nginx -t` makes the zone too: it has no sessions to load.
        // SAFETY: a global nginx sets before any configuration is read.
        let testing = unsafe { nginx_sys::ngx_test_config } != 0;
        if let Some(state) = main.state.as_ref().filter(|_| !testing) {
            crate::zone_state::load(state, &main.state_keys, &mut t, &zone.shm.name.to_string(), log);
        }
        // SAFETY: publishing the table for later cycles (reload) in the pool.
        unsafe { (*shpool).data = region.as_ptr().cast() };
        (region, plan, true)
    };

    let table = SharedTable {
        zone: NonNull::from(&mut *zone),
        region,
        plan,
    };
    let (secret, name) = table.with(|t| (t.header().random_secret, t.header().random_name));
    main.random_keys = Keyring::from_secrets(&[secret]);
    main.random_name = name.to_vec();
    main.table = Some(table);

    if fresh {
        let kept = match &main.state {
            Some(s) => format!("kept across restarts in \"{}\"", s.path.display()),
            None => "lost when nginx stops (no state file)".to_string(),
        };
        ngx_log_error!(
            NGX_LOG_NOTICE,
            log,
            "sessions zone \"{}\" holds {} sessions, {kept}",
            zone.shm.name,
            plan.capacity
        );
        if main.uses_random {
            ngx_log_error!(
                NGX_LOG_NOTICE,
                log,
                "sessions: a random secret or cookie name is in use: another nginx instance \
                 has its own, so sessions are not shared between instances{}",
                if main.state.is_some() {
                    "; the state file keeps them, and with them the secret"
                } else {
                    ", nor kept when nginx stops"
                }
            );
        }
    }
    Status::NGX_OK.into()
}
