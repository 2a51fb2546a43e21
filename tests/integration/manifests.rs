//! The workspace's manifests: what `cargo test` builds.

use std::path::{Path, PathBuf};

/// Every package manifest of the workspace (`members` of the root one).
fn manifests(root: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("members = ["))
        .expect("the root manifest lists its members");
    let mut out = Vec::new();
    for member in line.split('"').skip(1).step_by(2) {
        match member.strip_suffix("/*") {
            Some(dir) => {
                for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                    out.push(entry.unwrap().path().join("Cargo.toml"));
                }
            }
            None => out.push(root.join(member).join("Cargo.toml")),
        }
    }
    out
}

/// Every binary is built without a test harness (`test = false`: one debug
/// link less each in the test run). So no binary's source (its file and the
/// modules it declares) may hold a test: it would silently never run. Tests
/// of a binary's code go in a library beside it.
#[test]
fn binaries_are_built_without_a_test_harness_and_hold_no_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut checked = Vec::new();
    for manifest in manifests(root) {
        let text = std::fs::read_to_string(&manifest).unwrap();
        let dir = manifest.parent().unwrap();
        // `src/main.rs` without a [[bin]] section is a binary too.
        assert!(
            !dir.join("src/main.rs").exists() || text.contains("path = \"src/main.rs\""),
            "{}: src/main.rs needs a [[bin]] section with test = false",
            manifest.display()
        );
        for block in text.split("[[bin]]").skip(1) {
            let block = block.split("\n[").next().unwrap();
            let field = |key: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{key} = ")))
                    .map(|v| v.trim_matches('"').to_string())
            };
            let name = field("name").expect("a [[bin]] has a name");
            assert_eq!(
                field("test").as_deref(),
                Some("false"),
                "{name} ({}): add `test = false`",
                manifest.display()
            );
            let main = dir.join(field("path").expect("a [[bin]] has a path"));
            let source = std::fs::read_to_string(&main).unwrap();
            let mut files = vec![(main.clone(), source.clone())];
            for l in source.lines() {
                if let Some(m) = l.strip_prefix("mod ").and_then(|m| m.strip_suffix(';')) {
                    let file = main.with_file_name(format!("{m}.rs"));
                    files.push((file.clone(), std::fs::read_to_string(&file).unwrap()));
                }
            }
            for (file, text) in files {
                assert!(
                    !text.contains("#[test]")
                        && !text.contains("#[tokio::test]")
                        && !text.contains("#[cfg(test)]"),
                    "{} (binary {name}) holds tests, which `test = false` would never run",
                    file.display()
                );
            }
            checked.push(name);
        }
    }
    // The functions, the local stack, the CLI, the tools: all found.
    for name in [
        "imagegram-api",
        "imagegram-local",
        "imagegram",
        "imagegram-convert",
    ] {
        assert!(
            checked.iter().any(|c| c == name),
            "{name} not found: {checked:?}"
        );
    }
}
