//! Builds the collector component (the workspace's root package) for `wasm32-wasip2` and hands its
//! path to the host, which embeds it: one binary, no separate `.wasm` to lose.
//!
//! Set `MULESOFT_AUDIT_COMPONENT=/path/to/component.wasm` to embed a prebuilt one instead.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=MULESOFT_AUDIT_COMPONENT");
    if let Ok(path) = std::env::var("MULESOFT_AUDIT_COMPONENT") {
        println!("cargo:rerun-if-changed={path}");
        println!("cargo:rustc-env=MULESOFT_AUDIT_COMPONENT_PATH={path}");
        return;
    }
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest.parent().map(PathBuf::from).unwrap_or_default();
    for watched in ["src", "wit", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    // A target directory of its own: the outer cargo holds the lock on the usual one.
    let target_dir = root.join("target").join("component");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--package",
            "mulesoft-audit",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "component",
            "--target-dir",
        ])
        .arg(&target_dir)
        // Flags meant for the host build must not leak into the wasm build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!(
            "building the component failed ({s}); run `cargo build -p mulesoft-audit --target wasm32-wasip2` to see why"
        )),
        Err(e) => fail(&format!("could not run cargo to build the component: {e}")),
    }
    let wasm = target_dir.join("wasm32-wasip2").join("component").join("mulesoft_audit.wasm");
    if !wasm.exists() {
        fail(&format!("the component build produced no {}", wasm.display()));
    }
    println!("cargo:rustc-env=MULESOFT_AUDIT_COMPONENT_PATH={}", wasm.display());
}

fn fail(message: &str) {
    println!("cargo:warning={message}");
    std::process::exit(1);
}
