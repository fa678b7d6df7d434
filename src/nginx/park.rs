//! Requests waiting for the Redis thread, and the eventfd through which
//! that thread wakes nginx's event loop. A parked request is held by a
//! token, never by a pointer the other thread sees; a pool cleanup forgets
//! the request if it ends while it waits (client gone), so a late answer
//! touches nothing.

use std::cell::RefCell;
use std::ffi::c_void;
use std::os::fd::FromRawFd;
use std::ptr;

use nginx_sys::{ngx_add_timer, ngx_del_timer, ngx_http_finalize_request, NGX_HTTP_SERVICE_UNAVAILABLE};
use nginx_sys::{
    ngx_connection_t, ngx_cycle_t, ngx_event_t, ngx_get_connection, ngx_handle_read_event,
    ngx_http_block_reading, ngx_http_core_run_phases, ngx_http_request_t, ngx_http_run_posted_requests,
    ngx_http_test_reading, ngx_pool_cleanup_add, NGX_LOG_ERR, NGX_LOG_NOTICE, NGX_LOG_WARN,
};
use ngx::http::{HttpModuleMainConf, Request};
use ngx::ngx_log_error;
use sessions_core::config::redis_conf::{RedisSettings, Topology};
use sessions_core::stores::redis::near_cache::NearCache;
use sessions_core::Keyring;

use crate::config::conf::MainConf;
use crate::config::module::Module;
use sessions_sidecar::oidc::OidcSettings;
use sessions_sidecar::{Answer, Client, Job, OidcCall, Reply};

/// What a resumed request finds.
// Moved once per request; boxing would cost an allocation instead.
#[allow(clippy::large_enum_variant)]
pub enum Wake {
    Answer(Answer),
    /// Nothing for it in particular: look again (keys were adopted, or
    /// adopting them failed).
    Retry,
}

struct Parked {
    r: *mut ngx_http_request_t,
    generation: u32,
    /// Who it waits for, for the line logged when it waits too long.
    waits_for: &'static str,
    /// Where the answer goes: the access phase (`None`), or a content
    /// handler that answers and finalizes (`sessions_admin`).
    answer: Option<Answered>,
}

struct Worker {
    client: Client,
    log: *mut nginx_sys::ngx_log_t,
    parked: Vec<Parked>,
    free: Vec<u32>,
    generation: u32,
    /// Requests waiting for the random secret and name from Redis.
    waiting: Vec<u64>,
    adopt_in_flight: bool,
    /// Adopting failed; requests fall back until a retry succeeds.
    adopt_failed_at: Option<u64>,
    /// How long a request may wait, in ms (see `sessions_sidecar::patience`).
    patience: u64,
    /// Redis sessions read recently, kept coherent by the Redis thread.
    near: Option<std::sync::Arc<std::sync::Mutex<NearCache>>>,
    /// Jobs sent to the Redis thread and not answered yet, their requests
    /// gone or not, plus requests waiting for adoption (see `MAX_WAITING`).
    outstanding: usize,
    /// The most `outstanding` since the memory was last given back.
    peak: usize,
    /// Whether reaching `MAX_WAITING` was logged since it was last below.
    full_logged: bool,
    /// Runs once an adoption ended: what was verified under the keys
    /// before is forgotten.
    on_adopted: fn(),
}

/// How much waiting work a worker keeps: requests parked for Redis, and
/// the jobs of requests that went away while they waited (a job runs until
/// its own timeout). Beyond it a request gets `sessions_redis_unavailable`
/// at once. With Redis stalled this bounds the Redis thread's memory.
pub const MAX_WAITING: usize = 1024;

/// Outstanding work past which the memory it took is given back to the
/// system once it is all answered.
const TRIM_AFTER: usize = 64;

/// Token of a write sent once, unkept (the journal was full).
const UNKEPT: u64 = u64::MAX - 1;

/// Token of the worker's own adoption job.
const ADOPT: u64 = u64::MAX;
/// The token of a `Job::KeepLimit`, whose answer is counted and logged.
const LIMIT: u64 = u64::MAX - 2;
/// How long after a failed adoption requests stop waiting for another.
const ADOPT_RETRY_MS: u64 = 1_000;

thread_local! {
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
    static RESUMED: RefCell<Option<(*mut ngx_http_request_t, Wake)>> = const { RefCell::new(None) };
    static REPLIES: RefCell<Vec<Reply>> = const { RefCell::new(Vec::new()) };
}

