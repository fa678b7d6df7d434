//! The one interface every phase uses for the request's store: the zone
//! (`decide::Zone`), Redis (`remote::Redis`) or the cookie itself
//! (`cookie_store::Cookie`). `access::store_of` chooses it, once per
//! request, from the location's `sessions_store` when the access phase
//! starts; the context keeps which store holds the session (a Redis
//! location keeps the sessions it started while Redis was down in the
//! zone), and the header filter, `sessions_logout` and `sessions_admin` go
//! through the same.

use nginx_sys::{ngx_str_t, NGX_LOG_ERR};
use ngx::core::Status;
use ngx::http::Request;
use ngx::ngx_log_error;
use sessions_core::access::admin::AdminRequest;
use sessions_core::engine::store::{Store, StoreKind};
use sessions_core::primitives::id::RandomPool;
use sessions_core::{Keyring, Record, SessionId};

use crate::config::conf::{LocConf, MainConf};
use crate::nginx::request::Ctx;
use crate::phases::cookies;

/// What runs over the session's store: the store, the worker's random
/// pool and its data buffer.
pub type Work<'a> = &'a mut dyn FnMut(&mut dyn Store, &mut RandomPool, &mut Vec<u8>);

pub trait SessionStore: Sync {
    /// What the request context records of it.
    fn kind(&self) -> StoreKind;

    /// The access phase: the session the request presents, decided.
    fn access(&self, r: &mut Request, lc: &LocConf, main: &MainConf) -> Status;

    /// Runs `f` over the store holding `ctx`'s session, then keeps what it
    /// changed there; `false` when there is no such store (no zone).
    fn with_session(&self, main: &MainConf, lc: &LocConf, ctx: &Ctx, now: u64, f: Work<'_>) -> bool;

    /// The `Set-Cookie` value(s) for `ctx`'s session, in the request pool.
    fn session_cookie(
        &self,
        r: &mut Request,
        lc: &LocConf,
        keys: &Keyring,
        name: &[u8],
        ctx: &Ctx,
    ) -> Option<ngx_str_t> {
        cookies::id_cookie(r, lc, keys, name, ctx)
    }

    /// The `Set-Cookie` value(s) that delete it; `chunks`: the chunk
    /// cookies the request carried (the cookie store).
    fn deleted_cookie(&self, r: &mut Request, lc: &LocConf, name: &[u8], _chunks: u8) -> Option<ngx_str_t> {
        cookies::deleted_id_cookie(r, lc, name)
    }

    /// After the upstream changed the session's data: what the response
    /// must carry for it (the cookie store seals its cookie again).
    fn data_changed(&self, _r: &mut Request, _lc: &LocConf, _main: &MainConf, _ctx: &mut Ctx) -> Option<()> {
        Some(())
    }

    /// Logs that the session's data had no room.
    fn data_full(&self, r: &Request, _lc: &LocConf) {
        ngx_log_error!(
            NGX_LOG_ERR,
            r.log(),
            "sessions: the zone's data area is full; session data not stored"
        );
    }

    /// `sessions_logout` when the access phase could not decide (Redis
    /// unavailable): ends the presented session anyway; `Err` with the
    /// answer when it cannot.
    fn end_undecided(&self, _r: &mut Request, _lc: &LocConf, _main: &MainConf) -> Result<(), Status> {
        Ok(())
    }

    /// `sessions_admin`: lists or revokes sessions, and answers.
    fn admin(&self, r: &mut Request, lc: &LocConf, main: &MainConf, req: AdminRequest) -> Status;

    /// After a login: keeps the user within `sessions_max_per_user` where
    /// the engine could not count their sessions at once (Redis).
    fn after_login(&self, _r: &Request, _lc: &LocConf, _main: &MainConf, _id: SessionId, _rec: &Record) {}

    /// A revocation the response does not wait for (`X-Session-Logout-Others`).
    fn revoke_unanswered(&self, r: &Request, lc: &LocConf, main: &MainConf, req: AdminRequest);
}

impl dyn SessionStore {
    /// Ends `ctx`'s session in this store and has the response delete its
    /// cookie: what `sessions_logout` and a refused token refresh do.
    /// `Some(true)` when the store held it; `None` when out of memory.
    pub fn end(&self, r: &mut Request, lc: &LocConf, main: &MainConf, mut ctx: Ctx) -> Option<bool> {
        let Some((_, name)) = lc.keys_and_name(main) else {
            return Some(false);
        };
        let now = crate::clock::now_ms();
        let id = ctx.id;
        let done = self.on_session(main, lc, &ctx, now, |t, rng, _| {
            sessions_core::apply(t, &id, sessions_core::Control::Destroy, now, &lc.policy, rng)
        });
        ctx.set_cookie = self.deleted_cookie(r, lc, name, ctx.chunks)?;
        ctx.cookie_sent = false;
        ctx.user = ngx_str_t::default();
        crate::nginx::request::put_ctx(r, &ctx)?;
        Some(matches!(done, Some(Ok(_))))
    }

    /// Runs `f` over the store holding `ctx`'s session (see `with_session`).
    pub fn on_session<R>(
        &self,
        main: &MainConf,
        lc: &LocConf,
        ctx: &Ctx,
        now: u64,
        f: impl FnOnce(&mut dyn Store, &mut RandomPool, &mut Vec<u8>) -> R,
    ) -> Option<R> {
        let mut f = Some(f);
        let mut out = None;
        self.with_session(main, lc, ctx, now, &mut |t, rng, data| {
            if let Some(f) = f.take() {
                out = Some(f(t, rng, data));
            }
        });
        out
    }
}
