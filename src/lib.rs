//! ngx_http_sessions_module: HTTP sessions for nginx.
//!
//! This file holds only the module static and the hooks nginx calls; the
//! rest is grouped by what it faces, each folder importing only those
//! before it here (`tests/layout.rs` checks that no folder imports one that
//! imports it back): `clock` and `threads`; `zone` (shared memory as a
//! worker holds it); `config` (what the directives set); `nginx` (the
//! request, its context, requests parked for the side-car, variables: the
//! request-time `unsafe`); `phases` (a request, one way: access, then the
//! header filter, through one store interface; no `unsafe`); `lifecycle`
//! (directives, zones created, the state file).
//! Redis itself is the `sessions-sidecar` crate's. Nothing imports this file.
//!
//! Every `unsafe` block says why it is sound in a `// SAFETY:` line.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::{c_char, c_void};
use std::ptr;

use nginx_sys::{
    ngx_array_push, ngx_conf_t, ngx_http_add_variable, ngx_http_handler_pt, ngx_http_module_t,
    ngx_http_output_header_filter_pt, ngx_http_phases_NGX_HTTP_ACCESS_PHASE, ngx_http_request_t,
    ngx_http_top_header_filter, ngx_int_t, ngx_module_t, ngx_str_t, NGX_HTTP_MODULE,
};
use ngx::core::{Status, NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule, Request};
use ngx::http_request_handler;

mod clock;
mod config;
mod lifecycle;
mod nginx;
// Request time builds on `nginx`, which holds its `unsafe`.
#[deny(unsafe_code)]
mod phases;
mod threads;
mod zone;

use config::conf::{LocConf, MainConf, SecretConf};
use config::module::Module;
use lifecycle::directives;
use lifecycle::state as zone_state;
use nginx::{park, variables};
use phases::{access, filter, remote};

/// The hooks `MODULE_CTX` names that `ngx`'s defaults do not cover.
struct Hooks;

impl Hooks {
    unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: the variable table is only touched here, single-threaded,
        // and `cf` is valid during configuration.
        for v in unsafe { (*ptr::addr_of_mut!(variables::VARIABLES)).iter_mut() } {
            // SAFETY: `cf` is valid during configuration; nginx copies the name.
            let var = unsafe { ngx_http_add_variable(cf, &mut v.name, v.flags) };
            // SAFETY: non-null results are nginx's variable entries.
            let Some(var) = (unsafe { var.as_mut() }) else {
                return Status::NGX_ERROR.into();
            };
            var.get_handler = v.get_handler;
            var.data = v.data;
        }
        Status::NGX_OK.into()
    }

    unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: `cf` is valid during configuration.
        let cf = unsafe { &mut *cf };
        if let Some(main) = Module::main_conf_mut(cf).filter(|m| m.redis_needed) {
            if main.redis_holds_secret {
                ngx::ngx_log_error!(
                    nginx_sys::NGX_LOG_WARN,
                    cf.log,
                    "sessions: \"sessions_secret random\" with \"sessions_store redis\" keeps the \
                     secret in Redis: whoever can read Redis can read the logged-in users and, with \
                     write access, forge sessions; set sessions_secret or sessions_secret_file"
                );
            }
            match main.redis.topology() {
                Ok(t) => main.topology = Some(t),
                Err(why) => {
                    ngx::ngx_conf_log_error!(nginx_sys::NGX_LOG_EMERG, cf, "{why}");
                    return Status::NGX_ERROR.into();
                }
            }
            let pending = main
                .redis
                .pending
                .unwrap_or(sessions_core::config::redis_conf::DEFAULT_PENDING);
            let main_ptr: *mut MainConf = main;
            // SAFETY: the main configuration outlives the zone it is handed to.
            if lifecycle::shm::add_journal(cf, unsafe { &mut *main_ptr }, pending).is_err() {
                return Status::NGX_ERROR.into();
            }
        }
        if let Some(flags) = Module::location_conf(cf).map(|lc| (lc.same_site, lc.secure)) {
            warn_samesite_none_without_secure(cf, flags);
        }
        // The `http` block's own secret, if any, seals the zone's state file.
        if let Some(SecretConf::Keys(keys)) = Module::location_conf(cf).and_then(|lc| lc.secret.clone()) {
            if let Some(main) = Module::main_conf_mut(cf) {
                main.note_secret(&keys, true);
            }
        }
        let Some(cmcf) = NgxHttpCoreModule::main_conf_mut(cf) else {
            return Status::NGX_ERROR.into();
        };
        // `sessions_trusted_proxies` checks the peer before realip replaced it.
        let trusted = Module::main_conf(cf).is_some_and(|m| m.proxies_trusted);
        if trusted && realip_built_in(cmcf) {
            let mut name = ngx_str_t {
                len: REALIP_VAR.len(),
                data: REALIP_VAR.as_ptr().cast_mut(),
            };
            // SAFETY: `cf` is valid; the variable exists (checked above).
            let index = unsafe { nginx_sys::ngx_http_get_variable_index(cf, &mut name) };
            if let (Ok(index), Some(main)) = (usize::try_from(index), Module::main_conf_mut(cf)) {
                main.realip_var = Some(index);
            }
        }
        let phase = &mut cmcf.phases[ngx_http_phases_NGX_HTTP_ACCESS_PHASE as usize].handlers;
        // SAFETY: pushing onto nginx's access-phase handler array.
        let h = unsafe { ngx_array_push(phase) }.cast::<ngx_http_handler_pt>();
        if h.is_null() {
            return Status::NGX_ERROR.into();
        }
        // SAFETY: `h` is a fresh element of the array; the filter chain is
        // rebuilt single-threaded on every configuration load.
        unsafe {
            *h = Some(access_handler);
            NEXT_HEADER_FILTER = ngx_http_top_header_filter;
            ngx_http_top_header_filter = Some(header_filter);
        }
        Status::NGX_OK.into()
    }

    unsafe extern "C" fn init_main_conf(cf: *mut ngx_conf_t, conf: *mut c_void) -> *mut c_char {
        // SAFETY: nginx passes a valid `cf` and our main configuration.
        let (cf, main) = unsafe { (&mut *cf, &mut *conf.cast::<MainConf>()) };
        if main.sessions_on && main.zone.is_null() {
            let (name, size) = directives::DEFAULT_ZONE;
            let name = ngx_str_t {
                len: name.len(),
                data: name.as_ptr().cast_mut(),
            };
            return lifecycle::shm::add_zone(cf, main, name, size);
        }
        NGX_CONF_OK
    }
}