/// Starts the side-car thread of this worker and watches its eventfd:
/// `redis` for Redis locations, `oidc` for logins through OpenID
/// Providers; `on_adopted` runs each time an adoption of the random
/// secret ends.
pub fn start(
    cycle: *mut ngx_cycle_t,
    redis: Option<(&RedisSettings, &Topology)>,
    oidc: Vec<OidcSettings>,
    adopt: bool,
    setup: sessions_sidecar::Setup,
    on_adopted: fn(),
) -> Result<(), String> {
    let near = setup.near.clone();
    // SAFETY: creating a non-blocking eventfd owned by this process.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!("eventfd() failed: {}", std::io::Error::last_os_error()));
    }
    // The thread gets its own descriptor of the eventfd, as a file.
    // SAFETY: `dup` of the eventfd above, whose copy the `File` then owns alone.
    let waker = unsafe { libc::dup(fd) };
    let client = if waker < 0 {
        Err(format!("dup() failed: {}", std::io::Error::last_os_error()))
    } else {
        // SAFETY: as above.
        let waker = unsafe { std::fs::File::from_raw_fd(waker) };
        crate::threads::with_signals_blocked(|| sessions_sidecar::start(redis, oidc, waker, setup))
            .map_err(|e| e.to_string())
    };
    let client = client.inspect_err(|_| {
        // SAFETY: closing the eventfd made above, not shared yet.
        unsafe { libc::close(fd) };
    })?;
    // SAFETY: the cycle is live in init_process; the connection comes from
    // its free list and its events are set up before being registered. It
    // lives as long as the worker; nothing needs to find it again.
    unsafe {
        let log = (*cycle).log;
        let c = ngx_get_connection(fd, log);
        if c.is_null() {
            return Err("no free connection for the Redis eventfd".into());
        }
        let rev = (*c).read;
        (*rev).handler = Some(on_wake);
        // Like nginx's own channel: not a client socket a graceful exit waits for.
        (*rev).set_channel(1);
        (*rev).log = log;
        (*(*c).write).log = log;
        (*c).log = log;
        if ngx_handle_read_event(rev, 0) != 0 {
            return Err("cannot watch the Redis eventfd".into());
        }
    }
    if adopt {
        client.submit(ADOPT, Job::Adopt);
    }
    WORKER.set(Some(Worker {
        client,
        // SAFETY: the cycle's log lives as long as the worker.
        log: unsafe { (*cycle).log },
        parked: Vec::new(),
        free: Vec::new(),
        generation: 0,
        waiting: Vec::new(),
        adopt_in_flight: adopt,
        adopt_failed_at: None,
        patience: redis.map_or(1_000, |(s, _)| sessions_sidecar::patience(s).as_millis() as u64),
        near,
        outstanding: usize::from(adopt),
        peak: 0,
        full_logged: false,
        on_adopted,
    }));
    Ok(())
}

/// Session `id` as the near cache holds it (read from Redis, unchanged
/// since as far as Redis told): its record, its data, and the journal's
/// generation before it was read.
pub fn near_session(id: &sessions_core::SessionId) -> Option<(sessions_core::Record, Vec<u8>, u64)> {
    WORKER.with_borrow(|w| {
        let near = w.as_ref()?.near.as_ref()?;
        let c = near.lock().unwrap_or_else(|e| e.into_inner());
        c.get(id)
            .map(|(rec, data, generation)| (rec, data.to_vec(), generation))
    })
}

pub fn running() -> bool {
    WORKER.with_borrow(|w| w.is_some())
}

/// Whether this worker's Redis thread got its last answer from Redis.
pub fn redis_reached() -> bool {
    WORKER.with_borrow(|w| w.as_ref().is_some_and(|w| w.client.reached()))
}

/// The answer a request was woken with, if `r` is the request being resumed.
pub fn resumed(r: &Request) -> Option<Wake> {
    let me = ptr::from_ref(r.as_ref()).cast_mut();
    RESUMED.with_borrow_mut(|s| match s {
        Some((p, _)) if *p == me => s.take().map(|(_, w)| w),
        _ => None,
    })
}

/// Whether requests should stop waiting for adoption (it failed recently).
pub fn adoption_failed(now: u64) -> bool {
    WORKER.with_borrow_mut(|w| {
        let Some(w) = w.as_mut() else { return true };
        match w.adopt_failed_at {
            Some(t) if now.saturating_sub(t) < ADOPT_RETRY_MS => true,
            Some(_) => {
                w.adopt_failed_at = None;
                false
            }
            None => false,
        }
    })
}

