//! The collector as a WASI command (`wasi:cli/run`), for plain `wasmtime run`: configured by
//! environment variables (the engine's [`mulesoft_audit::variables`]), writing objects and
//! checkpoints into a preopened directory with the same exactly-once behaviour as the host. Under
//! `wasmtime run` the exit code is 0 when done and 1 when not: WASI 0.2's `exit` carries only
//! success or failure (`exit-with-code` is unstable, and importing it would make plain `wasmtime
//! run` refuse the component), so the kind of failure is in the summary and on stderr. The native
//! build exits with the report's own code (2 for a setting to fix).
//!
//! Built natively it is the same engine on plain sockets and `std::fs`: the benchmark's
//! native comparison build (loopback HTTP only).
//!
//! ```sh
//! CLIENT_SECRET=… wasmtime run -S http --dir ./out::/data \
//!   --env MULE_ORG_ID=… --env CLIENT_ID=… --env CLIENT_SECRET --env MULE_REGION=eu \
//!   mulesoft-audit-command.wasm
//! ```

mod dir_store;
#[cfg(not(target_arch = "wasm32"))]
mod native;

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(run::main())
}

mod run {
    use mulesoft_audit::collect;
    use mulesoft_audit::report::Report;
    use mulesoft_audit::variables::{Values, configure};

    /// On wasm32: `wasi:http`. Natively (the benchmark's comparison build): plain sockets.
    #[cfg(target_arch = "wasm32")]
    fn platform(settings: &mulesoft_audit::settings::Settings) -> mulesoft_audit::wasi_platform::WasiPlatform {
        mulesoft_audit::wasi_platform::WasiPlatform::new(settings)
    }
    #[cfg(not(target_arch = "wasm32"))]
    fn platform(_: &mulesoft_audit::settings::Settings) -> crate::native::NativePlatform {
        crate::native::NativePlatform::new()
    }

    /// Where objects and checkpoints go: a preopened directory.
    use mulesoft_audit::settings::names::DIR;

    fn print(report: &Report) -> u8 {
        for line in report.error_lines() {
            eprintln!("{line}");
        }
        println!("{}", report.json());
        report.exit_code
    }

    /// The secret file is a path inside a preopened directory.
    fn read_secret_file(path: &str) -> Result<String, String> {
        mulesoft_audit::variables::read_secret_file(path)
            .map_err(|e| format!("{e}; is its directory preopened with --dir?"))
    }

    pub fn main() -> u8 {
        // `vars` would panic on a variable that is not UTF-8: one of ours is named instead.
        let reads = |name: &str| mulesoft_audit::variables::is_setting(name) || name == DIR;
        let values = match mulesoft_audit::variables::utf8_environment(std::env::vars_os(), reads) {
            Ok(vars) => Values::from_env(vars),
            Err(message) => return print(&Report::config(message)),
        };
        let configured = match configure(&values, read_secret_file) {
            Ok(c) => c,
            Err(message) => return print(&Report::config(message)),
        };
        let root = values.get(DIR).unwrap_or("/data");
        let store = match crate::dir_store::DirStore::new(root) {
            Ok(s) => s,
            Err(message) => return print(&Report::config(message)),
        };
        print(&collect::run_pass(&mut platform(&configured.settings), &store, &configured.settings).into())
    }
}
