//! The zone's state file (`sessions_zone ... state=FILE`): loaded by the
//! master when it makes a fresh zone, written by the master when nginx
//! stops, and by the first worker every `state_interval` from a thread of
//! its own, so that its event loop never waits for the disk. Every write
//! goes to a temporary file that is synced and then renamed over the old
//! one: a crash leaves the previous file whole.

use std::cell::{Cell, RefCell};
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use nginx_sys::{ngx_add_timer, ngx_cycle_t, ngx_event_t, ngx_log_t, NGX_LOG_ERR, NGX_LOG_NOTICE};
use ngx::ngx_log_error;
use sessions_core::primitives::id::RandomPool;
use sessions_core::stores::zone::state::{self, Snapshot};
use sessions_core::{Keyring, Table};

use crate::config::conf::{MainConf, StateConf};
use crate::zone::table::SharedTable;

/// Fills a freshly formatted table from the state file, if it opens; one
/// log line either way. The `random` secret and name come back with it.
pub fn load(conf: &StateConf, keys: &[Keyring], t: &mut Table<'_>, zone: &str, log: *mut ngx_log_t) {
    let path = conf.path.display();
    // A snapshot is smaller than the table it was taken of: a file much
    // larger was not written by this zone, and is not read into memory.
    let limit = 2 * t.bytes() as u64 + 4096;
    let bytes = match read_bounded(&conf.path, limit) {
        Ok(b) => b,
        Err(Unread::Missing) => {
            ngx_log_error!(
                NGX_LOG_NOTICE,
                log,
                "sessions zone \"{zone}\": no state file \"{path}\" yet, starting empty"
            );
            return;
        }
        Err(why) => {
            ngx_log_error!(
                NGX_LOG_ERR,
                log,
                "sessions zone \"{zone}\": state file \"{path}\" {why}; starting empty"
            );
            return;
        }
    };
    let snap = match state::open(&bytes, keys) {
        Ok(s) => s,
        Err(why) => {
            ngx_log_error!(
                NGX_LOG_ERR,
                log,
                "sessions zone \"{zone}\": state file \"{path}\" {why}; starting empty"
            );
            return;
        }
    };
    let now = crate::clock::now_ms();
    let h = t.header();
    h.random_secret = snap.random_secret;
    h.random_name = snap.random_name;
    let (mut loaded, mut without_data) = (0usize, 0usize);
    for s in snap.saved.iter().filter(|s| s.deadline.is_none_or(|d| d > now)) {
        if !t.restore(s, now) {
            without_data += 1;
        }
        loaded += 1;
    }
    ngx_log_error!(
        NGX_LOG_NOTICE,
        log,
        "sessions zone \"{zone}\": {loaded} sessions loaded from \"{path}\""
    );
    if without_data > 0 {
        ngx_log_error!(
            NGX_LOG_ERR,
            log,
            "sessions zone \"{zone}\": the data area is full; {without_data} sessions loaded without their data"
        );
    }
}

/// Why a state file was not read.
enum Unread {
    Missing,
    /// A FIFO, a device, a directory: nothing this module wrote.
    NotRegular,
    TooLarge,
    Io(std::io::Error),
}

impl std::fmt::Display for Unread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str("does not exist"),
            Self::NotRegular => f.write_str("is not a regular file"),
            Self::TooLarge => f.write_str("is larger than this zone could have written"),
            Self::Io(e) => write!(f, "cannot be read: {e}"),
        }
    }
}

/// The file at `path` if it is a regular file (a symlink to one counts) of
/// at most `limit` bytes. Opened without blocking, so that a FIFO there
/// cannot stall the master, and checked on the open descriptor; read no
/// further than the limit, whatever its size said.
fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, Unread> {
    use std::io::Read as _;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Unread::Missing,
            _ => Unread::Io(e),
        })?;
    let meta = file.metadata().map_err(Unread::Io)?;
    if !meta.file_type().is_file() {
        return Err(Unread::NotRegular);
    }
    if meta.len() > limit {
        return Err(Unread::TooLarge);
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(Unread::Io)?;
    if bytes.len() as u64 > limit {
        return Err(Unread::TooLarge);
    }
    Ok(bytes)
}

/// What the table holds now, taken under its lock.
fn snapshot(table: &SharedTable) -> Snapshot {
    let now = crate::clock::now_ms();
    table.with(|t| {
        let h = t.header();
        let (random_secret, random_name) = (h.random_secret, h.random_name);
        Snapshot {
            random_secret,
            random_name,
            saved: t.export(now),
        }
    })
}

/// Seals `snap` and replaces the file with it: a temporary file of this
/// process, owner-only, synced, renamed over the old one.
fn write(path: &Path, keys: &[Keyring], snap: &Snapshot) -> Result<usize, String> {
    let sealed = state::seal(snap, keys, &mut RandomPool::new()).map_err(|e| format!("{e}"))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&sealed)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok::<_, std::io::Error>(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("cannot write state file \"{}\": {e}", path.display())
    })?;
    Ok(snap.saved.len())
}

