// The README and docs/ say what the module does: every directive in
// docs/directives.md with its Syntax, Default and Context as nginx.org
// does, every link between them leading somewhere, and every list they give
// an operator (apt packages, files) what the project uses.

use std::fs;
use std::path::Path;

#[test]
fn every_directive_is_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = fs::read_to_string(root.join("src/lifecycle/directives.rs")).unwrap();
    let readme = fs::read_to_string(root.join("docs/directives.md")).unwrap();
    let names: Vec<&str> = source
        .split("ngx_string!(\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|name| name.starts_with("sessions"))
        .collect();
    assert!(names.len() >= 40, "directives found: {names:?}");
    // As on nginx.org: a section whose Syntax, Default and Context lines
    // come first, the default written as a directive line (or "—").
    let missing: Vec<&&str> = names
        .iter()
        .filter(|name| {
            let Some(at) = readme.find(&format!("\n### {name}\n\n")) else {
                return true;
            };
            let block: Vec<&str> = readme[at..].lines().skip(3).take(3).collect();
            !(block.len() == 3
                && (block[0].starts_with(&format!("    Syntax:  {name} "))
                    || block[0] == format!("    Syntax:  {name};"))
                && (block[1] == "    Default: —" || block[1].starts_with(&format!("    Default: {name} ")))
                && block[1].ends_with([';', '—'])
                && block[2].starts_with("    Context: "))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "directives without a Syntax/Default/Context section: {missing:?}"
    );
    let index = &readme[readme.find("## Index").expect("an index")..];
    let index = &index[..index.find("\n## ").expect("sections after the index")];
    let unlisted: Vec<&&str> = names
        .iter()
        .filter(|name| !index.contains(&format!("[`{name}`](#{name})")))
        .collect();
    assert!(unlisted.is_empty(), "not in the index: {unlisted:?}");
}

/// The README and the files under docs/.
fn documents() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = vec![(
        "README.md".to_string(),
        fs::read_to_string(root.join("README.md")).unwrap(),
    )];
    for e in fs::read_dir(root.join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            let name = format!("docs/{}", p.file_name().unwrap().to_string_lossy());
            out.push((name, fs::read_to_string(&p).unwrap()));
        }
    }
    out
}

/// GitHub's anchor for a heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    let mut fence = false;
    let mut out = Vec::new();
    for l in text.lines() {
        if l.starts_with("```") {
            fence = !fence;
        }
        if !fence && l.starts_with('#') {
            out.push(anchor(l.trim_start_matches('#')));
        }
    }
    out
}

/// Every relative link of the README and docs/ leads to a file that is
/// there, and to a heading of it when it names one.
#[test]
fn every_link_between_the_documents_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = documents();
    let mut broken = Vec::new();
    for (name, text) in &docs {
        let dir = Path::new(name).parent().unwrap();
        for (i, _) in text.match_indices("](") {
            let target = &text[i + 2..];
            let target = &target[..target.find(')').unwrap_or(0)];
            if target.contains("://") || target.starts_with("mailto:") || target.is_empty() {
                continue;
            }
            let (file, frag) = target.split_once('#').unwrap_or((target, ""));
            let path = if file.is_empty() {
                Path::new(name).to_path_buf()
            } else {
                dir.join(file)
            };
            let Ok(content) = fs::read_to_string(root.join(&path)) else {
                if !root.join(&path).exists() {
                    broken.push(format!("{name}: {target}"));
                }
                continue;
            };
            if !frag.is_empty() && !anchors(&content).iter().any(|a| a == frag) {
                broken.push(format!("{name}: {target}"));
            }
        }
    }
    assert!(broken.is_empty(), "links that lead nowhere: {broken:#?}");
}

/// The Rust version the package declares (and the README states) is one
/// every locked dependency builds with.
#[test]
fn the_declared_rust_version_covers_every_dependency() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let version = |s: &str| -> (u32, u32) {
        let mut it = s.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    };
    let manifest = fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let declared = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .map(|v| v.trim_end_matches('"').to_string())
        .expect("rust-version in Cargo.toml");
    // This machine's platform only: the crates of others (core-foundation
    // for macOS, ...) are never fetched by a build here, so a fresh cargo
    // home does not have them.
    let rustc = std::process::Command::new("rustc").arg("-vV").output().unwrap();
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc -vV names the host");
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta = String::from_utf8_lossy(&out.stdout);
    let needed = meta
        .split("\"rust_version\":\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(version)
        .max()
        .expect("dependencies declare versions");
    assert!(
        version(&declared) >= needed,
        "rust-version {declared} < {needed:?} needed by a dependency"
    );
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("Rust (stable, {declared} or newer)")),
        "the README states another version"
    );
}

