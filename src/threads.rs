//! Threads a worker starts (the Redis client, the state writer) must not
//! take nginx's signals: they are created with every signal blocked, as
//! nginx's own thread pools are.

/// Runs `f` (which starts threads) with every signal blocked in this thread,
/// so that the threads it starts inherit the mask; restores the mask after.
pub fn with_signals_blocked<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: signal-mask calls on this thread, restored below.
    let old = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    };
    let r = f();
    // SAFETY: restoring the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    r
}

/// Starts a named thread that takes no signal.
pub fn spawn_quiet(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), String> {
    with_signals_blocked(|| std::thread::Builder::new().name(name.into()).spawn(f))
        .map(drop)
        .map_err(|e| e.to_string())
}
