//! The shared-memory zone: one slab allocation holding the session table,
//! formatted once and reused across reloads, guarded by the slab pool's own
//! mutex (which nginx force-unlocks if a worker dies holding it).

use std::ffi::c_void;
use std::ptr::NonNull;

use nginx_sys::{
    ngx_int_t, ngx_pagesize, ngx_shm_zone_t, ngx_slab_alloc, ngx_slab_pool_t, NGX_LOG_EMERG, NGX_LOG_NOTICE,
};
use ngx::core::Status;
use ngx::ngx_log_error;
use sessions_core::primitives::id::random_alnum;
use sessions_core::stores::zone::table::Plan;
use sessions_core::{Header, Keyring, Table};

use std::ffi::c_char;
use std::ptr;
use std::sync::Arc;

use nginx_sys::{ngx_conf_t, ngx_shared_memory_add, ngx_str_t};
use ngx::core::SlabPool;
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ngx_conf_log_error;
use sessions_core::stores::redis::journal::{Journal, JournalHeader, JournalPlan};

use crate::config::conf::MainConf;
use crate::zone::journal;
use crate::zone::table::{carve, SharedTable};

/// Pages left to nginx's slab allocator after the table is carved out.
const RESERVED_PAGES: usize = 2;

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
        // SAFETY: reading the pool's free-page count and nginx's page size,
        // both set before zones are initialised, in the master alone.
        let (pages, page_size) = unsafe { ((*shpool).pfree, ngx_pagesize) };
        let free = pages * page_size;
        let reserve = RESERVED_PAGES * page_size;
        let carved = Plan::for_bytes(free.saturating_sub(reserve)).and_then(|plan| {
            // SAFETY: allocating from this zone's pool, single-threaded in the master.
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
        let seeded = sessions_core::primitives::id::fill_random(&mut h.random_secret)
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
            crate::lifecycle::state::load(state, &main.state_keys, &mut t, &zone.shm.name.to_string(), log);
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
        if main.zone_random {
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

/// Declares a shared memory zone of this module; a reload with the same
/// name and size reuses it.
pub fn shm_zone<'a>(
    cf: &mut ngx_conf_t,
    mut name: ngx_str_t,
    size: usize,
) -> Option<&'a mut nginx_sys::ngx_shm_zone_t> {
    // SAFETY: `cf` is valid during configuration; the tag is this module's static.
    let shm = unsafe {
        ngx_shared_memory_add(
            cf,
            &mut name,
            size,
            ptr::addr_of_mut!(crate::config::module::ngx_http_sessions_module).cast(),
        )
    };
    // SAFETY: non-null results point to a zone entry in the cycle, which
    // lives as long as the configuration.
    unsafe { shm.as_mut() }
}

/// Declares the shared zone; `zone::init` sets it up once memory exists.
pub fn add_zone(cf: &mut ngx_conf_t, main: &mut MainConf, name: ngx_str_t, size: usize) -> *mut c_char {
    let Some(zone) = shm_zone(cf, name, size) else {
        return NGX_CONF_ERROR;
    };
    let shm: *mut nginx_sys::ngx_shm_zone_t = ptr::from_mut(&mut *zone);
    if !zone.data.is_null() {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "duplicate zone \"{name}\"");
        return NGX_CONF_ERROR;
    }
    zone.init = Some(init);
    zone.data = ptr::from_mut(main).cast();
    main.zone = shm;
    NGX_CONF_OK
}

// The journal of pending Redis writes (`zone::journal`).

/// Declares the zone for `capacity` pending writes (postconfiguration).
pub fn add_journal(cf: &mut ngx_conf_t, main: &mut MainConf, capacity: u32) -> Result<(), ()> {
    let plan = JournalPlan::for_capacity(capacity);
    // The slab pool's own bookkeeping takes about a page in 64, and the
    // allocation is rounded up to whole pages.
    let size = plan.bytes() + plan.bytes() / 32 + 16 * 4096;
    let name = ngx_str_t {
        len: journal::NAME.len(),
        data: journal::NAME.as_ptr().cast_mut(),
    };
    let zone = shm_zone(cf, name, size).ok_or(())?;
    zone.init = Some(init_journal);
    zone.data = ptr::from_mut(main).cast();
    main.journal_plan = Some(plan);
    Ok(())
}

/// The zone's init callback: reattach to the journal a previous cycle
/// left (its pending writes go on), or carve and format a new one.
extern "C" fn init_journal(shm_zone: *mut ngx_shm_zone_t, _old: *mut c_void) -> ngx_int_t {
    // SAFETY: nginx calls init with the zone `add_journal` declared, whose `data`
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
                ngx_log_error!(
                    NGX_LOG_EMERG,
                    log,
                    "sessions: zone \"{}\" is too small",
                    journal::NAME
                );
                return Status::NGX_ERROR.into();
            };
            // SAFETY: the fresh allocation is ours alone; `format` writes all of it.
            let (hdr, buckets, slots) = unsafe { journal::carve(region.as_ptr(), plan) };
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
    main.journal = Some(Arc::new(journal::SharedJournal { pool, region, plan }));
    Status::NGX_OK.into()
}
