//! The directive table and its handlers. Every handler does the same four
//! steps: duplicate check, read the arguments, parse with a plain function
//! from `sessions_core::config::parse`, report with nginx's wording.

use std::ffi::{c_char, c_void};
use std::path::PathBuf;
use std::ptr;

use nginx_sys::{
    ngx_command_t, ngx_conf_t, ngx_http_compile_complex_value, ngx_http_compile_complex_value_t,
    ngx_http_complex_value_t, ngx_pcalloc, ngx_str_t, ngx_uint_t, NGX_CONF_1MORE, NGX_CONF_FLAG,
    NGX_CONF_NOARGS, NGX_CONF_TAKE1, NGX_CONF_TAKE12, NGX_CONF_TAKE123, NGX_HTTP_LOC_CONF,
    NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_SRV_CONF,
    NGX_LOG_EMERG, NGX_LOG_WARN,
};
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};
use ngx::{ngx_conf_log_error, ngx_string};
use sessions_core::access::assertion::SigningKey;
use sessions_core::config::oidc_conf;
use sessions_core::config::parse::{self, Reason, ZoneParam};
use sessions_core::config::proxy::Cidr;
use sessions_core::config::redis_conf::{self, DEFAULT_PORT, DEFAULT_SENTINEL_PORT};
use sessions_core::Keyring;

use crate::config::conf::{LocConf, LoginUrl, MainConf, NameConf, SecretConf, StateConf};
use crate::config::module::Module;

/// Smallest zone: limit_req's rule of eight pages leaves room for the table.
const MIN_ZONE_SIZE: usize = 32 * 1024;
/// `sessions_zone` when none is configured.
pub const DEFAULT_ZONE: (&str, usize) = ("sessions", 10 << 20);

/// The one gate through which directive code reads `ngx_conf_t`.
trait ConfExt {
    fn args(&self) -> &[ngx_str_t];
    fn invalid(&mut self, value: &ngx_str_t, reason: Reason) -> *mut c_char;
}

impl ConfExt for ngx_conf_t {
    fn args(&self) -> &[ngx_str_t] {
        // SAFETY: during a directive handler `args` is the array of the
        // directive's words, allocated by nginx, the directive name first.
        unsafe { (*self.args).as_slice() }
    }

    fn invalid(&mut self, value: &ngx_str_t, reason: Reason) -> *mut c_char {
        let name = self.args()[0];
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            self,
            "invalid value \"{value}\" in \"{name}\" directive, {reason}"
        );
        NGX_CONF_ERROR
    }
}

const DUPLICATE: *mut c_char = c"is duplicate".as_ptr().cast_mut();

/// Sets `slot` from the single argument, or reports why not.
fn set_value<T>(
    cf: &mut ngx_conf_t,
    slot: &mut Option<T>,
    parse: impl Fn(&[u8]) -> Result<T, Reason>,
) -> *mut c_char {
    if slot.is_some() {
        return DUPLICATE;
    }
    let value = cf.args()[1];
    match parse(value.as_bytes()) {
        Ok(v) => {
            *slot = Some(v);
            NGX_CONF_OK
        }
        Err(reason) => cf.invalid(&value, reason),
    }
}

/// Handlers for directives that take one value into one field of the
/// configuration `$conf` that nginx hands them (`LocConf`, or `MainConf` for
/// the `http`-level Redis settings).
macro_rules! value_directive {
    ($conf:ty => $($handler:ident: $($field:ident).+ = $parse:expr;)+) => {$(
        extern "C" fn $handler(
            cf: *mut ngx_conf_t,
            _cmd: *mut ngx_command_t,
            conf: *mut c_void,
        ) -> *mut c_char {
            // SAFETY: nginx passes a valid `cf` and this module's
            // configuration of the type the command's offset names.
            let (cf, conf) = unsafe { (&mut *cf, &mut *conf.cast::<$conf>()) };
            set_value(cf, &mut conf.$($field).+, $parse)
        }
    )+};
}

value_directive! {
    LocConf =>
    set_store: store = redis_conf::store;
    set_cookie_max_data: cookie_max_data = cookie_max_data;
    set_unavailable: unavailable = redis_conf::unavailable;
    set_idle: idle = parse::time_ms;
    set_rolling: rolling = parse::time_ms;
    set_absolute: absolute = parse::time_ms;
    set_grace: grace = parse::time_ms;
    set_remember: remember = parse::positive_time_ms;
    set_control_headers: control_headers = parse::flag;
    set_pass_cookie: pass_cookie = parse::flag;
    set_require_login: require_login = parse::flag;
    set_domain: domain = parse::domain;
    set_path: path = parse::path;
    set_secure: secure = parse::secure;
    set_http_only: http_only = parse::flag;
    set_same_site: same_site = parse::same_site;
    set_max_age: max_age = parse::max_age;
    set_oidc_issuer: oidc.issuer = |v| match v {
        b"off" => Ok(None),
        v => oidc_conf::issuer(v).map(Some),
    };
    set_oidc_client_id: oidc.client_id = oidc_conf::client_id;
    set_oidc_redirect_uri: oidc.redirect_uri = oidc_conf::redirect_uri;
    set_oidc_user_claim: oidc.user_claim = oidc_conf::user_claim;
    set_oidc_timeout: oidc.timeout = parse::timeout_ms;
    set_oidc_post_logout: oidc.post_logout = oidc_conf::redirect_uri;
    set_oidc_forward_token: oidc.forward_token = parse::flag;
    set_assertion_issuer: assertion_issuer = |v| parse::claim_value(v).map(String::from);
    set_assertion_audience: assertion_audience = |v| parse::claim_value(v).map(String::from);
    set_assertion_ttl: assertion_ttl = parse::assertion_ttl;
}