/// Whether this worker already keeps `MAX_WAITING` requests or jobs
/// waiting for Redis: a new one gets the `sessions_redis_unavailable`
/// policy at once (logged once each time the bound is reached).
pub fn saturated() -> bool {
    WORKER.with_borrow_mut(|w| {
        let Some(w) = w.as_mut() else { return false };
        let full = w.outstanding >= MAX_WAITING;
        if full && !w.full_logged {
            ngx_log_error!(
                NGX_LOG_ERR,
                w.log,
                "sessions: {MAX_WAITING} requests already wait for Redis in this worker; \
                 more get sessions_redis_unavailable at once"
            );
        }
        w.full_logged = full || (w.full_logged && w.outstanding > MAX_WAITING / 2);
        full
    })
}

/// Counts a job sent (`true`) or answered.
fn count_outstanding(w: &mut Worker, sent: bool) {
    if sent {
        w.outstanding += 1;
        w.peak = w.peak.max(w.outstanding);
        return;
    }
    w.outstanding = w.outstanding.saturating_sub(1);
    if w.outstanding == 0 && w.peak > TRIM_AFTER {
        w.peak = 0;
        // The Redis thread's allocations come from an arena of their own,
        // which glibc keeps after a burst of waiting jobs: hand it back.
        // SAFETY: glibc's malloc_trim, safe to call at any time.
        unsafe { libc::malloc_trim(0) };
    }
}

/// Sends a job nobody waits for.
pub fn submit(job: Job) {
    WORKER.with_borrow(|w| {
        if let Some(w) = w {
            w.client.submit(0, job);
        }
    });
}

/// Hands the side-car a `Job::KeepLimit`; its answer is counted and logged
/// when it comes. Counted as waiting work, as unkept writes are.
pub fn keep_limit(job: Job) -> bool {
    WORKER.with_borrow_mut(|w| {
        let Some(w) = w.as_mut().filter(|w| w.outstanding < MAX_WAITING) else {
            return false;
        };
        let sent = w.client.submit(LIMIT, job);
        if sent {
            count_outstanding(w, true);
        }
        sent
    })
}

fn wake_flusher() {
    WORKER.with_borrow(|w| {
        if let Some(w) = w {
            w.client.flush();
        }
    });
}

/// Keeps writes decided as a response leaves in the journal, where every
/// worker sees them at once and the Redis threads send them until Redis
/// acknowledges them. With the journal full they are sent once, unkept.
pub fn keep(
    main: &MainConf,
    writes: Vec<sessions_core::stores::redis::view::Write>,
    keys: sessions_core::model::keys::SealKeys,
    now: u64,
) {
    if !record(main, &writes, keys.tag(), now) {
        // Counted as waiting work: a stalled Redis must not pile them up.
        WORKER.with_borrow_mut(|w| {
            if let Some(w) = w.as_mut().filter(|w| w.outstanding < MAX_WAITING) {
                if w.client.submit(UNKEPT, Job::Write { writes, keys }) {
                    count_outstanding(w, true);
                }
            }
        });
    }
}

/// Records `writes` (sealed later with the keys tagged `tag`) in the
/// journal and wakes this worker's flusher; `false`, and the bound
/// reported, when there is no room.
pub fn record(
    main: &MainConf,
    writes: &[sessions_core::stores::redis::view::Write],
    tag: u64,
    now: u64,
) -> bool {
    let kept = in_journal(main, |j| j.record(writes, tag, now));
    if !kept {
        if let Some(j) = &main.journal {
            j.report_full();
        }
    }
    kept
}

/// Records the first write of a new session (see `Journal::record_new`)
/// and wakes this worker's flusher; `false` when it must go another way.
pub fn record_new(
    main: &MainConf,
    writes: &[sessions_core::stores::redis::view::Write],
    tag: u64,
    now: u64,
) -> bool {
    in_journal(main, |j| j.record_new(writes, tag, now))
}

/// Keeps writes in the journal by `f`, and wakes the flusher if it did.
fn in_journal(
    main: &MainConf,
    f: impl FnOnce(
        &mut sessions_core::stores::redis::journal::Journal<'_>,
    ) -> Result<(), sessions_core::stores::redis::journal::Full>,
) -> bool {
    let kept = main.journal.as_ref().is_some_and(|j| j.with(|j| f(j).is_ok()));
    if kept {
        wake_flusher();
    }
    kept
}