/// The master's write when nginx stops (`exit_master`): no worker is left.
pub fn save_at_exit(main: &MainConf, log: *mut ngx_log_t) {
    let (Some(conf), Some(table)) = (&main.state, main.table) else {
        return;
    };
    match write(&conf.path, &main.state_keys, &snapshot(&table)) {
        Ok(n) => {
            ngx_log_error!(
                NGX_LOG_NOTICE,
                log,
                "sessions zone \"{}\": {n} sessions saved to \"{}\"",
                table.zone_name(),
                conf.path.display()
            );
        }
        Err(why) => {
            ngx_log_error!(NGX_LOG_ERR, log, "sessions zone \"{}\": {why}", table.zone_name());
        }
    }
}

/// The first worker's periodic writer.
struct Periodic {
    conf: StateConf,
    keys: Vec<Keyring>,
    table: SharedTable,
    log: *mut ngx_log_t,
    /// A write is under way on its thread.
    busy: Arc<AtomicBool>,
    /// What the last finished write reported, not yet logged.
    outcome: Arc<Mutex<Option<Result<usize, String>>>>,
    /// The last write failed: only a change is logged.
    failing: Cell<bool>,
}

thread_local! {
    static PERIODIC: RefCell<Option<Periodic>> = const { RefCell::new(None) };
}

/// Arms the periodic write in the first worker (`init_process`).
pub fn start(cycle: *mut ngx_cycle_t, main: &MainConf) {
    let (Some(conf), Some(table)) = (&main.state, main.table) else {
        return;
    };
    // SAFETY: `ngx_worker` is this worker's number, set before init_process.
    if unsafe { nginx_sys::ngx_worker } != 0 {
        return;
    }
    // SAFETY: the cycle is live in init_process; its log outlives the worker.
    let log = unsafe { (*cycle).log };
    PERIODIC.set(Some(Periodic {
        conf: conf.clone(),
        keys: main.state_keys.clone(),
        table,
        log,
        busy: Arc::new(AtomicBool::new(false)),
        outcome: Arc::new(Mutex::new(None)),
        failing: Cell::new(false),
    }));
    // The event lives as long as the worker.
    let ev: &'static mut ngx_event_t = Box::leak(Box::new(
        // SAFETY: an all-zero event is nginx's own starting point (ngx_pcalloc).
        unsafe { std::mem::zeroed() },
    ));
    ev.handler = Some(tick);
    ev.log = log;
    // A graceful exit does not wait for it: the master writes at exit.
    ev.set_cancelable(1);
    // SAFETY: arming a timer on the worker's event loop with a live event.
    unsafe { ngx_add_timer(ev, conf.interval_ms as _) };
}

extern "C" fn tick(ev: *mut ngx_event_t) {
    let next = PERIODIC.with_borrow(|p| {
        let p = p.as_ref()?;
        report(p);
        if !p.busy.swap(true, Ordering::AcqRel) {
            let snap = snapshot(&p.table);
            let (path, keys) = (p.conf.path.clone(), p.keys.clone());
            let (busy, outcome) = (p.busy.clone(), p.outcome.clone());
            let spawned = crate::threads::spawn_quiet("sessions-state", move || {
                let r = write(&path, &keys, &snap);
                *outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                busy.store(false, Ordering::Release);
            });
            if let Err(why) = spawned {
                p.busy.store(false, Ordering::Release);
                ngx_log_error!(
                    NGX_LOG_ERR,
                    p.log,
                    "sessions: cannot start the state writer: {why}"
                );
            }
        }
        Some(p.conf.interval_ms)
    });
    // SAFETY: `ev` is the worker's own timer event; nginx is not exiting
    // (a cancelable timer does not fire then).
    if let (Some(ms), false) = (next, unsafe { nginx_sys::ngx_exiting } != 0) {
        // SAFETY: as above: the worker's own timer, re-armed on its thread.
        unsafe { ngx_add_timer(ev, ms as _) };
    }
}

/// Logs a failed write once, and the first success after failures.
fn report(p: &Periodic) {
    let Some(r) = p.outcome.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    let zone = p.table.zone_name();
    match r {
        Err(why) if !p.failing.replace(true) => {
            ngx_log_error!(NGX_LOG_ERR, p.log, "sessions zone \"{zone}\": {why}");
        }
        Ok(n) if p.failing.replace(false) => {
            ngx_log_error!(
                NGX_LOG_NOTICE,
                p.log,
                "sessions zone \"{zone}\": {n} sessions saved to \"{}\" again",
                p.conf.path.display()
            );
        }
        _ => {}
    }
}