/// One version of each RustCrypto crate in the build (`cargo tree -d`):
/// the AEAD, the MAC and the hashes share their traits and CPU detection.
#[test]
fn one_version_of_each_rustcrypto_crate() {
    const RUSTCRYPTO: &[&str] = &[
        "aead",
        "block-buffer",
        "chacha20",
        "chacha20poly1305",
        "cipher",
        "cpufeatures",
        "crypto-common",
        "digest",
        "hkdf",
        "hmac",
        "hybrid-array",
        "inout",
        "poly1305",
        "sha2",
        "subtle",
        "universal-hash",
        "zeroize",
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "-d",
            "--depth",
            "0",
            "-e",
            "normal",
            "--locked",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let dupes: Vec<&str> = text
        .lines()
        .filter(|l| l.split(' ').next().is_some_and(|name| RUSTCRYPTO.contains(&name)))
        .collect();
    assert!(
        dupes.is_empty(),
        "duplicated RustCrypto crates: {dupes:?}\n{text}"
    );
}

/// The README's `load_module` lines name the file the packages ship, and
/// it says how to install the Debian package.
#[test]
fn the_readme_loads_and_installs_what_the_packaging_builds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    // dh_nginx loads modules/ngx_<name>_module.so for libnginx-mod-<name>;
    // nginx's build names the .so after the addon.
    let control = fs::read_to_string(root.join("debian/control")).unwrap();
    assert!(control.contains("\nPackage: libnginx-mod-http-sessions\n"));
    let config = fs::read_to_string(root.join("config")).unwrap();
    assert!(config.contains("\nngx_addon_name=ngx_http_sessions_module\n"));
    let loads: Vec<&str> = readme
        .lines()
        .filter(|l| l.trim_start().starts_with("load_module "))
        .collect();
    assert!(!loads.is_empty());
    for l in loads {
        assert!(l.trim_end().ends_with("/ngx_http_sessions_module.so;"), "{l}");
    }
    assert!(readme.contains("apt install ./target/deb/libnginx-mod-http-sessions_"));
    assert!(readme.contains("/etc/nginx/conf.d/"));
}

/// The Debian packages the README tells a newcomer to install are the ones
/// `make test` and `make run` check for (scripts/deps.sh), and CI installs
/// at least those on its fresh machine.
#[test]
fn the_readme_apt_line_is_what_the_scripts_install() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let words = |text: &str, start: &str, end: char| -> Vec<String> {
        let at = text.find(start).unwrap_or_else(|| panic!("{start:?} not found")) + start.len();
        let rest = &text[at..];
        let mut list: Vec<String> = rest[..rest.find(end).unwrap()]
            .split_whitespace()
            .filter(|w| !w.starts_with('-') && *w != "\\")
            .map(str::to_string)
            .collect();
        list.sort();
        list
    };
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    let told = words(&readme, "```sh\napt-get install -y ", '\n');
    let deps = fs::read_to_string(root.join("scripts/deps.sh")).unwrap();
    assert_eq!(
        told,
        words(&deps, "packages=(", ')'),
        "README and scripts/deps.sh"
    );
    let ci = fs::read_to_string(root.join(".ci/run")).unwrap();
    let installed = words(&ci, "apt-get install -y -qq --no-install-recommends", '\n');
    let installed: Vec<String> = ci[ci.find("--no-install-recommends").unwrap()..]
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .flat_map(|l| l.split_whitespace())
        .filter(|w| !w.starts_with('-') && *w != "\\")
        .map(str::to_string)
        .chain(installed)
        .collect();
    let missing: Vec<&String> = told.iter().filter(|p| !installed.contains(p)).collect();
    assert!(missing.is_empty(), ".ci/run does not install {missing:?}");
}

/// The layout in docs/ARCHITECTURE.md names files that exist, and every
/// source file (a folder listed without its files covers those).
#[test]
fn the_architecture_layout_is_the_tree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap();
    let dev = &readme[readme.find("## The folders").expect("a section on the folders")..];
    let block = &dev[dev.find("```\n").unwrap() + 4..];
    let block = &block[..block.find("```").unwrap()];
    let mut stack: Vec<String> = Vec::new();
    let mut named: Vec<String> = Vec::new();
    for line in block.lines() {
        let indent = line.len() - line.trim_start().len();
        // Descriptions wrap onto lines indented as far as the description.
        if indent >= 20 || line.trim().is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let first = words.next().unwrap();
        let mut entries = vec![first.trim_end_matches(',').to_string()];
        if first.ends_with(',') {
            entries.push(words.next().unwrap().to_string());
        }
        stack.truncate(indent / 2);
        for e in &entries {
            let path = format!("{}{e}", stack.concat());
            assert!(
                root.join(&path).exists(),
                "the architecture's layout names {path}, which is not there"
            );
            named.push(path);
        }
        if first.ends_with('/') {
            stack.push(first.to_string());
        }
    }
    let covered = |file: &str| {
        named.iter().any(|n| {
            n == file
                || (n.ends_with('/')
                    && file.starts_with(n.as_str())
                    && !named.iter().any(|m| m != n && m.starts_with(n.as_str())))
        })
    };
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut files = Vec::new();
    walk(&root.join("src"), root, &mut files);
    walk(&root.join("core/src"), root, &mut files);
    walk(&root.join("sidecar/src"), root, &mut files);
    // A folder's mod.rs is the folder.
    let unnamed: Vec<&String> = files
        .iter()
        .filter(|f| !f.ends_with("/mod.rs") && !covered(f))
        .collect();
    assert!(
        unnamed.is_empty(),
        "the architecture's layout does not name {unnamed:?}"
    );
}