/// Handlers for directives whose words are parsed together into one field
/// of `LocConf`; the parser names the word it refused.
macro_rules! words_directive {
    ($($handler:ident: $field:ident = $parse:expr;)+) => {$(
        extern "C" fn $handler(
            cf: *mut ngx_conf_t,
            _cmd: *mut ngx_command_t,
            conf: *mut c_void,
        ) -> *mut c_char {
            // SAFETY: as in `value_directive!`.
            let (cf, conf) = unsafe { (&mut *cf, &mut *conf.cast::<LocConf>()) };
            if conf.$field.is_some() {
                return DUPLICATE;
            }
            let args = cf.args().to_vec();
            let words: Vec<&[u8]> = args[1..].iter().map(|w| w.as_bytes()).collect();
            match $parse(&words) {
                Ok(v) => {
                    conf.$field = Some(v);
                    NGX_CONF_OK
                }
                Err((at, reason)) => cf.invalid(&args[at.clamp(1, args.len() - 1)], reason),
            }
        }
    )+};
}

words_directive! {
    set_check_ip: check_ip = parse::ip_binding;
    set_check_ua: check_ua = parse::ua_binding;
    set_per_user: per_user = parse::max_per_user;
}

/// Handlers for directives that take a list of values into one field.
macro_rules! list_directive {
    ($($handler:ident: $($field:ident).+ = $parse:expr;)+) => {$(
        extern "C" fn $handler(
            cf: *mut ngx_conf_t,
            _cmd: *mut ngx_command_t,
            conf: *mut c_void,
        ) -> *mut c_char {
            // SAFETY: as in `value_directive!`.
            let (cf, conf) = unsafe { (&mut *cf, &mut *conf.cast::<LocConf>()) };
            if conf.$($field).+.is_some() {
                return DUPLICATE;
            }
            let mut out = Vec::new();
            for value in cf.args()[1..].to_vec() {
                match $parse(value.as_bytes()) {
                    Ok(v) => out.push(v),
                    Err(reason) => return cf.invalid(&value, reason),
                }
            }
            conf.$($field).+ = Some(out);
            NGX_CONF_OK
        }
    )+};
}

list_directive! {
    set_oidc_scopes: oidc.scopes = oidc_conf::scope;
    set_oidc_claims: oidc.claims = oidc_conf::data_claim;
}

/// `sessions_oidc_client_secret_file FILE`: the client secret, the file's
/// first line, read at configuration time; errors never quote it.
extern "C" fn set_oidc_client_secret_file(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `value_directive!`.
    let (cf, conf) = unsafe { (&mut *cf, &mut *conf.cast::<LocConf>()) };
    if conf.oidc.client_secret.is_some() {
        return DUPLICATE;
    }
    let value = cf.args()[1];
    let read =
        read_conf_file(cf, &value).and_then(|text| oidc_conf::client_secret(&text).map_err(String::from));
    match read {
        Ok(secret) => {
            if world_readable(cf, &value) {
                ngx_conf_log_error!(
                    NGX_LOG_WARN,
                    cf,
                    "\"sessions_oidc_client_secret_file\" directive: \"{value}\" can be read by any user"
                );
            }
            conf.oidc.client_secret = Some(secret);
            NGX_CONF_OK
        }
        Err(why) => {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "\"sessions_oidc_client_secret_file\" directive: \"{value}\": {why}"
            );
            NGX_CONF_ERROR
        }
    }
}

value_directive! {
    MainConf =>
    set_redis_server: redis.server = |v| redis_conf::address(v, DEFAULT_PORT);
    set_redis_sentinel_master: redis.sentinel_master = redis_conf::word;
    set_redis_database: redis.database = redis_conf::database;
    set_redis_username: redis.username = redis_conf::word;
    set_redis_password: redis.password = redis_conf::word;
    set_redis_sentinel_username: redis.sentinel_username = redis_conf::word;
    set_redis_sentinel_password: redis.sentinel_password = redis_conf::word;
    set_redis_tls: redis.tls = parse::flag;
    set_redis_tls_verify: redis.tls_verify = parse::flag;
    set_redis_tls_server_name: redis.tls_server_name = redis_conf::word;
    set_redis_connect_timeout: redis.connect_timeout = parse::timeout_ms;
    set_redis_timeout: redis.timeout = parse::timeout_ms;
    set_redis_prefix: redis.prefix = redis_conf::prefix;
    set_redis_pending: redis.pending = redis_conf::pending;
    set_redis_near_cache: redis.near_cache = redis_conf::near_cache;
}

