# Appended to nginx's objs/Makefile: build the Rust static library before the
# module is linked. cargo decides whether anything needs rebuilding.

ngx_sessions_so="$NGX_OBJS/ngx_http_sessions_module$ngx_modext"

cat << END >> $NGX_MAKEFILE

$ngx_sessions_so: $ngx_sessions_lib

$ngx_sessions_lib: ngx_sessions_cargo

.PHONY: ngx_sessions_cargo
ngx_sessions_cargo: $NGX_OBJS/ngx_auto_config.h
	cd $ngx_addon_dir && NGINX_BUILD_DIR=\$(CURDIR)/$NGX_OBJS \\
		CARGO_TARGET_DIR=\$(CURDIR)/$NGX_OBJS/addon/ngx-sessions \\
		${NGX_CARGO:-cargo} rustc --release --lib --crate-type staticlib \\
		--no-default-features

END
