//! `sessions_status`: the zone's counters in Prometheus text format.

use std::fmt::Write;

use ngx::core::Status;
use ngx::http::{HTTPStatus, HttpModuleMainConf, Request};
use sessions_core::engine::store::OidcOutcome;
use sessions_core::stores::redis::journal::JournalStats;
use sessions_core::stores::zone::table::Stats;

use crate::config::module::Module;
use crate::nginx::request;

/// What one scrape reports.
struct Snapshot {
    zone: String,
    active: u32,
    capacity: u32,
    stats: Stats,
    /// The Redis journal: writes waiting, and its counters.
    pending: Option<(u32, JournalStats)>,
}

/// A label value as the text format writes it: `\`, `"` and line feeds escaped.
fn label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn render(s: &Snapshot) -> String {
    let z = &label_value(&s.zone);
    let mut out = String::with_capacity(2048);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP nginx_sessions_{name} {help}");
        let _ = writeln!(out, "# TYPE nginx_sessions_{name} {kind}");
        for (labels, v) in samples {
            let sep = if labels.is_empty() { "" } else { "," };
            let _ = writeln!(out, "nginx_sessions_{name}{{zone=\"{z}\"{sep}{labels}}} {v}");
        }
    };
    let st = &s.stats;
    metric(
        "active",
        "gauge",
        "Sessions stored in the zone.",
        &[("", s.active.into())],
    );
    metric(
        "capacity",
        "gauge",
        "Sessions the zone can hold.",
        &[("", s.capacity.into())],
    );
    metric(
        "created_total",
        "counter",
        "Sessions created.",
        &[("", st.created)],
    );
    metric(
        "renewed_total",
        "counter",
        "Session ids renewed (rolling timeout).",
        &[("", st.renewed)],
    );
    metric(
        "evicted_total",
        "counter",
        "Valid sessions evicted from a full zone: seen once, or returning (came back or logged in).",
        &[
            ("kind=\"once\"", st.evicted - st.evicted_returning),
            ("kind=\"returning\"", st.evicted_returning),
        ],
    );
    metric(
        "expired_total",
        "counter",
        "Sessions that ended by timeout: presented after it, or reclaimed unused.",
        &[
            ("reason=\"idle\"", st.expired_idle),
            ("reason=\"rolling\"", st.expired_rolling),
            ("reason=\"absolute\"", st.expired_absolute),
            ("reason=\"reclaimed\"", st.expired),
        ],
    );
    metric(
        "logins_total",
        "counter",
        "Sessions logged in by an application.",
        &[("", st.logins)],
    );
    metric(
        "logouts_total",
        "counter",
        "Logged-in sessions ended (logout endpoint or application).",
        &[("", st.logouts)],
    );
    metric(
        "refused_total",
        "counter",
        "Presented cookies refused for other reasons than time.",
        &[
            ("reason=\"invalid\"", st.refused_invalid),
            ("reason=\"unknown\"", st.refused_unknown),
            ("reason=\"ended\"", st.refused_ended),
            ("reason=\"ip_mismatch\"", st.refused_ip),
            ("reason=\"ua_mismatch\"", st.refused_ua),
        ],
    );
    metric(
        "user_limit_total",
        "counter",
        "sessions_max_per_user: sessions ended to keep a user within the limit, logins refused.",
        &[
            ("action=\"ended\"", st.limit_ended),
            ("action=\"refused\"", st.limit_refused),
        ],
    );
    metric(
        "tolerated_total",
        "counter",
        "Differences from a session's client let through by a check in log mode.",
        &[
            ("reason=\"ip_mismatch\"", st.tolerated_ip),
            ("reason=\"ua_mismatch\"", st.tolerated_ua),
        ],
    );
    metric(
        "redis_unavailable_total",
        "counter",
        "Requests Redis could not serve (unreachable, or refusing commands), by what they got.",
        &[
            ("action=\"refused\"", st.redis_refused),
            ("action=\"local\"", st.redis_local),
        ],
    );
    let oidc = |o: OidcOutcome| st.oidc[o as usize];
    metric(
        "oidc_logins_total",
        "counter",
        "OpenID Connect logins (and logouts sent on to the provider), by how they ended.",
        &[
            ("result=\"logged_in\"", oidc(OidcOutcome::LoggedIn)),
            ("result=\"provider_failed\"", oidc(OidcOutcome::ProviderFailed)),
            ("result=\"callback_refused\"", oidc(OidcOutcome::CallbackRefused)),
            ("result=\"token_refused\"", oidc(OidcOutcome::TokenRefused)),
            ("result=\"busy\"", oidc(OidcOutcome::Busy)),
        ],
    );
    metric(
        "oidc_backchannel_logouts_total",
        "counter",
        "OpenID Connect back-channel logout tokens, accepted or refused.",
        &[
            ("result=\"accepted\"", oidc(OidcOutcome::BackchannelLogout)),
            ("result=\"refused\"", oidc(OidcOutcome::BackchannelRefused)),
        ],
    );
    metric(
        "oidc_refreshes_total",
        "counter",
        "OpenID Connect token refreshes: made, refused by the provider (the session ended), or failed (tried again later).",
        &[
            ("result=\"refreshed\"", oidc(OidcOutcome::Refreshed)),
            ("result=\"refused\"", oidc(OidcOutcome::RefreshRefused)),
            ("result=\"failed\"", oidc(OidcOutcome::RefreshFailed)),
        ],
    );
    if let Some((waiting, js)) = s.pending {
        metric(
            "redis_pending",
            "gauge",
            "Writes this nginx keeps until Redis acknowledges them.",
            &[("", waiting.into())],
        );
        metric(
            "redis_writes_total",
            "counter",
            "Kept writes: acknowledged by Redis, failed and retried, or sent once unkept (journal full).",
            &[
                ("result=\"acknowledged\"", js.flushed),
                ("result=\"retried\"", js.retried),
                ("result=\"unkept\"", js.full),
            ],
        );
    }
    out
}

pub fn handler(r: &mut Request) -> Status {
    if let Err(answer) = request::read_only(r) {
        return answer;
    }
    let Some(main) = Module::main_conf(r) else {
        return HTTPStatus::NOT_FOUND.into();
    };
    let Some(table) = main.table else {
        return HTTPStatus::NOT_FOUND.into();
    };
    let zone = table.zone_name();
    let pending = main
        .journal
        .as_ref()
        .map(|j| j.with(|j| (j.len(), j.header().stats)));
    let body = render(&table.with(|t| Snapshot {
        zone,
        active: t.len(),
        capacity: t.capacity(),
        stats: t.header().stats,
        pending,
    }));

    request::send_body(
        r,
        HTTPStatus::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        body.as_bytes(),
    )
}

ngx::http_request_handler!(content_handler, handler);
/// `sessions_status`'s content handler.
pub const STATUS: extern "C" fn(*mut nginx_sys::ngx_http_request_t) -> nginx_sys::ngx_int_t = content_handler;