/// `name` as is when absolute, else after `prefix` (which ends in `/`).
fn under(prefix: ngx_str_t, name: &str) -> String {
    if name.starts_with('/') {
        name.to_string()
    } else {
        format!("{prefix}{name}")
    }
}

/// A file named in a directive, relative to the configuration prefix.
fn conf_path(cf: &ngx_conf_t, value: &ngx_str_t) -> String {
    // SAFETY: the cycle under configuration and its prefix are valid.
    under(unsafe { (*cf.cycle).conf_prefix }, &value.to_string())
}

/// Reads a file named in a directive, relative to the configuration prefix.
fn read_conf_file(cf: &ngx_conf_t, value: &ngx_str_t) -> Result<Vec<u8>, String> {
    let path = conf_path(cf, value);
    std::fs::read(&path).map_err(|e| format!("cannot read \"{path}\": {e}"))
}

/// Handlers for directives naming a file whose contents are kept.
macro_rules! redis_file_directive {
    ($($handler:ident: $field:ident = $parse:expr;)+) => {$(
        extern "C" fn $handler(
            cf: *mut ngx_conf_t,
            _cmd: *mut ngx_command_t,
            conf: *mut c_void,
        ) -> *mut c_char {
            // SAFETY: as in `value_directive!`.
            let (cf, conf) = unsafe { (&mut *cf, &mut *conf.cast::<MainConf>()) };
            if conf.redis.$field.is_some() {
                return DUPLICATE;
            }
            let value = cf.args()[1];
            let parsed = read_conf_file(cf, &value).and_then(|b| $parse(b).map_err(String::from));
            match parsed {
                Ok(v) => {
                    conf.redis.$field = Some(v);
                    NGX_CONF_OK
                }
                Err(why) => {
                    let name = cf.args()[0];
                    ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"{name}\" directive: {why}");
                    NGX_CONF_ERROR
                }
            }
        }
    )+};
}

fn pem(b: Vec<u8>) -> Result<Vec<u8>, Reason> {
    if b.windows(11).any(|w| w == b"-----BEGIN ") {
        Ok(b)
    } else {
        Err("the file is not in PEM format")
    }
}

redis_file_directive! {
    set_redis_password_file: password = |b: Vec<u8>| redis_conf::password_file_contents(&b);
    set_redis_tls_trusted: tls_trusted_certificate = pem;
    set_redis_tls_certificate: tls_certificate = pem;
    set_redis_tls_certificate_key: tls_certificate_key = pem;
}

/// `sessions_redis_sentinel` and `sessions_redis_cluster`: a list of nodes.
fn set_nodes(cf: *mut ngx_conf_t, conf: *mut c_void, sentinel: bool) -> *mut c_char {
    // SAFETY: as in `value_directive!`.
    let (cf, conf) = unsafe { (&mut *cf, &mut *conf.cast::<MainConf>()) };
    let slot = if sentinel {
        &mut conf.redis.sentinels
    } else {
        &mut conf.redis.cluster
    };
    if slot.is_some() {
        return DUPLICATE;
    }
    let port = if sentinel {
        DEFAULT_SENTINEL_PORT
    } else {
        DEFAULT_PORT
    };
    let mut nodes = Vec::new();
    for i in 1..cf.args().len() {
        let a = cf.args()[i];
        match redis_conf::address(a.as_bytes(), port) {
            Ok(n) => nodes.push(n),
            Err(reason) => return cf.invalid(&a, reason),
        }
    }
    *slot = Some(nodes);
    NGX_CONF_OK
}

extern "C" fn set_redis_sentinel(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    set_nodes(cf, conf, true)
}

extern "C" fn set_redis_cluster(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    set_nodes(cf, conf, false)
}

/// `sessions_redis_tls_protocols TLSv1.2 TLSv1.3;`
extern "C" fn set_redis_tls_protocols(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `value_directive!`.
    let (cf, conf) = unsafe { (&mut *cf, &mut *conf.cast::<MainConf>()) };
    if conf.redis.tls_protocols.is_some() {
        return DUPLICATE;
    }
    let mut protocols = redis_conf::TlsProtocols::default();
    for i in 1..cf.args().len() {
        let a = cf.args()[i];
        if let Err(reason) = protocols.add(a.as_bytes()) {
            return cf.invalid(&a, reason);
        }
    }
    conf.redis.tls_protocols = Some(protocols);
    NGX_CONF_OK
}

extern "C" fn set_redis_connections(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `value_directive!`.
    let (cf, conf) = unsafe { (&mut *cf, &mut *conf.cast::<MainConf>()) };
    if conf.redis.connections.is_some() {
        return DUPLICATE;
    }
    let args = cf.args().to_vec();
    match redis_conf::connections(args[1].as_bytes(), args.get(2).map(|a| a.as_bytes())) {
        Ok(c) => {
            conf.redis.connections = Some(c);
            NGX_CONF_OK
        }
        Err(reason) => cf.invalid(&args[1], reason),
    }
}

