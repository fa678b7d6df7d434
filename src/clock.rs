//! The time every part of the module reads: nginx's cached clock.

use nginx_sys::ngx_timeofday;

/// Now, in Unix milliseconds, from nginx's cached clock (no system call).
pub fn now_ms() -> u64 {
    let t = ngx_timeofday();
    (t.sec as u64) * 1000 + t.msec as u64
}