/// Merges a block with its parent and records whether `random` is in use.
unsafe extern "C" fn merge_loc_conf(
    cf: *mut ngx_conf_t,
    prev: *mut c_void,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes two of our location configurations and a valid `cf`.
    let (cf, prev, conf) = unsafe { (&mut *cf, &*prev.cast::<LocConf>(), &mut *conf.cast::<LocConf>()) };
    let sets_cookie_flags = conf.same_site.is_some() || conf.secure.is_some();
    conf.merge(prev);
    if sets_cookie_flags {
        warn_samesite_none_without_secure(cf, (conf.same_site, conf.secure));
    }
    if conf.oidc_callback && !conf.enabled() {
        ngx::ngx_conf_log_error!(
            nginx_sys::NGX_LOG_EMERG,
            cf,
            "\"sessions_oidc_callback\" needs \"sessions on\": the login is bound to the session that began it"
        );
        return NGX_CONF_ERROR;
    }
    // Any location with a provider: a logged-in session's tokens are
    // refreshed (and forwarded) wherever it goes.
    let with_provider = matches!(conf.oidc.issuer, Some(Some(_))) || conf.oidc.forwards_token();
    let uses_oidc =
        conf.enabled() && (conf.require_login() || conf.oidc_callback || conf.logout || with_provider);
    if uses_oidc || conf.oidc_backchannel {
        if let Err(why) = register_oidc(cf, conf) {
            ngx::ngx_conf_log_error!(nginx_sys::NGX_LOG_EMERG, cf, "{why}");
            return NGX_CONF_ERROR;
        }
    }
    if conf.enabled() {
        let Some(main) = Module::main_conf_mut(cf) else {
            return NGX_CONF_ERROR;
        };
        main.zone_random |= conf.uses_random() && !conf.redis();
        let shared = conf.cookie_records_shared(main);
        main.cookie_records_shared |= shared;
        main.redis_needed |= conf.redis() || shared;
        main.redis_stores_sessions |= conf.redis();
        main.redis_adopts_random |= conf.redis() && conf.uses_random();
        main.redis_holds_secret |= conf.redis() && conf.random_secret();
        if let Some(SecretConf::Keys(keys)) = &conf.secret {
            main.note_secret(keys, false);
            if conf.redis() || shared {
                for k in keys.iter() {
                    if !main.redis_seals.iter().any(|s| s.tag() == k.seal().tag()) {
                        main.redis_seals.push(k.seal().clone());
                    }
                }
            }
        }
    }
    NGX_CONF_OK
}