extern "C" fn set_enable(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: as in `value_directive!`.
    let (cf, conf) = unsafe { (&mut *cf, &mut *conf.cast::<LocConf>()) };
    let rv = set_value(cf, &mut conf.enable, parse::flag);
    conf.enable_here = true;
    if conf.enable == Some(true) {
        if let Some(main) = Module::main_conf_mut(cf) {
            main.sessions_on = true;
        }
    }
    rv
}

extern "C" fn set_secret(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: as in `value_directive!`.
    let (cf, conf) = unsafe { (&mut *cf, &mut *conf.cast::<LocConf>()) };
    if conf.secret.is_some() {
        return DUPLICATE;
    }
    let args = &cf.args()[1..];
    if args.len() == 1 && args[0].as_bytes() == b"random" {
        conf.secret = Some(SecretConf::Random);
        return NGX_CONF_OK;
    }
    let mut secrets = Vec::with_capacity(args.len());
    for a in args {
        let a = *a;
        if a.as_bytes() == b"random" {
            return cf.invalid(&a, "\"random\" cannot be combined with other secrets");
        }
        match parse::secret(a.as_bytes()) {
            Ok(s) => secrets.push(s.to_vec()),
            Err(reason) => return cf.invalid(&a, reason),
        }
    }
    if secrets.iter().any(|s| s.len() < parse::SHORT_SECRET) {
        warn_short_secret(cf, "sessions_secret");
    }
    conf.secret = Keyring::from_secrets(&secrets).map(SecretConf::Keys);
    NGX_CONF_OK
}

/// A secret anyone could guess in time; not refused (tests and demos use
/// short ones), but said at every configuration load.
fn warn_short_secret(cf: &mut ngx_conf_t, directive: &str) {
    ngx_conf_log_error!(
        NGX_LOG_WARN,
        cf,
        "\"{directive}\" directive: a secret has fewer than {} characters; use a long random \
         one, such as the output of \"openssl rand -hex 32\"",
        parse::SHORT_SECRET
    );
}

/// `sessions_secret_file FILE`: the secrets, one a line (the first signs),
/// read by the master at configuration time. Errors name the line, never
/// its contents.
extern "C" fn set_secret_file(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `value_directive!`.
    let (cf, conf) = unsafe { (&mut *cf, &mut *conf.cast::<LocConf>()) };
    if conf.secret.is_some() {
        return DUPLICATE;
    }
    let value = cf.args()[1];
    let read = read_conf_file(cf, &value).and_then(|text| {
        let secrets = parse::secret_file(&text).map_err(|(line, why)| format!("line {line}: {why}"))?;
        let short = secrets.iter().any(|s| s.len() < parse::SHORT_SECRET);
        Keyring::from_secrets(&secrets)
            .map(|k| (k, short))
            .ok_or_else(|| "no secret in it".to_string())
    });
    match read {
        Ok((keys, short)) => {
            if short {
                warn_short_secret(cf, "sessions_secret_file");
            }
            if world_readable(cf, &value) {
                ngx_conf_log_error!(
                    NGX_LOG_WARN,
                    cf,
                    "\"sessions_secret_file\" directive: \"{value}\" can be read by any user"
                );
            }
            conf.secret = Some(SecretConf::Keys(keys));
            NGX_CONF_OK
        }
        Err(why) => {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "\"sessions_secret_file\" directive: \"{value}\": {why}"
            );
            NGX_CONF_ERROR
        }
    }
}

fn world_readable(cf: &ngx_conf_t, value: &ngx_str_t) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(conf_path(cf, value)).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

/// `sessions_trusted_proxies off | ADDRESS ...`.
extern "C" fn set_trusted_proxies(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `value_directive!`.
    let (cf, conf) = unsafe { (&mut *cf, &mut *conf.cast::<LocConf>()) };
    if conf.trusted.is_some() {
        return DUPLICATE;
    }
    let args = &cf.args()[1..];
    if args.len() == 1 && args[0].as_bytes() == b"off" {
        conf.trusted = Some(Vec::new());
        return NGX_CONF_OK;
    }
    let mut nets = Vec::with_capacity(args.len());
    for a in args {
        let a = *a;
        match Cidr::parse(a.as_bytes()) {
            Ok(c) => nets.push(c),
            Err(reason) => return cf.invalid(&a, reason),
        }
    }
    conf.trusted = Some(nets);
    // Only then does a request read `$realip_remote_addr` (see postconfiguration).
    if let Some(main) = Module::main_conf_mut(cf) {
        main.proxies_trusted = true;
    }
    NGX_CONF_OK
}

extern "C" fn set_name(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: as in `value_directive!`.
    let (cf, conf) = unsafe { (&mut *cf, &mut *conf.cast::<LocConf>()) };
    set_value(cf, &mut conf.name, |v| {
        if v == b"random" {
            Ok(NameConf::Random)
        } else {
            parse::cookie_name(v).map(|n| NameConf::Fixed(n.to_vec()))
        }
    })
}

