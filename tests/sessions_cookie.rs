//! The scenario suite (`suites/sessions.rs`), run with every session kept in its own cookie.

mod common;

/// The store this run keeps every session in.
const SUITE: common::Suite = common::Suite::Cookie;

include!("suites/sessions.rs");

#[test]
fn this_run_really_uses_the_cookie_store() {
    assert!(SUITE == common::Suite::Cookie);
    let n = Nginx::start(&conf("", ""));
    let r = n.get("/");
    assert_eq!(status(&r), "new");
    let sid = r.cookie_pair("sid");
    assert!(sid.starts_with("sid=s1.1."), "{sid}");
    // As the README says: about 150 bytes without data.
    assert!((120..180).contains(&sid.len()), "{} bytes", sid.len());
}
