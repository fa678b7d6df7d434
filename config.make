# Appended to nginx's objs/Makefile: build the Rust static library before the
# module is linked. cargo decides whether anything needs rebuilding.

ngx_sessions_so="$NGX_OBJS/ngx_http_sessions_module$ngx_modext"

# make runs in the nginx source tree; --builddir may be relative to it or
# absolute (Debian's nginx_mod build system passes an absolute one).
case "$NGX_OBJS" in
    /*) ngx_sessions_objs="$NGX_OBJS" ;;
    *) ngx_sessions_objs="\$(CURDIR)/$NGX_OBJS" ;;
esac

cat << END >> $NGX_MAKEFILE

$ngx_sessions_so: $ngx_sessions_lib

$ngx_sessions_lib: ngx_sessions_cargo

.PHONY: ngx_sessions_cargo
ngx_sessions_cargo: $NGX_OBJS/ngx_auto_config.h
	cd $ngx_addon_dir && NGINX_SOURCE_DIR=\$(CURDIR) \\
		NGINX_BUILD_DIR=$ngx_sessions_objs \\
		CARGO_TARGET_DIR=$ngx_sessions_objs/addon/ngx-sessions \\
		${NGX_CARGO:-cargo} rustc --release --lib --crate-type staticlib \\
		--no-default-features

END