extern "C" fn set_zone(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx passes a valid `cf` and this module's main configuration.
    let (cf, main) = unsafe { (&mut *cf, &mut *conf.cast::<MainConf>()) };
    if !main.zone.is_null() {
        return DUPLICATE;
    }
    let value = cf.args()[1];
    let (name, size) = match parse::zone(value.as_bytes()) {
        Ok(v) => v,
        Err(reason) => return cf.invalid(&value, reason),
    };
    if size < MIN_ZONE_SIZE {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "zone \"{value}\" is too small, at least 32k is needed"
        );
        return NGX_CONF_ERROR;
    }
    let name = ngx_str_t {
        len: name.len(),
        data: value.data,
    };
    let (mut file, mut interval) = (None::<Vec<u8>>, None);
    for a in &cf.args()[2..] {
        let a = *a;
        match parse::zone_param(a.as_bytes()) {
            Ok(ZoneParam::State(f)) if file.is_none() => file = Some(f.to_vec()),
            Ok(ZoneParam::Interval(ms)) if interval.is_none() => interval = Some(ms),
            Ok(_) => return cf.invalid(&a, "it is given twice"),
            Err(reason) => return cf.invalid(&a, reason),
        }
    }
    if let Some(file) = file {
        // Data, like `pid` and logs: relative to nginx's prefix.
        // SAFETY: the cycle under configuration and its prefix are valid.
        let path = under(unsafe { (*cf.cycle).prefix }, &String::from_utf8_lossy(&file));
        main.state = Some(StateConf {
            path: PathBuf::from(path),
            interval_ms: interval.unwrap_or(crate::config::conf::DEFAULT_INTERVAL_MS),
        });
    } else if interval.is_some() {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"state_interval\" needs \"state\"");
        return NGX_CONF_ERROR;
    }
    crate::lifecycle::shm::add_zone(cf, main, name, size)
}

/// Compiles a value that may contain variables.
fn compile(cf: &mut ngx_conf_t, value: &ngx_str_t) -> Option<LoginUrl> {
    // SAFETY: allocating from the configuration pool, then compiling with
    // nginx's own compiler, which only reads `value` and fills `cv`.
    unsafe {
        let cv =
            ngx_pcalloc(cf.pool, size_of::<ngx_http_complex_value_t>()).cast::<ngx_http_complex_value_t>();
        if cv.is_null() {
            return None;
        }
        let mut value = *value;
        let mut ccv: ngx_http_compile_complex_value_t = std::mem::zeroed();
        ccv.cf = cf;
        ccv.value = &mut value;
        ccv.complex_value = cv;
        (ngx_http_compile_complex_value(&mut ccv) == 0).then_some(LoginUrl(cv))
    }
}

extern "C" fn set_login_url(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: as in `value_directive!`.
    let (cf, conf) = unsafe { (&mut *cf, &mut *conf.cast::<LocConf>()) };
    if conf.login_url.is_some() {
        return DUPLICATE;
    }
    let value = cf.args()[1];
    if value.as_bytes() == b"off" {
        conf.login_url = Some(None);
        return NGX_CONF_OK;
    }
    if value.is_empty() {
        return cf.invalid(&value, "it must be \"off\" or a URL");
    }
    match compile(cf, &value) {
        Some(url) => {
            conf.login_url = Some(Some(url));
            NGX_CONF_OK
        }
        None => NGX_CONF_ERROR,
    }
}

extern "C" fn set_logout(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: as in `value_directive!`.
    let (cf, conf) = unsafe { (&mut *cf, &mut *conf.cast::<LocConf>()) };
    conf.logout = true;
    if let Some(url) = cf.args().get(1).copied() {
        match compile(cf, &url) {
            Some(url) => conf.logout_redirect = Some(url),
            None => return NGX_CONF_ERROR,
        }
    }
    set_content_handler(cf, crate::phases::access::LOGOUT)
}

type ContentHandler = unsafe extern "C" fn(*mut nginx_sys::ngx_http_request_t) -> nginx_sys::ngx_int_t;

/// Makes `handler` the location's content handler; it needs the zone even
/// where no location switches sessions on.
fn set_content_handler(cf: *mut ngx_conf_t, handler: ContentHandler) -> *mut c_char {
    let rc = install_handler(cf, handler);
    if rc != NGX_CONF_OK {
        return rc;
    }
    // SAFETY: nginx passes a valid `cf` to directive handlers.
    match Module::main_conf_mut(unsafe { &mut *cf }) {
        Some(main) => main.sessions_on = true,
        None => return NGX_CONF_ERROR,
    }
    NGX_CONF_OK
}

/// Makes `handler` the location's content handler.
fn install_handler(cf: *mut ngx_conf_t, handler: ContentHandler) -> *mut c_char {
    // SAFETY: nginx passes a valid `cf` to directive handlers.
    let cf = unsafe { &mut *cf };
    let Some(clcf) = NgxHttpCoreModule::location_conf_mut(cf) else {
        return NGX_CONF_ERROR;
    };
    if clcf.handler.is_some() {
        return c"conflicts with another content handler in this location"
            .as_ptr()
            .cast_mut();
    }
    clcf.handler = Some(handler);
    NGX_CONF_OK
}

