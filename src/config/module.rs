//! `Module`: how every file reaches the module's configurations. The
//! `ngx_module_t` itself is defined in `lib.rs` with the hooks it points
//! at; it is named here by its symbol, so that no file imports `lib.rs`.

use nginx_sys::ngx_module_t;
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf};

use crate::config::conf::{LocConf, MainConf};

extern "C" {
    /// Defined (`#[no_mangle]`) in `lib.rs`.
    #[allow(non_upper_case_globals)]
    pub static mut ngx_http_sessions_module: ngx_module_t;
}

pub struct Module;

impl HttpModule for Module {
    fn module() -> &'static ngx_module_t {
        // SAFETY: the module static is initialised before any hook runs.
        unsafe { &*std::ptr::addr_of!(ngx_http_sessions_module) }
    }
}

// SAFETY: the main configuration type is `MainConf`, created by `create_main_conf`.
unsafe impl HttpModuleMainConf for Module {
    type MainConf = MainConf;
}

// SAFETY: the location configuration type is `LocConf`, created by `create_loc_conf`.
unsafe impl HttpModuleLocationConf for Module {
    type LocationConf = LocConf;
}