/// Sends the records a cookie-store request or an admin revocation made
/// (sealed with `keys`) to every instance sharing the Redis, kept in the
/// journal until Redis acknowledges them. Nothing without a shared Redis.
pub fn share(
    main: &MainConf,
    keys: &Keyring,
    records: &[sessions_core::stores::zone::revoked::SharedRecord],
    now: u64,
) {
    let seal = keys.key(0).seal();
    // Only a configured secret's: the flushers know no other keys (and
    // with a `random` one no other instance opens these cookies anyway).
    let known = main.redis_seals.iter().any(|s| s.tag() == seal.tag());
    if !main.cookie_records_shared || !known || records.is_empty() {
        return;
    }
    let writes = records
        .iter()
        .map(|r| sessions_core::stores::redis::view::Write::Revoked(*r))
        .collect();
    keep(main, writes, seal.clone(), now);
}

/// Parks `r` in the access phase until `job` is answered (`None`: until
/// adoption ends); the phase runs again with the answer (see `resumed`).
/// `false` when the request could not be parked (out of memory, no thread).
pub fn park(r: &mut Request, job: Option<Job>) -> bool {
    park_for(r, job, None, None)
}

/// Parks `r` until OpenID Provider `provider` answered `call`, at most
/// `patience`: in the access phase (`answered` is `None`: the phase runs
/// again with the answer), or in a content handler, which returns
/// `NGX_DONE` and whose `answered` sends the answer.
pub fn park_oidc(
    r: &mut Request,
    provider: usize,
    call: OidcCall,
    patience: std::time::Duration,
    answered: Option<Answered>,
) -> bool {
    let job = Job::Oidc { provider, call };
    let ms = patience.as_millis() as u64;
    if !park_for(r, Some(job), answered, Some(ms)) {
        return false;
    }
    if answered.is_some() {
        hold(r);
    }
    true
}

/// Keeps a content handler's request alive past its `NGX_DONE`, as for a
/// request body being read; the answer finalizes the request.
fn hold(r: &mut Request) {
    // SAFETY: the main request of a live request.
    unsafe { (*r.as_mut().main).set_count((*r.as_ref().main).count() + 1) };
}

/// A content handler's answer to a job: the status to finalize with.
pub type Answered = fn(&mut Request, Answer) -> ngx::core::Status;

/// Parks a content handler's request (`sessions_admin`) until `job` is
/// answered, which `answered` then sends. The caller returns `NGX_DONE`.
pub fn park_admin(r: &mut Request, job: Job, answered: Answered) -> bool {
    if !park_for(r, Some(job), Some(answered), None) {
        return false;
    }
    hold(r);
    true
}

/// `patience`: how long it may wait, in ms (`None`: as long as a Redis job).
fn park_for(r: &mut Request, job: Option<Job>, answer: Option<Answered>, patience: Option<u64>) -> bool {
    let waits_for = if patience.is_some() {
        "the OpenID Provider"
    } else {
        "Redis"
    };
    let req: &mut ngx_http_request_t = r.as_mut();
    let rp = ptr::from_mut(req);
    let token = WORKER.with_borrow_mut(|w| {
        let w = w.as_mut()?;
        w.generation = w.generation.wrapping_add(1);
        let entry = Parked {
            r: rp,
            generation: w.generation,
            waits_for,
            answer,
        };
        let index = match w.free.pop() {
            Some(i) => {
                w.parked[i as usize] = entry;
                i
            }
            None => {
                w.parked.push(entry);
                u32::try_from(w.parked.len() - 1).ok()?
            }
        };
        Some((u64::from(w.generation) << 32) | u64::from(index))
    });
    let Some(token) = token else { return false };
    // SAFETY: adding a cleanup to the live request's pool; its data is the
    // token (an integer), not a pointer.
    let Some(cln) = (unsafe { ngx_pool_cleanup_add(req.pool, 0).as_mut() }) else {
        forget(token);
        return false;
    };
    cln.handler = Some(request_gone);
    cln.data = ptr::without_provenance_mut(token as usize);
    let sent = WORKER.with_borrow_mut(|w| {
        let Some(w) = w.as_mut() else { return false };
        let sent = match job {
            Some(job) => w.client.submit(token, job),
            None => {
                if !w.adopt_in_flight {
                    w.adopt_in_flight = w.client.submit(ADOPT, Job::Adopt);
                    if w.adopt_in_flight {
                        count_outstanding(w, true);
                    }
                }
                w.waiting.push(token);
                true
            }
        };
        if sent {
            count_outstanding(w, true);
        }
        sent
    });
    if !sent {
        forget(token);
        return false;
    }
    // Notice a client that goes away while it waits; a timer bounds the
    // wait and keeps a gracefully exiting worker alive until the answer.
    req.read_event_handler = Some(ngx_http_test_reading);
    req.write_event_handler = Some(waited_too_long);
    let patience =
        patience.unwrap_or_else(|| WORKER.with_borrow(|w| w.as_ref().map_or(1_000, |w| w.patience)));
    // SAFETY: the connection of a live request and its write event.
    unsafe { ngx_add_timer((*req.connection).write, patience as _) };
    true
}

