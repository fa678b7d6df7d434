//! Configuration: what the directives set, inheritance, and the per-location
//! values computed once at merge time so that requests only read them.

use std::path::PathBuf;
use std::ptr;

use nginx_sys::{ngx_http_complex_value_t, ngx_shm_zone_t};
use sessions_core::access::assertion::SigningKey;
use sessions_core::config::proxy::Cidr;
use sessions_core::config::redis_conf::{RedisSettings, Topology, Unavailable};
use sessions_core::engine::store::StoreKind;
use sessions_core::engine::{IpBinding, PerUser, UaBinding};
use sessions_core::{CookieAttrs, Keyring, Policy, SameSite, Secure, Timeouts};
use sessions_sidecar::oidc::OidcSettings;

/// `sessions_cookie_max_data` when not set.
pub const DEFAULT_COOKIE_MAX_DATA: usize = 4096;

/// `state=` and `state_interval=` of `sessions_zone`.
#[derive(Clone, Debug)]
pub struct StateConf {
    /// Absolute: relative names are resolved against nginx's prefix.
    pub path: PathBuf,
    pub interval_ms: u64,
}

/// How often the state file is written when `state_interval` is not given.
pub const DEFAULT_INTERVAL_MS: u64 = 10_000;

/// Where a location's secret comes from.
#[derive(Clone, Debug)]
pub enum SecretConf {
    /// Generated once per zone, kept across reloads.
    Random,
    /// Configured: the first signs, the rest still verify.
    Keys(Keyring),
}

/// `sessions_login_url`: a compiled complex value (it may hold variables).
#[derive(Clone, Copy, Debug)]
pub struct LoginUrl(pub *mut ngx_http_complex_value_t);

/// `sessions_oidc_*`: the OpenID Provider a location logs its visitors in with.
#[derive(Default, Clone)]
pub struct OidcConf {
    /// `Some(None)`: `off`.
    pub issuer: Option<Option<String>>,
    pub client_id: Option<String>,
    /// Read from `sessions_oidc_client_secret_file`.
    pub client_secret: Option<String>,
    pub redirect_uri: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub user_claim: Option<String>,
    pub claims: Option<Vec<String>>,
    pub timeout: Option<u64>,
    /// `sessions_oidc_post_logout_redirect_uri`.
    pub post_logout: Option<String>,
    /// `sessions_oidc_forward_token`.
    pub forward_token: Option<bool>,
}

/// `sessions_assertion_issuer` when not set.
pub const DEFAULT_ASSERTION_ISSUER: &str = "ngx-sessions";
/// `sessions_assertion_ttl` when not set.
pub const DEFAULT_ASSERTION_TTL_MS: u64 = 60_000;

/// `sessions_oidc_timeout` when not set.
pub const DEFAULT_OIDC_TIMEOUT_MS: u64 = 5_000;
/// How far the provider's clock may be from ours.
const OIDC_LEEWAY: std::time::Duration = std::time::Duration::from_secs(60);

// The client secret stays out of any debug output.
impl std::fmt::Debug for OidcConf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConf")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl OidcConf {
    fn merge(&mut self, prev: &OidcConf) {
        inherit(&mut self.issuer, &prev.issuer);
        inherit(&mut self.client_id, &prev.client_id);
        inherit(&mut self.client_secret, &prev.client_secret);
        inherit(&mut self.redirect_uri, &prev.redirect_uri);
        inherit(&mut self.scopes, &prev.scopes);
        inherit(&mut self.user_claim, &prev.user_claim);
        inherit(&mut self.claims, &prev.claims);
        inherit(&mut self.timeout, &prev.timeout);
        inherit(&mut self.post_logout, &prev.post_logout);
        inherit(&mut self.forward_token, &prev.forward_token);
    }

    /// `sessions_oidc_forward_token` (off when not set).
    pub fn forwards_token(&self) -> bool {
        self.forward_token == Some(true)
    }

    /// The relying party's settings, if an issuer is set: `Err` names the
    /// directive missing.
    pub fn settings(&self) -> Result<Option<OidcSettings>, &'static str> {
        let Some(Some(issuer)) = &self.issuer else {
            return Ok(None);
        };
        let client_id = self.client_id.clone().ok_or("sessions_oidc_client_id")?;
        let redirect_uri = self.redirect_uri.clone().ok_or("sessions_oidc_redirect_uri")?;
        Ok(Some(OidcSettings {
            issuer: issuer.clone(),
            client_id,
            client_secret: self.client_secret.clone(),
            redirect_uri,
            scopes: self.scopes.clone().unwrap_or_default(),
            user_claim: self.user_claim.clone().unwrap_or_else(|| "sub".into()),
            data_claims: self.claims.clone().unwrap_or_default(),
            timeout: std::time::Duration::from_millis(self.timeout.unwrap_or(DEFAULT_OIDC_TIMEOUT_MS)),
            leeway: OIDC_LEEWAY,
        }))
    }
}

