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
    ensure_wasm_target();
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

/// The target the component is built for.
const WASM_TARGET: &str = "wasm32-wasip2";

/// Adds the wasm target to the active toolchain when it is missing.
///
/// `rust-toolchain.toml` names the target, but rustup installs listed targets only together with
/// the toolchain: a machine that already had the pinned toolchain lacks it, and the nested build
/// would die with `can't find crate for core`. rustup is there by the README's premise; without it
/// the build stops with the one command to run.
fn ensure_wasm_target() {
    if wasm_target_installed() {
        return;
    }
    let mut add = Command::new("rustup");
    add.args(["target", "add", WASM_TARGET]);
    // The toolchain cargo runs under (rustup's proxy sets it), not rustup's default.
    if let Ok(toolchain) = std::env::var("RUSTUP_TOOLCHAIN") {
        add.args(["--toolchain", &toolchain]);
    }
    println!("cargo:warning=the {WASM_TARGET} target is missing; adding it with rustup");
    let added = add.status().is_ok_and(|s| s.success());
    // rustup may have added it to another toolchain than the rustc cargo runs (a rustc not
    // managed by rustup): look again rather than trust the exit code.
    if !added || !wasm_target_installed() {
        fail(&format!(
            "the {WASM_TARGET} target is missing and could not be added; run `rustup target add {WASM_TARGET}` for the toolchain in rust-toolchain.toml, then build again"
        ));
    }
}

/// Whether the rustc cargo runs has the wasm target's standard library.
fn wasm_target_installed() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .is_some_and(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).is_dir())
}

fn fail(message: &str) {
    println!("cargo:warning={message}");
    std::process::exit(1);
}