extern "C" fn set_oidc_callback(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `value_directive!`.
    unsafe { (*conf.cast::<LocConf>()).oidc_callback = true };
    set_content_handler(cf, crate::phases::oidc_callback::CALLBACK)
}

extern "C" fn set_oidc_backchannel(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `value_directive!`.
    unsafe {
        let conf = &mut *conf.cast::<LocConf>();
        conf.oidc_backchannel = true;
        // Called by the provider, not a browser: no session of its own.
        conf.endpoint = true;
    }
    set_content_handler(cf, crate::phases::oidc_callback::BACKCHANNEL)
}

/// `sessions_assertion_key FILE ...`: the first signs, all are published.
extern "C" fn set_assertion_key(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in `value_directive!`, with `MainConf`.
    let (cf, conf) = unsafe { (&mut *cf, &mut *conf.cast::<MainConf>()) };
    if !conf.assertion_keys.is_empty() {
        return DUPLICATE;
    }
    for i in 1..cf.args().len() {
        let value = cf.args()[i];
        let key =
            read_conf_file(cf, &value).and_then(|text| SigningKey::from_pem(&text).map_err(String::from));
        match key {
            Ok(key) if conf.assertion_keys.iter().any(|k| k.kid() == key.kid()) => {
                ngx_conf_log_error!(
                    NGX_LOG_EMERG,
                    cf,
                    "\"sessions_assertion_key\" directive: \"{value}\" holds a key given before"
                );
                return NGX_CONF_ERROR;
            }
            Ok(key) => {
                if world_readable(cf, &value) {
                    ngx_conf_log_error!(
                        NGX_LOG_WARN,
                        cf,
                        "\"sessions_assertion_key\" directive: \"{value}\" can be read by any user"
                    );
                }
                conf.assertion_keys.push(key);
            }
            Err(why) => {
                ngx_conf_log_error!(
                    NGX_LOG_EMERG,
                    cf,
                    "\"sessions_assertion_key\" directive: \"{value}\": {why}"
                );
                return NGX_CONF_ERROR;
            }
        }
    }
    NGX_CONF_OK
}

/// `sessions_jwks`: the assertion keys as a JWK Set. It needs no zone.
extern "C" fn set_jwks(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: as in `value_directive!`.
    unsafe { (*conf.cast::<LocConf>()).endpoint = true };
    install_handler(cf, crate::phases::assertion::JWKS)
}

extern "C" fn set_status(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: as in `value_directive!`.
    unsafe { (*conf.cast::<LocConf>()).endpoint = true };
    set_content_handler(cf, crate::phases::status::STATUS)
}

/// `sessions_self`: the logged-in user's own sessions. The location keeps
/// its session (it is who asks).
extern "C" fn set_self(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: as in `value_directive!`.
    unsafe { (*conf.cast::<LocConf>()).self_service = true };
    set_content_handler(cf, crate::phases::admin::ADMIN)
}

extern "C" fn set_admin(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: as in `value_directive!`.
    unsafe { (*conf.cast::<LocConf>()).endpoint = true };
    set_content_handler(cf, crate::phases::admin::ADMIN)
}

const ANY_LEVEL: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;

/// A directive valid in `http` only, for the Redis connection settings.
const fn redis_command(name: ngx_str_t, args: u32, set: Handler) -> ngx_command_t {
    directive(name, NGX_HTTP_MAIN_CONF, args, NGX_HTTP_MAIN_CONF_OFFSET, set)
}

type Handler = unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char;

/// A directive of `contexts` whose handler receives the configuration at `conf`.
const fn directive(name: ngx_str_t, contexts: u32, args: u32, conf: usize, set: Handler) -> ngx_command_t {
    ngx_command_t {
        name,
        type_: (contexts | args) as ngx_uint_t,
        set: Some(set),
        conf,
        offset: 0,
        post: ptr::null_mut(),
    }
}

/// A directive valid in `http`, `server` and `location`.
const fn command(name: ngx_str_t, args: u32, set: Handler) -> ngx_command_t {
    directive(name, ANY_LEVEL, args, NGX_HTTP_LOC_CONF_OFFSET, set)
}

/// A directive valid in `location` only.
const fn location_command(name: ngx_str_t, args: u32, set: Handler) -> ngx_command_t {
    directive(name, NGX_HTTP_LOC_CONF, args, NGX_HTTP_LOC_CONF_OFFSET, set)
}