/// Where a location's cookie name comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameConf {
    Random,
    Fixed(Vec<u8>),
}

/// `http`-level settings and the state shared with the zone.
pub struct MainConf {
    pub zone: *mut ngx_shm_zone_t,
    /// Some location switches sessions on: the zone must exist.
    pub sessions_on: bool,
    /// Some enabled location keeping its sessions in the zone uses a
    /// `random` secret or name.
    pub zone_random: bool,
    /// Filled in by the zone's init: keys and name behind `random`.
    pub random_keys: Option<Keyring>,
    pub random_name: Vec<u8>,
    /// The shared table, once the zone is initialised.
    pub table: Option<crate::zone::table::SharedTable>,
    /// The index of `$realip_remote_addr`, when the realip module is built in.
    pub realip_var: Option<usize>,
    /// Some `sessions_trusted_proxies` lists addresses: requests may read
    /// `$realip_remote_addr` (indexed only then: every indexed variable
    /// costs every request of the server its slot).
    pub proxies_trusted: bool,
    /// `sessions_zone ... state=FILE`.
    pub state: Option<StateConf>,
    /// The configured secrets in use, the `http` block's first: the first
    /// seals the state file, any opens it (none: `random`, kept in the
    /// file itself).
    pub state_keys: Vec<Keyring>,
    /// `sessions_redis_*` as configured.
    pub redis: RedisSettings,
    /// Some enabled location needs Redis (its store, or a cookie store's
    /// shared records): set at merge time, checked (and `topology`
    /// computed) in `init_main_conf`.
    pub redis_needed: bool,
    pub topology: Option<Topology>,
    /// Some Redis location uses a `random` secret or name: adopt them from Redis.
    pub redis_adopts_random: bool,
    /// Some Redis location uses a `random` secret, which Redis then holds.
    pub redis_holds_secret: bool,
    /// In a worker, the secret's keys and the name adopted from Redis.
    pub redis_random: Option<(Keyring, Vec<u8>)>,
    /// The Redis writes kept until acknowledged, once its zone is set up.
    pub journal: Option<std::sync::Arc<crate::zone::journal::SharedJournal>>,
    pub journal_plan: Option<sessions_core::stores::redis::journal::JournalPlan>,
    /// Every secret's keys a Redis location seals with, for the journal's flushers.
    pub redis_seals: Vec<sessions_core::model::keys::SealKeys>,
    /// Some cookie-store location shares its records of ended sessions
    /// through the configured Redis (`sessions_core::stores::zone::revoked`).
    pub cookie_records_shared: bool,
    /// Some enabled location stores sessions in Redis (`sessions_store redis`).
    pub redis_stores_sessions: bool,
    /// The OpenID Providers locations log visitors in with, each once.
    pub oidc: Vec<OidcSettings>,
    /// `sessions_assertion_key`: the first signs `$session_assertion`, all
    /// are published by `sessions_jwks`.
    pub assertion_keys: Vec<SigningKey>,
}

impl Default for MainConf {
    fn default() -> Self {
        Self {
            zone: ptr::null_mut(),
            sessions_on: false,
            zone_random: false,
            random_keys: None,
            random_name: Vec::new(),
            table: None,
            realip_var: None,
            proxies_trusted: false,
            state: None,
            state_keys: Vec::new(),
            redis: RedisSettings::default(),
            redis_needed: false,
            topology: None,
            redis_adopts_random: false,
            redis_holds_secret: false,
            redis_random: None,
            journal: None,
            journal_plan: None,
            redis_seals: Vec::new(),
            cookie_records_shared: false,
            redis_stores_sessions: false,
            oidc: Vec::new(),
            assertion_keys: Vec::new(),
        }
    }
}

impl MainConf {
    /// Whether a worker runs the side-car: for Redis, or for logins.
    pub fn sidecar_needed(&self) -> bool {
        self.redis_needed || !self.oidc.is_empty()
    }

    /// The index of `settings` among the providers, added if new.
    pub fn oidc_provider(&mut self, settings: OidcSettings) -> usize {
        let same = |s: &OidcSettings| {
            (&s.issuer, &s.client_id, &s.client_secret, &s.redirect_uri)
                == (
                    &settings.issuer,
                    &settings.client_id,
                    &settings.client_secret,
                    &settings.redirect_uri,
                )
                && (&s.scopes, &s.user_claim, &s.data_claims, s.timeout)
                    == (
                        &settings.scopes,
                        &settings.user_claim,
                        &settings.data_claims,
                        settings.timeout,
                    )
        };
        if let Some(i) = self.oidc.iter().position(same) {
            return i;
        }
        self.oidc.push(settings);
        self.oidc.len() - 1
    }