/// Gives a location that logs visitors in through an OpenID Provider its
/// provider's index; `Err` says what the configuration lacks.
fn register_oidc(cf: &mut ngx_conf_t, conf: &mut LocConf) -> Result<(), String> {
    let settings = match conf.oidc.settings() {
        Ok(Some(s)) => s,
        Ok(None) if conf.oidc_callback => {
            return Err("\"sessions_oidc_callback\" needs \"sessions_oidc_issuer\"".into());
        }
        Ok(None) if conf.oidc_backchannel => {
            return Err("\"sessions_oidc_backchannel_logout\" needs \"sessions_oidc_issuer\"".into());
        }
        Ok(None) if conf.oidc.forwards_token() => {
            return Err("\"sessions_oidc_forward_token\" needs \"sessions_oidc_issuer\"".into());
        }
        Ok(None) => return Ok(()),
        Err(missing) => return Err(format!("\"sessions_oidc_issuer\" needs \"{missing}\"")),
    };
    if conf.attrs.same_site == Some(sessions_core::SameSite::Strict) {
        return Err("\"sessions_oidc_issuer\" needs \"sessions_cookie_samesite lax\" or \"none\": the provider sends \
                    the browser back with a cross-site navigation, which carries no SameSite=Strict cookie"
            .into());
    }
    if settings.data_claims.len() > sessions_core::model::data::MAX_KEYS {
        return Err(format!(
            "\"sessions_oidc_claims\" lists more than {} claims, the most a session keeps",
            sessions_core::model::data::MAX_KEYS
        ));
    }
    let main = Module::main_conf_mut(cf).ok_or("no main configuration")?;
    conf.oidc_provider = Some(main.oidc_provider(settings));
    Ok(())
}

/// Browsers refuse `SameSite=None` without `Secure`, so the module sends
/// it anyway: said once, where the block that asks for both is.
fn warn_samesite_none_without_secure(
    cf: &mut ngx_conf_t,
    (same_site, secure): (
        Option<Option<sessions_core::SameSite>>,
        Option<sessions_core::Secure>,
    ),
) {
    if same_site == Some(Some(sessions_core::SameSite::None)) && secure == Some(sessions_core::Secure::Off) {
        ngx::ngx_conf_log_error!(
            nginx_sys::NGX_LOG_WARN,
            cf,
            "\"sessions_cookie_samesite none\" needs the Secure attribute, which browsers \
             require: the cookie is sent with Secure despite \"sessions_cookie_secure off\""
        );
    }
}

http_request_handler!(access_handler, access::access);

static MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(Hooks::preconfiguration),
    postconfiguration: Some(Hooks::postconfiguration),
    create_main_conf: Some(Module::create_main_conf),
    init_main_conf: Some(Hooks::init_main_conf),
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(Module::create_loc_conf),
    merge_loc_conf: Some(merge_loc_conf),
};

#[cfg(feature = "export-modules")]
ngx::ngx_modules!(ngx_http_sessions_module);

#[used]
#[allow(non_upper_case_globals)]
// Always by this name: `config::module` refers to it by its symbol.
#[no_mangle]
pub static mut ngx_http_sessions_module: ngx_module_t = ngx_module_t {
    ctx: ptr::addr_of!(MODULE_CTX) as _,
    // SAFETY: taking the address of the command table, not reading it.
    commands: unsafe { ptr::addr_of_mut!(directives::COMMANDS[0]) },
    type_: NGX_HTTP_MODULE as _,
    init_process: Some(init_process),
    exit_process: Some(exit_process),
    exit_master: Some(exit_master),
    ..ngx_module_t::default()
};