/// The write event of a parked request: only its timer can fire it.
extern "C" fn waited_too_long(r: *mut ngx_http_request_t) {
    // SAFETY: nginx calls this with the live request whose event fired.
    let wev = unsafe { (*(*r).connection).write };
    // SAFETY: as above.
    if unsafe { (*wev).timedout() } == 0 {
        return;
    }
    let found = WORKER.with_borrow(|w| {
        let w = w.as_ref()?;
        let i = w.parked.iter().position(|p| p.r == r)?;
        let p = &w.parked[i];
        Some(((u64::from(p.generation) << 32) | i as u64, p.waits_for))
    });
    let waits_for = found.map_or("Redis", |(_, w)| w);
    if let Some((t, _)) = found {
        forget(t);
    }
    // SAFETY: as above; the request is finalized once, here.
    unsafe {
        ngx_log_error!(
            NGX_LOG_ERR,
            (*(*r).connection).log,
            "sessions: no answer from {waits_for} in time"
        );
        ngx_http_finalize_request(r, NGX_HTTP_SERVICE_UNAVAILABLE as _);
    }
}

fn slot(w: &mut Worker, token: u64) -> Option<&mut Parked> {
    let p = w.parked.get_mut((token & 0xffff_ffff) as usize)?;
    (u64::from(p.generation) == token >> 32 && !p.r.is_null()).then_some(p)
}

/// Frees the slot of `token`; returns the request if it is still there,
/// and whether `sessions_admin` parked it.
fn forget(token: u64) -> Option<(*mut ngx_http_request_t, Option<Answered>)> {
    WORKER.with_borrow_mut(|w| {
        let w = w.as_mut()?;
        let p = slot(w, token)?;
        let r = std::mem::replace(&mut p.r, ptr::null_mut());
        let answer = p.answer;
        w.free.push((token & 0xffff_ffff) as u32);
        Some((r, answer))
    })
}

extern "C" fn request_gone(data: *mut c_void) {
    forget(data.addr() as u64);
}

/// Resumes a parked request with `wake`, as nginx resumes a request whose
/// subrequest finished.
fn resume(token: u64, wake: Wake) {
    let Some((r, answer)) = forget(token) else { return };
    // SAFETY: `r` is alive: its pool cleanup would have cleared the slot.
    // Running the phases again re-enters the access handler, which takes
    // the answer (an admin request is answered and finalized instead);
    // then the posted subrequests run, as nginx's own handler does.
    unsafe {
        let wev = (*(*r).connection).write;
        if (*wev).timer_set() != 0 {
            ngx_del_timer(wev);
        }
        (*r).read_event_handler = Some(ngx_http_block_reading);
        (*r).write_event_handler = Some(ngx_http_core_run_phases);
        let c = (*r).connection;
        match wake {
            Wake::Answer(a) if answer.is_some() => {
                let rc = answer.expect("checked")(Request::from_ngx_http_request(r), a);
                ngx_http_finalize_request(r, rc.0);
            }
            wake => {
                RESUMED.set(Some((r, wake)));
                ngx_http_core_run_phases(r);
                RESUMED.set(None);
            }
        }
        ngx_http_run_posted_requests(c);
    }
}