    /// Keeps `keys` among the secrets that open the state file, once.
    pub fn note_secret(&mut self, keys: &Keyring, first: bool) {
        let k = keys.primary().state_key();
        if let Some(i) = self.state_keys.iter().position(|s| s.primary().state_key() == k) {
            if first {
                let keys = self.state_keys.remove(i);
                self.state_keys.insert(0, keys);
            }
            return;
        }
        if first {
            self.state_keys.insert(0, keys.clone());
        } else {
            self.state_keys.push(keys.clone());
        }
    }
}

/// Per server / location settings: `None` means "inherit".
#[derive(Default, Debug)]
pub struct LocConf {
    pub enable: Option<bool>,
    pub secret: Option<SecretConf>,
    pub name: Option<NameConf>,
    pub idle: Option<u64>,
    pub rolling: Option<u64>,
    pub absolute: Option<u64>,
    pub grace: Option<u64>,
    pub remember: Option<u64>,
    /// Apply X-Session-* headers of upstream responses.
    pub control_headers: Option<bool>,
    /// `sessions_pass_cookie`: the session cookie goes upstream.
    pub pass_cookie: Option<bool>,
    /// Answer requests without a logged-in session with 401 or a redirect.
    pub require_login: Option<bool>,
    /// Where to send them; `None` inside means 401 only.
    pub login_url: Option<Option<LoginUrl>>,
    /// `sessions_logout URL`: where a logout redirects (this location only).
    pub logout_redirect: Option<LoginUrl>,
    /// `sessions` appears in this very block (not inherited).
    pub enable_here: bool,
    /// An operator endpoint (`sessions_status`, `sessions_admin`): no
    /// session unless this block says `sessions on` itself, so scrapes and
    /// admin calls do not fill the zone.
    pub endpoint: bool,
    /// This location is `sessions_logout` (not inherited).
    pub logout: bool,
    /// This location is `sessions_self` (not inherited).
    pub self_service: bool,
    pub check_ip: Option<IpBinding>,
    /// `sessions_max_per_user`.
    pub per_user: Option<PerUser>,
    pub check_ua: Option<UaBinding>,
    pub domain: Option<Option<String>>,
    pub path: Option<String>,
    pub secure: Option<Secure>,
    pub http_only: Option<bool>,
    pub same_site: Option<Option<SameSite>>,
    pub max_age: Option<Option<u64>>,
    /// `sessions_trusted_proxies`: peers whose `X-Forwarded-Proto` counts
    /// (empty: none, `off`).
    pub trusted: Option<Vec<Cidr>>,
    /// `sessions_store`.
    pub store: Option<StoreKind>,
    /// `sessions_cookie_max_data`: the most bytes of data a cookie-store
    /// session holds.
    pub cookie_max_data: Option<usize>,
    pub unavailable: Option<Unavailable>,
    pub oidc: OidcConf,
    /// `sessions_assertion_issuer`, `_audience` (`None` inside: the
    /// request's host), `_ttl`.
    pub assertion_issuer: Option<String>,
    pub assertion_audience: Option<String>,
    pub assertion_ttl: Option<u64>,
    /// This location is `sessions_oidc_callback` (not inherited).
    pub oidc_callback: bool,
    /// This location is `sessions_oidc_backchannel_logout` (not inherited).
    pub oidc_backchannel: bool,
    /// The location's OpenID Provider, by its index in `MainConf::oidc`
    /// (set at merge time).
    pub oidc_provider: Option<usize>,

    /// Computed by `finish` after merging.
    pub policy: Policy,
    pub attrs: CookieAttrs,
}

fn inherit<T: Clone>(child: &mut Option<T>, parent: &Option<T>) {
    if child.is_none() {
        child.clone_from(parent);
    }
}