pub static mut COMMANDS: [ngx_command_t; 72] = [
    command(ngx_string!("sessions"), NGX_CONF_FLAG, set_enable),
    command(ngx_string!("sessions_secret"), NGX_CONF_1MORE, set_secret),
    command(
        ngx_string!("sessions_secret_file"),
        NGX_CONF_TAKE1,
        set_secret_file,
    ),
    command(ngx_string!("sessions_name"), NGX_CONF_TAKE1, set_name),
    command(ngx_string!("sessions_idling_timeout"), NGX_CONF_TAKE1, set_idle),
    command(
        ngx_string!("sessions_rolling_timeout"),
        NGX_CONF_TAKE1,
        set_rolling,
    ),
    command(
        ngx_string!("sessions_absolute_timeout"),
        NGX_CONF_TAKE1,
        set_absolute,
    ),
    command(ngx_string!("sessions_renewal_grace"), NGX_CONF_TAKE1, set_grace),
    command(ngx_string!("sessions_check_ip"), NGX_CONF_TAKE123, set_check_ip),
    command(
        ngx_string!("sessions_check_user_agent"),
        NGX_CONF_TAKE12,
        set_check_ua,
    ),
    command(ngx_string!("sessions_cookie_domain"), NGX_CONF_TAKE1, set_domain),
    command(ngx_string!("sessions_cookie_path"), NGX_CONF_TAKE1, set_path),
    command(ngx_string!("sessions_cookie_secure"), NGX_CONF_TAKE1, set_secure),
    command(
        ngx_string!("sessions_cookie_httponly"),
        NGX_CONF_TAKE1,
        set_http_only,
    ),
    command(
        ngx_string!("sessions_cookie_samesite"),
        NGX_CONF_TAKE1,
        set_same_site,
    ),
    command(
        ngx_string!("sessions_cookie_max_age"),
        NGX_CONF_TAKE1,
        set_max_age,
    ),
    command(
        ngx_string!("sessions_remember_timeout"),
        NGX_CONF_TAKE1,
        set_remember,
    ),
    command(
        ngx_string!("sessions_control_headers"),
        NGX_CONF_TAKE1,
        set_control_headers,
    ),
    command(
        ngx_string!("sessions_require_login"),
        NGX_CONF_TAKE1,
        set_require_login,
    ),
    command(ngx_string!("sessions_login_url"), NGX_CONF_TAKE1, set_login_url),
    command(
        ngx_string!("sessions_pass_cookie"),
        NGX_CONF_TAKE1,
        set_pass_cookie,
    ),
    command(
        ngx_string!("sessions_trusted_proxies"),
        NGX_CONF_1MORE,
        set_trusted_proxies,
    ),
    location_command(
        ngx_string!("sessions_logout"),
        NGX_CONF_NOARGS | NGX_CONF_TAKE1,
        set_logout,
    ),
    location_command(ngx_string!("sessions_admin"), NGX_CONF_NOARGS, set_admin),
    location_command(ngx_string!("sessions_status"), NGX_CONF_NOARGS, set_status),
    location_command(ngx_string!("sessions_jwks"), NGX_CONF_NOARGS, set_jwks),
    location_command(ngx_string!("sessions_self"), NGX_CONF_NOARGS, set_self),
    command(
        ngx_string!("sessions_max_per_user"),
        NGX_CONF_TAKE12,
        set_per_user,
    ),
    directive(
        ngx_string!("sessions_assertion_key"),
        NGX_HTTP_MAIN_CONF,
        NGX_CONF_1MORE,
        NGX_HTTP_MAIN_CONF_OFFSET,
        set_assertion_key,
    ),
    command(
        ngx_string!("sessions_assertion_issuer"),
        NGX_CONF_TAKE1,
        set_assertion_issuer,
    ),
    command(
        ngx_string!("sessions_assertion_audience"),
        NGX_CONF_TAKE1,
        set_assertion_audience,
    ),
    command(
        ngx_string!("sessions_assertion_ttl"),
        NGX_CONF_TAKE1,
        set_assertion_ttl,
    ),
    directive(
        ngx_string!("sessions_zone"),
        NGX_HTTP_MAIN_CONF,
        NGX_CONF_TAKE123,
        NGX_HTTP_MAIN_CONF_OFFSET,
        set_zone,
    ),
    command(ngx_string!("sessions_store"), NGX_CONF_TAKE1, set_store),
    command(
        ngx_string!("sessions_cookie_max_data"),
        NGX_CONF_TAKE1,
        set_cookie_max_data,
    ),
    command(
        ngx_string!("sessions_redis_unavailable"),
        NGX_CONF_TAKE1,
        set_unavailable,
    ),
    redis_command(
        ngx_string!("sessions_redis_server"),
        NGX_CONF_TAKE1,
        set_redis_server,
    ),
    redis_command(
        ngx_string!("sessions_redis_sentinel"),
        NGX_CONF_1MORE,
        set_redis_sentinel,
    ),
    redis_command(
        ngx_string!("sessions_redis_sentinel_master"),
        NGX_CONF_TAKE1,
        set_redis_sentinel_master,
    ),
    redis_command(
        ngx_string!("sessions_redis_sentinel_username"),
        NGX_CONF_TAKE1,
        set_redis_sentinel_username,
    ),
    redis_command(
        ngx_string!("sessions_redis_sentinel_password"),
        NGX_CONF_TAKE1,
        set_redis_sentinel_password,
    ),
    redis_command(
        ngx_string!("sessions_redis_cluster"),
        NGX_CONF_1MORE,
        set_redis_cluster,
    ),
    redis_command(
        ngx_string!("sessions_redis_pending"),
        NGX_CONF_TAKE1,
        set_redis_pending,
    ),
    redis_command(
        ngx_string!("sessions_redis_near_cache"),
        NGX_CONF_TAKE1,
        set_redis_near_cache,
    ),
    redis_command(
        ngx_string!("sessions_redis_database"),
        NGX_CONF_TAKE1,
        set_redis_database,
    ),
    redis_command(
        ngx_string!("sessions_redis_username"),
        NGX_CONF_TAKE1,
        set_redis_username,
    ),
    redis_command(
        ngx_string!("sessions_redis_password"),
        NGX_CONF_TAKE1,
        set_redis_password,
    ),
    redis_command(
        ngx_string!("sessions_redis_password_file"),
        NGX_CONF_TAKE1,
        set_redis_password_file,
    ),
    redis_command(ngx_string!("sessions_redis_tls"), NGX_CONF_TAKE1, set_redis_tls),
    redis_command(
        ngx_string!("sessions_redis_tls_verify"),
        NGX_CONF_TAKE1,
        set_redis_tls_verify,
    ),
    redis_command(
        ngx_string!("sessions_redis_tls_trusted_certificate"),
        NGX_CONF_TAKE1,
        set_redis_tls_trusted,
    ),
    redis_command(
        ngx_string!("sessions_redis_tls_certificate"),
        NGX_CONF_TAKE1,
        set_redis_tls_certificate,
    ),
    redis_command(
        ngx_string!("sessions_redis_tls_certificate_key"),
        NGX_CONF_TAKE1,
        set_redis_tls_certificate_key,
    ),
    redis_command(
        ngx_string!("sessions_redis_tls_protocols"),
        NGX_CONF_1MORE,
        set_redis_tls_protocols,
    ),
    redis_command(
        ngx_string!("sessions_redis_tls_server_name"),
        NGX_CONF_TAKE1,
        set_redis_tls_server_name,
    ),
    redis_command(
        ngx_string!("sessions_redis_connect_timeout"),
        NGX_CONF_TAKE1,
        set_redis_connect_timeout,
    ),
    redis_command(
        ngx_string!("sessions_redis_timeout"),
        NGX_CONF_TAKE1,
        set_redis_timeout,
    ),
    redis_command(
        ngx_string!("sessions_redis_connections"),
        NGX_CONF_TAKE12,
        set_redis_connections,
    ),
    redis_command(
        ngx_string!("sessions_redis_prefix"),
        NGX_CONF_TAKE1,
        set_redis_prefix,
    ),
    command(
        ngx_string!("sessions_oidc_issuer"),
        NGX_CONF_TAKE1,
        set_oidc_issuer,
    ),
    command(
        ngx_string!("sessions_oidc_client_id"),
        NGX_CONF_TAKE1,
        set_oidc_client_id,
    ),
    command(
        ngx_string!("sessions_oidc_client_secret_file"),
        NGX_CONF_TAKE1,
        set_oidc_client_secret_file,
    ),
    command(
        ngx_string!("sessions_oidc_redirect_uri"),
        NGX_CONF_TAKE1,
        set_oidc_redirect_uri,
    ),
    command(
        ngx_string!("sessions_oidc_scopes"),
        NGX_CONF_1MORE,
        set_oidc_scopes,
    ),
    command(
        ngx_string!("sessions_oidc_user_claim"),
        NGX_CONF_TAKE1,
        set_oidc_user_claim,
    ),
    command(
        ngx_string!("sessions_oidc_claims"),
        NGX_CONF_1MORE,
        set_oidc_claims,
    ),
    command(
        ngx_string!("sessions_oidc_timeout"),
        NGX_CONF_TAKE1,
        set_oidc_timeout,
    ),
    location_command(
        ngx_string!("sessions_oidc_callback"),
        NGX_CONF_NOARGS,
        set_oidc_callback,
    ),
    command(
        ngx_string!("sessions_oidc_post_logout_redirect_uri"),
        NGX_CONF_TAKE1,
        set_oidc_post_logout,
    ),
    location_command(
        ngx_string!("sessions_oidc_backchannel_logout"),
        NGX_CONF_NOARGS,
        set_oidc_backchannel,
    ),
    command(
        ngx_string!("sessions_oidc_forward_token"),
        NGX_CONF_TAKE1,
        set_oidc_forward_token,
    ),
    ngx_command_t::empty(),
];

/// `sessions_cookie_max_data`: a size up to what the cookie store can seal.
fn cookie_max_data(v: &[u8]) -> Result<usize, Reason> {
    match parse::size(v)? {
        n if n > sessions_core::stores::cookie::MAX_DATA => {
            Err("it must be at most 4656 (16 keys of 32 bytes, values of 256)")
        }
        n => Ok(n),
    }
}