extern "C" fn init_process(cycle: *mut nginx_sys::ngx_cycle_t) -> ngx_int_t {
    phases::cookies::init_worker();
    // SAFETY: nginx passes the live cycle; `ngx_process` is set before
    // init_process runs.
    let (cycle_ref, process) = unsafe { (&*cycle, nginx_sys::ngx_process as u32) };
    let worker = process == nginx_sys::NGX_PROCESS_WORKER;
    // With `master_process off` the single process serves requests as a
    // worker does, so it runs the Redis client too. (Not the state writer:
    // that process also writes the file as it exits.)
    let serves = worker || process == nginx_sys::NGX_PROCESS_SINGLE;
    if let Some(main) = Module::main_conf(cycle_ref).filter(|_| worker) {
        zone_state::start(cycle, main);
    }
    if let Some(main) = Module::main_conf(cycle_ref).filter(|m| serves && m.sidecar_needed()) {
        let redis = main.topology.as_ref().filter(|_| main.redis_needed);
        if redis.is_some() || !main.oidc.is_empty() {
            let setup = sessions_sidecar::Setup {
                journal: main
                    .journal
                    .clone()
                    .map(|j| j as std::sync::Arc<dyn sessions_sidecar::PendingWrites>),
                records: main
                    .table
                    .filter(|_| main.cookie_records_shared)
                    .map(|t| std::sync::Arc::new(t) as std::sync::Arc<dyn sessions_sidecar::SharedRecords>),
                near: main
                    .redis
                    .near_cache
                    .or(Some(sessions_core::config::redis_conf::DEFAULT_NEAR_CACHE))
                    .filter(|&n| main.redis_stores_sessions && n > 0)
                    .map(|n| {
                        std::sync::Arc::new(std::sync::Mutex::new(
                            sessions_core::stores::redis::near_cache::NearCache::new(n as usize),
                        ))
                    }),
                seals: main.redis_seals.clone(),
            };
            if let Err(why) = park::start(
                cycle,
                redis.map(|t| (&main.redis, t)),
                main.oidc.clone(),
                main.redis_adopts_random,
                setup,
                phases::cookies::forget_verified,
            ) {
                ngx::ngx_log_error!(
                    nginx_sys::NGX_LOG_ALERT,
                    cycle_ref.log,
                    "sessions: cannot start the side-car: {why}; Redis locations answer as if Redis were \
                     down, OpenID Connect logins with 503"
                );
            }
        }
    }
    Status::NGX_OK.into()
}

/// A worker leaves (a stop or a reload): writes still waiting for Redis
/// are given a moment to get there, since a stopped nginx keeps none.
extern "C" fn exit_process(cycle: *mut nginx_sys::ngx_cycle_t) {
    // SAFETY: nginx passes its live cycle.
    let cycle = unsafe { &*cycle };
    if let Some(main) = Module::main_conf(cycle).filter(|m| m.redis_needed) {
        remote::drain_at_exit(main);
    }
}

/// nginx is stopping and every worker is gone: the master writes the
/// zone's state file.
extern "C" fn exit_master(cycle: *mut nginx_sys::ngx_cycle_t) {
    // SAFETY: nginx passes its live cycle; the zone is still mapped.
    let cycle = unsafe { &*cycle };
    if let Some(main) = Module::main_conf(cycle) {
        zone_state::save_at_exit(main, cycle.log);
    }
}

const REALIP_VAR: &[u8] = b"realip_remote_addr";

/// Whether nginx has `$realip_remote_addr` (the realip module), asked of
/// the variable names declared so far (all of them, at postconfiguration).
fn realip_built_in(cmcf: &nginx_sys::ngx_http_core_main_conf_t) -> bool {
    // SAFETY: during configuration `variables_keys` holds the declared
    // names, an array of `ngx_hash_key_t`.
    unsafe {
        let Some(keys) = cmcf.variables_keys.as_ref() else {
            return false;
        };
        let names: &[nginx_sys::ngx_hash_key_t] = keys.keys.as_slice();
        names.iter().any(|k| k.key.as_bytes() == REALIP_VAR)
    }
}

/// The filter that was on top of nginx's header filter chain before ours.
static mut NEXT_HEADER_FILTER: ngx_http_output_header_filter_pt = None;

/// The header filter (see `phases::filter`), then the next one in nginx's chain.
extern "C" fn header_filter(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls header filters with a live request.
    let req = unsafe { Request::from_ngx_http_request(r) };
    if filter::on_headers(req).is_err() {
        return Status::NGX_ERROR.into();
    }
    // SAFETY: set once in postconfiguration to the filter that was on top.
    match unsafe { NEXT_HEADER_FILTER } {
        // SAFETY: calling the next filter in nginx's chain with the same request.
        Some(next) => unsafe { next(r) },
        None => Status::NGX_OK.into(),
    }
}