impl LocConf {
    /// Fills unset values from the enclosing block.
    pub fn merge(&mut self, prev: &LocConf) {
        inherit(&mut self.enable, &prev.enable);
        if self.endpoint && !self.enable_here {
            self.enable = Some(false);
        }
        inherit(&mut self.secret, &prev.secret);
        inherit(&mut self.name, &prev.name);
        inherit(&mut self.idle, &prev.idle);
        inherit(&mut self.rolling, &prev.rolling);
        inherit(&mut self.absolute, &prev.absolute);
        inherit(&mut self.grace, &prev.grace);
        inherit(&mut self.remember, &prev.remember);
        inherit(&mut self.control_headers, &prev.control_headers);
        inherit(&mut self.pass_cookie, &prev.pass_cookie);
        inherit(&mut self.require_login, &prev.require_login);
        inherit(&mut self.login_url, &prev.login_url);
        inherit(&mut self.check_ip, &prev.check_ip);
        inherit(&mut self.per_user, &prev.per_user);
        inherit(&mut self.check_ua, &prev.check_ua);
        inherit(&mut self.domain, &prev.domain);
        inherit(&mut self.path, &prev.path);
        inherit(&mut self.secure, &prev.secure);
        inherit(&mut self.http_only, &prev.http_only);
        inherit(&mut self.same_site, &prev.same_site);
        inherit(&mut self.max_age, &prev.max_age);
        inherit(&mut self.trusted, &prev.trusted);
        inherit(&mut self.store, &prev.store);
        inherit(&mut self.cookie_max_data, &prev.cookie_max_data);
        inherit(&mut self.unavailable, &prev.unavailable);
        self.oidc.merge(&prev.oidc);
        inherit(&mut self.assertion_issuer, &prev.assertion_issuer);
        inherit(&mut self.assertion_audience, &prev.assertion_audience);
        inherit(&mut self.assertion_ttl, &prev.assertion_ttl);
        self.finish();
    }

    /// Computes the request-time values, applying defaults.
    pub fn finish(&mut self) {
        let d = Timeouts::default();
        let dp = Policy::default();
        self.policy = Policy {
            timeouts: Timeouts {
                idle: self.idle.unwrap_or(d.idle),
                rolling: self.rolling.unwrap_or(d.rolling),
                absolute: self.absolute.unwrap_or(d.absolute),
            },
            check_ip: self.check_ip.unwrap_or(dp.check_ip),
            check_ua: self.check_ua.unwrap_or(dp.check_ua),
            grace: self.grace.unwrap_or(dp.grace),
            remember: self.remember.unwrap_or(dp.remember),
            per_user: self.per_user,
        };
        let da = CookieAttrs::default();
        self.attrs = CookieAttrs {
            domain: self.domain.clone().unwrap_or(da.domain),
            path: self.path.clone().unwrap_or(da.path),
            secure: self.secure.unwrap_or(da.secure),
            http_only: self.http_only.unwrap_or(da.http_only),
            same_site: self.same_site.unwrap_or(da.same_site),
            max_age: self.max_age.unwrap_or(da.max_age),
        };
    }

    pub fn enabled(&self) -> bool {
        self.enable == Some(true)
    }

    pub fn trusted_proxies(&self) -> &[Cidr] {
        self.trusted.as_deref().unwrap_or_default()
    }

    pub fn pass_cookie(&self) -> bool {
        self.pass_cookie != Some(false)
    }

    pub fn control_headers(&self) -> bool {
        self.control_headers == Some(true)
    }

    pub fn require_login(&self) -> bool {
        self.require_login == Some(true)
    }

    pub fn uses_random(&self) -> bool {
        self.random_secret() || matches!(self.name, None | Some(NameConf::Random))
    }

    pub fn random_secret(&self) -> bool {
        matches!(self.secret, None | Some(SecretConf::Random))
    }

    pub fn store(&self) -> StoreKind {
        self.store.unwrap_or_default()
    }

    pub fn redis(&self) -> bool {
        self.store() == StoreKind::Redis
    }

    pub fn cookie(&self) -> bool {
        self.store() == StoreKind::Cookie
    }

    /// A cookie-store location whose records of ended sessions travel
    /// through the `http` block's Redis to every instance sharing it.
    pub fn cookie_records_shared(&self, main: &MainConf) -> bool {
        self.cookie() && main.redis.configured()
    }

    pub fn cookie_max_data(&self) -> usize {
        self.cookie_max_data.unwrap_or(DEFAULT_COOKIE_MAX_DATA)
    }

    /// The keys and cookie name for a request. `random` means the zone's
    /// values, or in a Redis location the values adopted from Redis (`None`
    /// until they are).
    pub fn keys_and_name<'a>(&'a self, main: &'a MainConf) -> Option<(&'a Keyring, &'a [u8])> {
        if self.redis() && self.uses_random() {
            let (k, n) = main.redis_random.as_ref()?;
            return Some(self.pick(k, n));
        }
        self.local_keys_and_name(main)
    }

    /// As `keys_and_name`, with `random` always the zone's values.
    pub fn local_keys_and_name<'a>(&'a self, main: &'a MainConf) -> Option<(&'a Keyring, &'a [u8])> {
        Some(self.pick(main.random_keys.as_ref()?, &main.random_name))
    }

    fn pick<'a>(&'a self, random_keys: &'a Keyring, random_name: &'a [u8]) -> (&'a Keyring, &'a [u8]) {
        let keys = match &self.secret {
            Some(SecretConf::Keys(k)) => k,
            _ => random_keys,
        };
        let name = match &self.name {
            Some(NameConf::Fixed(n)) => n.as_slice(),
            _ => random_name,
        };
        (keys, name)
    }
}
