//! The collector as a WASI command (`wasi:cli/run`), for plain `wasmtime run`: configured by
//! environment variables, writing objects and checkpoints into a preopened directory with the same
//! exactly-once behaviour as the host. Exit code 0 when done, 1 when not: WASI 0.2's `exit` carries
//! only success or failure (`exit-with-code` is unstable, and importing it would make plain
//! `wasmtime run` refuse the component), so the kind of failure is in the summary and on stderr.
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
    use mulesoft_audit::settings::{Paging, Plane, RawConfig, Settings, defaults, parse_duration, parse_since};
    /// On wasm32: `wasi:http`. Natively (the benchmark's comparison build): plain sockets.
    #[cfg(target_arch = "wasm32")]
    fn platform() -> mulesoft_audit::wasi_platform::WasiPlatform {
        mulesoft_audit::wasi_platform::WasiPlatform
    }
    #[cfg(not(target_arch = "wasm32"))]
    fn platform() -> crate::native::NativePlatform {
        crate::native::NativePlatform::new()
    }

    fn env(name: &str) -> Option<String> {
        std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    fn number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
        match env(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("{name} `{v}` is not a number")),
        }
    }

    /// A duration in seconds, by the host's name and forms (`MULESOFT_AUDIT_LAG=60s`, through the
    /// engine's parser), or by this command's older `…_SECONDS` name.
    fn seconds(name: &str, default: &str) -> Result<u64, String> {
        let older = format!("{name}_SECONDS");
        match (env(name), env(&older)) {
            (Some(text), _) => Ok(parse_duration(name, &text)?.as_secs()),
            (None, Some(text)) => text.parse().map_err(|_| format!("{older} `{text}` is not a number of seconds")),
            (None, None) => Ok(parse_duration(name, default)?.as_secs()),
        }
    }

    /// `CLIENT_SECRET_FILE` (a path inside a preopened directory) or `CLIENT_SECRET`, not both:
    /// with both set, which one is meant is a guess (the host refuses the same way).
    fn client_secret() -> Result<String, String> {
        match (env("CLIENT_SECRET_FILE"), env("CLIENT_SECRET")) {
            (Some(_), Some(_)) => Err("both CLIENT_SECRET and CLIENT_SECRET_FILE are set: set only one".into()),
            (None, secret) => Ok(secret.unwrap_or_default()),
            (Some(path), None) => {
                std::fs::read_to_string(&path).map(|s| s.trim_end_matches(['\r', '\n']).to_string()).map_err(|e| {
                    format!("CLIENT_SECRET_FILE `{path}` cannot be read ({e}); is its directory preopened with --dir?")
                })
            }
        }
    }

    fn config() -> Result<(Settings, String), String> {
        let plane = match env("MULE_REGION").as_deref() {
            None => None,
            Some("us") => Some(Plane::Us),
            Some("eu") => Some(Plane::Eu),
            Some("gov") => Some(Plane::Gov),
            Some("ca") => Some(Plane::Ca),
            Some("jp") => Some(Plane::Jp),
            Some(other) => return Err(format!("MULE_REGION `{other}` is not one of us, eu, gov, ca, jp")),
        };
        let raw = RawConfig {
            org_ids: env("MULE_ORG_ID")
                .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
                .unwrap_or_default(),
            discover_children: env("MULE_DISCOVER_CHILDREN").is_some_and(|v| v == "true"),
            plane,
            base_url: env("MULE_BASE_URL"),
            client_id: env("CLIENT_ID").unwrap_or_default(),
            client_secret: client_secret()?,
            lookback_seconds: seconds("MULESOFT_AUDIT_LOOKBACK", defaults::LOOKBACK)?,
            since_ms: match (env("MULESOFT_AUDIT_SINCE"), env("MULESOFT_AUDIT_SINCE_MS")) {
                (Some(since), _) => Some(parse_since("MULESOFT_AUDIT_SINCE", &since)?),
                (None, Some(ms)) => Some(parse_since("MULESOFT_AUDIT_SINCE_MS", &ms)?),
                (None, None) => None,
            },
            lag_seconds: seconds("MULESOFT_AUDIT_LAG", defaults::LAG)?,
            overlap_seconds: seconds("MULESOFT_AUDIT_OVERLAP", defaults::OVERLAP)?,
            page_size: number("MULESOFT_AUDIT_PAGE_SIZE", defaults::PAGE_SIZE)?,
            max_pages: number("MULESOFT_AUDIT_MAX_PAGES", defaults::MAX_PAGES)?,
            object_max_bytes: number::<u64>("MULESOFT_AUDIT_OBJECT_KIB", defaults::OBJECT_KIB)?.saturating_mul(1024),
            key_prefix: env("MULESOFT_AUDIT_KEY_PREFIX").unwrap_or_else(|| defaults::KEY_PREFIX.into()),
            state_prefix: env("MULESOFT_AUDIT_STATE_PREFIX").unwrap_or_else(|| defaults::STATE_PREFIX.into()),
            requests_per_minute: env("MULESOFT_AUDIT_RPM")
                .map(|v| v.parse().map_err(|_| "MULESOFT_AUDIT_RPM is not a number".to_string()))
                .transpose()?,
            max_attempts: number("MULESOFT_AUDIT_MAX_ATTEMPTS", defaults::MAX_ATTEMPTS)?,
            paging: match env("MULESOFT_AUDIT_PAGING").as_deref() {
                Some("offset") => Paging::Offset,
                _ => Paging::Cursor,
            },
            shard_index: number("MULESOFT_AUDIT_SHARD_INDEX", 0)?,
            shard_count: number("MULESOFT_AUDIT_SHARD_COUNT", 1)?,
            concurrency: number("MULESOFT_AUDIT_CONCURRENCY", defaults::CONCURRENCY)?,
        };
        let secret = raw.client_secret.clone();
        Ok((Settings::from_raw(raw)?, secret))
    }

    /// A configuration problem: one line on stderr, the summary on stdout.
    fn config_error(message: &str) -> u8 {
        eprintln!("error: {message}");
        let failure = serde_json::json!({"org_id": null, "kind": "config", "message": message});
        println!("{}", serde_json::json!({"status": "failed", "orgs": [], "failures": [failure]}));
        1
    }

    pub fn main() -> u8 {
        let (settings, secret) = match config() {
            Ok(c) => c,
            Err(message) => return config_error(&message),
        };
        let root = env("MULESOFT_AUDIT_DIR").unwrap_or_else(|| "/data".into());
        let mut store = match crate::dir_store::DirStore::new(&root) {
            Ok(s) => s,
            Err(message) => return config_error(&message),
        };
        let result = collect::run_pass(&mut platform(), &mut store, &settings);
        let scrub = |m: &str| mulesoft_audit::settings::scrub(m, &secret);
        for f in &result.failures {
            eprintln!(
                "error: {}{}",
                f.org_id.as_ref().map(|o| format!("organization {o}: ")).unwrap_or_default(),
                scrub(&f.message)
            );
        }
        println!(
            "{}",
            serde_json::json!({
                "status": if result.failures.is_empty() { "ok" } else { "failed" },
                "orgs": result.completed,
                "failures": result.failures.iter().map(|f| serde_json::json!({"org_id": f.org_id, "kind": f.kind, "message": scrub(&f.message)})).collect::<Vec<_>>(),
            })
        );
        if result.failures.is_empty() { 0 } else { 1 }
    }
}