/// What `keep_limit` did: counted in the zone, logged.
fn limited(answer: &Answer, log: Option<*mut nginx_sys::ngx_log_t>) {
    let Some(log) = log else { return };
    let Answer::Limited { ended, refused } = *answer else {
        ngx_log_error!(
            NGX_LOG_ERR,
            log,
            "sessions: sessions_max_per_user could not be kept in Redis after a login; it is kept again at the user's next login"
        );
        return;
    };
    if ended + refused == 0 {
        return;
    }
    // SAFETY: the worker's own cycle, read on its nginx thread.
    if let Some(table) = unsafe { Module::main_conf(&*nginx_sys::ngx_cycle) }.and_then(|m| m.table) {
        table.with(|t| {
            t.header().stats.limit_ended += ended as u64;
            t.header().stats.limit_refused += refused as u64;
        });
    }
    ngx_log_error!(
        NGX_LOG_WARN,
        log,
        "sessions: sessions_max_per_user: {ended} older session(s) of a user ended, {refused} login(s) refused"
    );
}

extern "C" fn on_wake(ev: *mut ngx_event_t) {
    // SAFETY: `ev` is the read event of our eventfd connection.
    let fd = unsafe { (*(*ev).data.cast::<ngx_connection_t>()).fd };
    let mut n: u64 = 0;
    // SAFETY: draining the non-blocking eventfd (edge-triggered). Before the
    // replies are taken: a reply pushed after this wakes again.
    while unsafe { libc::read(fd, (&raw mut n).cast(), 8) } == 8 {}
    let mut replies = REPLIES.take();
    WORKER.with_borrow(|w| {
        if let Some(w) = w {
            w.client.take_replies(&mut replies);
        }
    });
    for reply in replies.drain(..) {
        handle(reply);
    }
    REPLIES.set(replies);
}

fn handle(reply: Reply) {
    let log = WORKER.with_borrow(|w| w.as_ref().map(|w| w.log));
    if let (Some(t), Some(log)) = (&reply.transition, log) {
        match t {
            Err(why) => {
                ngx_log_error!(NGX_LOG_ERR, log, "sessions: Redis is unavailable: {why}");
            }
            Ok(()) => {
                ngx_log_error!(NGX_LOG_NOTICE, log, "sessions: Redis is available again");
            }
        }
    }
    if reply.full {
        // SAFETY: the worker's own cycle, read on its nginx thread.
        if let Some(main) = unsafe { Module::main_conf(&*nginx_sys::ngx_cycle) } {
            if let Some(j) = &main.journal {
                j.report_full();
            }
        }
    }
    if let (Some(why), Some(log)) = (&reply.refused, log) {
        ngx_log_error!(NGX_LOG_ERR, log, "sessions: Redis refused a command: {why}");
    }
    if reply.token != 0 {
        WORKER.with_borrow_mut(|w| {
            if let Some(w) = w.as_mut() {
                count_outstanding(w, false);
            }
        });
    }
    match reply.token {
        0 | UNKEPT => {}
        LIMIT => limited(&reply.answer, log),
        ADOPT => {
            let waiting = WORKER.with_borrow_mut(|w| {
                let w = w.as_mut()?;
                w.adopt_in_flight = false;
                match reply.answer {
                    Answer::Adopted {
                        secret,
                        name,
                        replaced,
                    } => {
                        for key in replaced {
                            ngx_log_error!(
                                NGX_LOG_ERR,
                                w.log,
                                "sessions: the random secret or cookie name kept in Redis at \"{key}\" \
                                 is not one this module writes; replaced with a new one"
                            );
                        }
                        // SAFETY: the worker's own cycle; its main
                        // configuration is this process's memory and only
                        // this thread touches it.
                        let main = unsafe { Module::main_conf_mut(&*nginx_sys::ngx_cycle) };
                        if let (Some(main), Some(keys)) = (main, Keyring::from_secrets(&[&secret])) {
                            main.redis_random = Some((keys, name));
                        }
                        w.adopt_failed_at = None;
                    }
                    _ => w.adopt_failed_at = Some(crate::clock::now_ms()),
                }
                Some(std::mem::take(&mut w.waiting))
            });
            if let Some(forget) = WORKER.with_borrow(|w| w.as_ref().map(|w| w.on_adopted)) {
                forget();
            }
            for token in waiting.unwrap_or_default() {
                WORKER.with_borrow_mut(|w| {
                    if let Some(w) = w.as_mut() {
                        count_outstanding(w, false);
                    }
                });
                resume(token, Wake::Retry);
            }
        }
        token => resume(token, Wake::Answer(reply.answer)),
    }
}

/// Whether nginx is stopping fast (SIGTERM): the master kills workers
/// still there at about 1.5 s.
pub fn terminating() -> bool {
    // SAFETY: a flag nginx sets from its signal handler, read once here.
    unsafe { nginx_sys::ngx_terminate != 0 }
}
