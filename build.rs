//! Passes the facts nginx-sys found about the nginx we build against
//! (`ngx_feature`, `ngx_os`, version checks) to the compiler as cfg values.
//! `nginx-sys` must be a direct dependency for the `DEP_NGINX_*` variables.

fn main() {
    for (var, cfg) in [("FEATURES", "ngx_feature"), ("OS", "ngx_os")] {
        println!("cargo::rerun-if-env-changed=DEP_NGINX_{var}_CHECK");
        println!("cargo::rerun-if-env-changed=DEP_NGINX_{var}");
        let allowed = std::env::var(format!("DEP_NGINX_{var}_CHECK")).unwrap_or("any()".into());
        println!("cargo::rustc-check-cfg=cfg({cfg}, values({allowed}))");
        if let Ok(values) = std::env::var(format!("DEP_NGINX_{var}")) {
            for v in values.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                println!("cargo::rustc-cfg={cfg}=\"{v}\"");
            }
        }
    }
    // nginx 1.23 turned `headers_in.cookies` (array) into `headers_in.cookie`
    // (list) and added `ngx_table_elt_t.next`.
    println!("cargo::rustc-check-cfg=cfg(nginx1_23)");
    println!("cargo::rerun-if-env-changed=DEP_NGINX_VERSION_NUMBER");
    if let Ok(v) = std::env::var("DEP_NGINX_VERSION_NUMBER") {
        if v.parse::<u64>().is_ok_and(|v| v >= 1_023_000) {
            println!("cargo::rustc-cfg=nginx1_23");
        }
    }
    // Where the nginx binary was built, for `make` and the tests.
    println!("cargo::rerun-if-env-changed=DEP_NGINX_BUILD_DIR");
    if let Ok(dir) = std::env::var("DEP_NGINX_BUILD_DIR") {
        println!("cargo::rustc-env=DEP_NGINX_BUILD_DIR={dir}");
    }
}
