//! The workspace's declared `rust-version` is one that builds it: no
//! dependency in Cargo.lock asks for a newer compiler, and the compiler
//! running the tests is at least that version. (Our own code is held to it
//! by clippy's `incompatible_msrv` lint, which reads the same field.)

use std::process::Command;

/// `1.95`, `1.89.0` as comparable numbers.
fn version(v: &str) -> [u64; 3] {
    let mut parts = v.split('.').map(|p| p.parse().unwrap_or(0));
    [(); 3].map(|()| parts.next().unwrap_or(0))
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
}

#[test]
fn no_dependency_needs_a_newer_rust_than_declared() {
    let rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned()))
        .arg("-vV")
        .output()
        .expect("rustc -vV runs");
    let rustc = String::from_utf8_lossy(&rustc.stdout).into_owned();
    let field = |name: &str| {
        rustc
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .expect("rustc -vV names its host and release")
    };
    let host = field("host:");
    let release = field("release:");
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let members = metadata["workspace_members"].as_array().expect("members");
    let is_member = |id: &serde_json::Value| members.contains(id);
    let packages = metadata["packages"].as_array().expect("packages");
    let declared: Vec<&str> = packages
        .iter()
        .filter(|p| is_member(&p["id"]))
        .map(|p| p["rust_version"].as_str().unwrap_or(""))
        .collect();
    let ours = declared[0];
    assert!(
        declared.iter().all(|v| *v == ours && !v.is_empty()),
        "every crate of the workspace declares the workspace's rust-version: {declared:?}"
    );
    let newer: Vec<String> = packages
        .iter()
        .filter(|p| !is_member(&p["id"]))
        .filter_map(|p| {
            let needs = p["rust_version"].as_str()?;
            (version(needs) > version(ours)).then(|| {
                format!(
                    "{} {} needs {needs}",
                    p["name"].as_str().unwrap_or("?"),
                    p["version"].as_str().unwrap_or("?")
                )
            })
        })
        .collect();
    assert!(
        newer.is_empty(),
        "rust-version = {ours:?} in Cargo.toml, but: {}",
        newer.join("; ")
    );
    let running = release.split('-').next().unwrap_or(&release);
    assert!(
        version(running) >= version(ours),
        "the tests run on rustc {release}, older than the declared {ours}"
    );
}
