// The README documents every directive the module declares: a section
// (`### name`) or a row of the Redis table (`| \`name ...`).

use std::fs;
use std::path::Path;

#[test]
fn every_directive_is_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = fs::read_to_string(root.join("src/directives.rs")).unwrap();
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    let names: Vec<&str> = source
        .split("ngx_string!(\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|name| name.starts_with("sessions"))
        .collect();
    assert!(names.len() >= 40, "directives found: {names:?}");
    let missing: Vec<&&str> = names
        .iter()
        .filter(|name| {
            !readme.contains(&format!("\n### {name}\n")) && !readme.contains(&format!("| `{name} "))
        })
        .collect();
    assert!(missing.is_empty(), "undocumented directives: {missing:?}");
}
