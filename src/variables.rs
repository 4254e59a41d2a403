//! The settings by name: one table of every setting ([`SETTINGS`]) from which every host takes
//! its environment variables, its flags (the wasmtime host builds its command line from it),
//! their help and their defaults, and one parser ([`configure`]) that turns a pass's values into
//! a validated [`Settings`]. The WASI command reads the table from its environment; the Node example hands
//! its environment to the component's `configure` export, which calls the same parser.

use crate::settings::{BaseUrl, ControlPlane, Paging, RawConfig, Settings, parse_duration, parse_since};
use std::collections::BTreeMap;
use std::time::Duration;

/// Names the WASI command took before it read the host's forms (`…_LAG=60s`): still read,
/// after the current names, so that an existing deployment keeps its settings.
const OLDER_SECONDS: &str = "_SECONDS";
const OLDER_SINCE_MS: &str = "MULESOFT_AUDIT_SINCE_MS";

pub use crate::settings::names::*;

mod table;
pub use table::{SETTINGS, Scope, Setting, Shape};

/// Setting values by variable name, each with the label messages call it by: the variable, or
/// the flag when it came from the command line. Empty values count as unset.
#[derive(Clone, Default)]
pub struct Values {
    values: BTreeMap<String, (String, String)>,
}

impl std::fmt::Debug for Values {
    // Names only: a value may be the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

impl Values {
    /// Values from an environment ([`configure`] reads a pass's settings among them).
    pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut values = Self::default();
        for (name, value) in vars {
            let label = name.clone();
            values.set(&name, value, label);
        }
        values
    }

    /// Sets `name`, called `label` in messages; an empty value unsets it.
    pub fn set(&mut self, name: &str, value: impl Into<String>, label: impl Into<String>) {
        let value = value.into().trim().to_string();
        if value.is_empty() {
            self.values.remove(name);
        } else {
            self.values.insert(name.to_string(), (value, label.into()));
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|(v, _)| v.as_str())
    }

    /// What messages call `name`: the flag it came from, else the variable.
    pub fn label<'a>(&'a self, name: &'a str) -> &'a str {
        self.values.get(name).map_or(name, |(_, label)| label.as_str())
    }

    /// The value, else the table's default; `None` when neither.
    fn text(&self, name: &str) -> Option<&str> {
        self.get(name).or_else(|| SETTINGS.iter().find(|s| s.name == name).and_then(|s| s.default))
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, String> {
        match self.text(name) {
            None => Ok(None),
            Some(text) => {
                text.parse().map(Some).map_err(|_| format!("{} `{text}` is not a whole number", self.label(name)))
            }
        }
    }

    /// A number with a default in [`SETTINGS`].
    pub fn required<T: std::str::FromStr + Default>(&self, name: &str) -> Result<T, String> {
        self.number(name).map(Option::unwrap_or_default)
    }

    /// A duration in whole seconds, in the current form (`60s`) or the older `…_SECONDS` name.
    fn seconds(&self, name: &str) -> Result<u64, String> {
        let older = format!("{name}{OLDER_SECONDS}");
        match (self.get(name), self.get(&older)) {
            (None, Some(text)) => text.parse().map_err(|_| format!("{older} `{text}` is not a number of seconds")),
            _ => Ok(self.duration(name)?.as_secs()),
        }
    }

    fn duration(&self, name: &str) -> Result<Duration, String> {
        parse_duration(self.label(name), self.text(name).unwrap_or_default())
    }

    fn switch(&self, name: &str) -> Result<bool, String> {
        // The forms clap's boolish parser takes, so that a flag's and a variable's agree.
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None | Some("false" | "0" | "no" | "n" | "f" | "off") => Ok(false),
            Some("true" | "1" | "yes" | "y" | "t" | "on") => Ok(true),
            Some(other) => Err(format!("{} `{other}` is neither true nor false", self.label(name))),
        }
    }
}

/// The environment as text, for [`Values::from_env`]: a variable a host reads (`reads`) whose
/// value is not UTF-8 is named, with what to do, rather than taken as unset or refused in words
/// that name no variable; any other such variable is left out.
pub fn utf8_environment(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    reads: impl Fn(&str) -> bool,
) -> Result<Vec<(String, String)>, String> {
    let mut text = Vec::new();
    for (name, value) in vars {
        let Ok(name) = name.into_string() else { continue };
        match value.into_string() {
            Ok(value) => text.push((name, value)),
            Err(_) if reads(&name) => {
                return Err(format!("{name} is not valid UTF-8; set it to UTF-8 text (or unset it)"));
            }
            Err(_) => {}
        }
    }
    Ok(text)
}

/// Where objects go: `MULESOFT_AUDIT_DEST` (`--dest`) as given, else `gs://$GCS_BUCKET`; blank
/// counts as unset. The one rule every host applies.
pub fn destination(dest: Option<&str>, bucket: Option<&str>) -> Result<String, String> {
    fn given(value: Option<&str>) -> Option<&str> {
        value.map(str::trim).filter(|v| !v.is_empty())
    }
    match (given(dest), given(bucket)) {
        (Some(dest), _) => Ok(dest.to_string()),
        (None, Some(bucket)) => Ok(format!("gs://{bucket}")),
        (None, None) => Err(format!(
            "no destination: set {} (a bucket), or {} (--dest) to gs://bucket[/prefix] or file:///dir",
            crate::settings::names::BUCKET,
            crate::settings::names::DEST
        )),
    }
}

/// The table's row for the variable `name`.
pub fn setting_named(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// [`Setting::help`] of `name`'s row: a host that declares a flag by hand takes its help here.
pub fn help_of(name: &str) -> &'static str {
    setting_named(name).map_or("", |s| s.help)
}

/// [`Setting::default`] of `name`'s row.
pub fn default_of(name: &str) -> Option<&'static str> {
    setting_named(name).and_then(|s| s.default)
}

/// Whether `name` is a pass's setting ([`Scope::Pass`] in [`SETTINGS`]), in any case: what the
/// collector's parser reads on every host.
pub fn is_setting(name: &str) -> bool {
    SETTINGS.iter().any(|s| s.scope == Scope::Pass && s.name.eq_ignore_ascii_case(name))
}

/// A pass's settings read from [`Values`], with what a host needs besides. No `Debug`: it
/// holds the secret.
#[derive(Clone)]
pub struct Configured {
    /// As the WIT `config` record carries them, for hosts that hand them to the component.
    pub raw: RawConfig,
    /// Validated.
    pub settings: Settings,
}

/// The most a secret file may hold: a connected app's secret is tens of bytes, and a mount
/// pointed at the wrong path must not be read to the end.
pub const SECRET_FILE_MAX_BYTES: u64 = 64 * 1024;

/// Reads the file [`CLIENT_SECRET_FILE`] names, bounded: a regular file of at most
/// [`SECRET_FILE_MAX_BYTES`], never a FIFO (which would block), a device (`/dev/zero` never ends)
/// or a directory, each named as such. For every host that has a file system (the binary, the
/// WASI command).
pub fn read_secret_file(path: &str) -> Result<String, String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.is_dir() {
        return Err("it is a directory, not a file".into());
    }
    if !meta.is_file() {
        return Err(
            "it is not a regular file (a FIFO, socket or device): point it at the file that holds the secret".into()
        );
    }
    if meta.len() > SECRET_FILE_MAX_BYTES {
        return Err(format!("it holds {} bytes, more than a secret's {SECRET_FILE_MAX_BYTES}", meta.len()));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(SECRET_FILE_MAX_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > SECRET_FILE_MAX_BYTES {
        return Err(format!("it holds more than a secret's {SECRET_FILE_MAX_BYTES} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".into())
}

/// Reads and validates every setting. `read_file` reads the file [`CLIENT_SECRET_FILE`] names
/// (the caller's file system, or a reason it cannot). Each message names the setting as the user
/// gave it and says what to do.
pub fn configure(
    values: &Values,
    read_file: impl FnOnce(&str) -> Result<String, String>,
) -> Result<Configured, String> {
    let plane = match values.get(REGION).map(str::to_ascii_lowercase).as_deref() {
        None => None,
        Some("us") => Some(ControlPlane::Us),
        Some("eu") => Some(ControlPlane::Eu),
        Some("gov") => Some(ControlPlane::Gov),
        Some("ca") => Some(ControlPlane::Ca),
        Some("jp") => Some(ControlPlane::Jp),
        Some(other) => {
            return Err(format!("{} `{other}` is not one of us, eu, gov, ca, jp", values.label(REGION)));
        }
    };
    let base_url = values.get(BASE_URL).map(|u| u.trim_end_matches('/').to_string());
    if let Some(url) = &base_url {
        BaseUrl::parse(url).map_err(|e| format!("{}: {e}", values.label(BASE_URL)))?;
    }
    if base_url.is_some() && plane.is_some() {
        return Err(format!("both {} and {} are set: set only one", values.label(BASE_URL), values.label(REGION)));
    }
    let client_secret = match (values.get(CLIENT_SECRET), values.get(CLIENT_SECRET_FILE)) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "both {} and {} are set: set only one",
                values.label(CLIENT_SECRET),
                values.label(CLIENT_SECRET_FILE)
            ));
        }
        (Some(secret), None) => secret.to_string(),
        (None, Some(path)) => {
            let label = values.label(CLIENT_SECRET_FILE);
            let secret = read_file(path).map_err(|why| format!("{label} `{path}` cannot be read ({why})"))?;
            let secret = secret.trim_end_matches(['\r', '\n']);
            if secret.is_empty() {
                return Err(format!("{label} `{path}` is empty: it should hold the connected app's secret"));
            }
            secret.to_string()
        }
        (None, None) => String::new(),
    };
    let since_ms = match (values.get(SINCE), values.get(OLDER_SINCE_MS)) {
        (Some(text), _) => Some(parse_since(values.label(SINCE), text)?),
        (None, Some(text)) => Some(parse_since(OLDER_SINCE_MS, text)?),
        (None, None) => None,
    };
    let shard_index: Option<u32> = values.number(SHARD_INDEX)?;
    let shard_count: Option<u32> = values.number(SHARD_COUNT)?;
    let task_index: Option<u32> = values.number(CLOUD_RUN_TASK_INDEX)?;
    let task_count: Option<u32> = values.number(CLOUD_RUN_TASK_COUNT)?;
    let completion_index: Option<u32> = values.number(JOB_COMPLETION_INDEX)?;
    let shard_count = match shard_count.or(task_count) {
        Some(n) => n,
        None if completion_index.is_some() => {
            return Err(format!(
                "{JOB_COMPLETION_INDEX} is set but not the number of tasks: set {SHARD_COUNT} to the job's completions"
            ));
        }
        None => 1,
    };
    let (key_prefix, state_prefix) = prefixes(values);
    let raw = RawConfig {
        org_ids: values
            .get(ORG_ID)
            .map(|ids| ids.split(',').map(str::trim).filter(|id| !id.is_empty()).map(str::to_string).collect())
            .unwrap_or_default(),
        discover_children: values.switch(DISCOVER_CHILDREN)?,
        plane,
        base_url,
        client_id: values.get(CLIENT_ID).unwrap_or_default().to_string(),
        client_secret,
        lookback_seconds: values.seconds(LOOKBACK)?,
        since_ms,
        start_anew: values.switch(START_ANEW)?,
        lag_seconds: values.seconds(LAG)?,
        overlap_seconds: values.seconds(OVERLAP)?,
        page_size: values.required(PAGE_SIZE)?,
        max_pages: values.required(MAX_PAGES)?,
        object_max_bytes: values.required::<u64>(OBJECT_KIB)?.saturating_mul(1024),
        key_prefix,
        state_prefix,
        requests_per_minute: values.number(RPM)?,
        max_attempts: values.required(MAX_ATTEMPTS)?,
        paging: match values.text(PAGING).map(str::to_ascii_lowercase).as_deref() {
            None | Some("cursor") => Paging::Cursor,
            Some("offset") => Paging::Offset,
            Some(other) => return Err(format!("{} `{other}` is not cursor or offset", values.label(PAGING))),
        },
        shard_index: shard_index.or(task_index).or(completion_index).unwrap_or(0),
        shard_count,
        concurrency: values.required(CONCURRENCY)?,
        http_timeout_ms: match values.duration(HTTP_TIMEOUT)? {
            timeout if timeout.is_zero() => {
                return Err(format!("{} must be longer than 0s", values.label(HTTP_TIMEOUT)));
            }
            timeout => u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        },
    };
    let settings = Settings::from_raw(raw.clone())?;
    Ok(Configured { raw, settings })
}

/// The environment with a runtime's configuration (`wasi:config`) over it: a configured name wins,
/// in any case (Spin's variables are lowercase, `client_secret` is `CLIENT_SECRET`), because
/// [`Values::from_env`] keeps the last value of a name.
pub fn overlay(environment: Vec<(String, String)>, configured: Vec<(String, String)>) -> Vec<(String, String)> {
    environment.into_iter().chain(configured.into_iter().map(|(k, v)| (k.to_ascii_uppercase(), v))).collect()
}

/// The key prefixes of log objects and of checkpoints, as a pass uses them.
pub fn prefixes(values: &Values) -> (String, String) {
    (prefix(values.text(KEY_PREFIX)), prefix(values.text(STATE_PREFIX)))
}

/// `logs`, `/logs/` and `logs/` are one prefix; empty is the root.
fn prefix(text: Option<&str>) -> String {
    let p = text.unwrap_or_default().trim().trim_matches('/');
    if p.is_empty() { String::new() } else { format!("{p}/") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_values_win_over_the_environment_in_any_case() {
        let env = vec![("CLIENT_SECRET".to_string(), "from-env".to_string()), ("MULE_ORG_ID".into(), "o1".into())];
        let configured = vec![("client_secret".to_string(), "from-config".to_string())];
        let values = Values::from_env(overlay(env, configured));
        assert_eq!(values.get("CLIENT_SECRET"), Some("from-config"));
        assert_eq!(values.get("MULE_ORG_ID"), Some("o1"));
    }

    fn values(pairs: &[(&str, &str)]) -> Values {
        let base = [(ORG_ID, "org-1"), (CLIENT_ID, "id"), (CLIENT_SECRET, "s3cret")];
        Values::from_env(base.iter().chain(pairs).map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn no_file(_: &str) -> Result<String, String> {
        Err("no file system".into())
    }

    #[test]
    fn defaults_come_from_the_table() {
        let c = configure(&values(&[]), no_file).unwrap();
        assert_eq!(c.raw.lag_seconds, 60);
        assert_eq!(c.raw.overlap_seconds, 600);
        assert_eq!(c.raw.lookback_seconds, 86_400);
        assert_eq!(c.raw.page_size, 200);
        assert_eq!(c.raw.object_max_bytes, 32 << 20);
        assert_eq!((c.raw.key_prefix.as_str(), c.raw.state_prefix.as_str()), ("logs/", "state/"));
        assert_eq!(c.settings.requests_per_minute, 700, "the US plane's published limit");
        assert_eq!(c.raw.http_timeout_ms, 60_000);
        assert_eq!((c.raw.shard_index, c.raw.shard_count), (0, 1));
    }

    #[test]
    fn host_forms_and_older_names() {
        let c = configure(
            &values(&[(LAG, "2m"), ("MULESOFT_AUDIT_OVERLAP_SECONDS", "30"), (REGION, "EU"), (KEY_PREFIX, "/a/b")]),
            no_file,
        )
        .unwrap();
        assert_eq!((c.raw.lag_seconds, c.raw.overlap_seconds), (120, 30));
        assert_eq!(c.raw.plane, Some(ControlPlane::Eu));
        assert_eq!(c.settings.requests_per_minute, 40);
        assert_eq!(c.raw.key_prefix, "a/b/");
        let since = configure(&values(&[(OLDER_SINCE_MS, "1714521600000")]), no_file).unwrap();
        assert_eq!(since.raw.since_ms, Some(1_714_521_600_000));
        let both = configure(&values(&[(SINCE, "2024-05-02"), (OLDER_SINCE_MS, "1")]), no_file).unwrap();
        assert_eq!(both.raw.since_ms, Some(1_714_608_000_000), "the current name wins");
    }

    #[test]
    fn switches_take_the_forms_clap_takes() {
        for (text, on) in [("on", true), ("Y", true), ("1", true), ("off", false), ("no", false), ("F", false)] {
            assert_eq!(
                configure(&values(&[(DISCOVER_CHILDREN, text)]), no_file).map(|c| c.raw.discover_children),
                Ok(on)
            );
        }
    }

    #[test]
    fn platform_task_numbers_shard_the_organizations() {
        let c = configure(&values(&[(CLOUD_RUN_TASK_INDEX, "2"), (CLOUD_RUN_TASK_COUNT, "3")]), no_file).unwrap();
        assert_eq!((c.raw.shard_index, c.raw.shard_count), (2, 3));
        let mine = configure(&values(&[(SHARD_INDEX, "0"), (SHARD_COUNT, "2"), (CLOUD_RUN_TASK_COUNT, "3")]), no_file);
        assert_eq!(mine.map(|c| (c.raw.shard_index, c.raw.shard_count)), Ok((0, 2)), "explicit settings win");
        let k8s = configure(&values(&[(JOB_COMPLETION_INDEX, "1")]), no_file).err().unwrap_or_default();
        assert!(k8s.contains(SHARD_COUNT), "{k8s}");
    }

    #[test]
    fn messages_name_the_setting_as_given() {
        let mut v = values(&[]);
        v.set(LAG, "soon", "--lag");
        assert_eq!(
            configure(&v, no_file).err().unwrap_or_default(),
            "--lag `soon` is not a duration: use e.g. 90s, 10m, 24h, 7d"
        );
        let env = configure(&values(&[(LAG, "soon")]), no_file).err().unwrap_or_default();
        assert!(env.starts_with("MULESOFT_AUDIT_LAG `soon`"), "{env}");
        for (pairs, needle) in [
            (&[(REGION, "mars")][..], "MULE_REGION `mars` is not one of"),
            (&[(REGION, "eu"), (BASE_URL, "http://127.0.0.1:1")], "both MULE_BASE_URL and MULE_REGION"),
            (&[(PAGE_SIZE, "many")], "MULESOFT_AUDIT_PAGE_SIZE `many` is not a whole number"),
            (&[(PAGING, "pages")], "is not cursor or offset"),
            (&[(DISCOVER_CHILDREN, "maybe")], "neither true nor false"),
            (&[(HTTP_TIMEOUT, "0s")], "longer than 0s"),
            (&[(CLIENT_SECRET_FILE, "/run/secret")], "both CLIENT_SECRET and CLIENT_SECRET_FILE"),
        ] {
            let message = configure(&values(pairs), no_file).err().unwrap_or_default();
            assert!(message.contains(needle), "{message} should contain {needle}");
        }
    }

    #[test]
    fn the_secret_file_is_read_through_the_caller() {
        let mut v = Values::from_env([(ORG_ID.to_string(), "org-1".to_string()), (CLIENT_ID.into(), "id".into())]);
        v.set(CLIENT_SECRET_FILE, "/run/secret", CLIENT_SECRET_FILE);
        let c = configure(&v, |path| {
            assert_eq!(path, "/run/secret");
            Ok("from-file\r\n".into())
        })
        .unwrap();
        assert_eq!(c.raw.client_secret, "from-file");
        let empty = configure(&v, |_| Ok("\n".into())).err().unwrap_or_default();
        assert_eq!(empty, "CLIENT_SECRET_FILE `/run/secret` is empty: it should hold the connected app's secret");
        let unread = configure(&v, no_file).err().unwrap_or_default();
        assert_eq!(unread, "CLIENT_SECRET_FILE `/run/secret` cannot be read (no file system)");
        v.set(CLIENT_SECRET_FILE, "", CLIENT_SECRET_FILE);
        assert!(configure(&v, no_file).err().unwrap_or_default().contains("CLIENT_SECRET is not set"));
    }

    #[test]
    fn a_secret_file_is_read_only_where_it_is_a_small_regular_file() {
        let dir = std::env::temp_dir().join(format!("mulesoft-audit-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
        std::fs::write(path("ok"), "s3cret\n").unwrap();
        assert_eq!(read_secret_file(&path("ok")).unwrap(), "s3cret\n");
        std::fs::write(path("big"), vec![b'x'; SECRET_FILE_MAX_BYTES as usize + 1]).unwrap();
        assert!(read_secret_file(&path("big")).unwrap_err().contains("more than a secret's"));
        assert!(read_secret_file(&dir.to_string_lossy()).unwrap_err().contains("directory"));
        // Never read to the end, never blocked on.
        assert!(read_secret_file("/dev/zero").unwrap_err().contains("not a regular file"));
        assert!(read_secret_file(&path("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_readme_lists_every_setting_as_the_table_defines_it() {
        let readme = include_str!("../README.md");
        for setting in SETTINGS.iter().filter(|s| s.shape != Shape::Platform) {
            let row = readme.lines().find(|l| l.contains(&format!("| `{}` |", setting.name)));
            let row = row.unwrap_or_else(|| panic!("README's configuration table has no row for {}", setting.name));
            let flag = if setting.flag.is_empty() { "—".to_string() } else { format!("`--{}`", setting.flag) };
            assert!(row.contains(&format!("| {flag} |")), "{row}");
            if let Some(default) = setting.default {
                assert!(row.contains(&format!("| `{default}` |")), "README's default for {}: {row}", setting.name);
            }
            assert_eq!(row.ends_with("| **yes** |"), setting.shape == Shape::Secret, "{row}");
        }
        // Variables the platform sets are named in a row too: the one they stand in for, or
        // their own.
        for setting in SETTINGS.iter().filter(|s| s.shape == Shape::Platform) {
            let named = format!("`{}`", setting.name);
            assert!(
                readme.lines().any(|l| l.starts_with('|') && l.contains(&named)),
                "README names no {named} in a table"
            );
        }
        // The edge section lists every setting the edge refuses, by its whole name.
        let start = readme.find("Settings of the binary that a").unwrap_or_else(|| panic!("the edge's refusals"));
        let end = start + readme[start..].find("hold at the edge").unwrap_or_else(|| panic!("the list's end"));
        for setting in SETTINGS.iter().filter(|s| s.edge_refusal.is_some()) {
            let named = format!("`{}`", setting.name);
            assert!(readme[start..end].contains(&named), "README's list of the edge's refusals lacks {named}");
        }
    }

    #[test]
    fn every_setting_of_the_binary_alone_is_refused_at_the_edge_or_harmless_there() {
        // Harmless: the runtime listens where it is told, and the other two are hooks for tests
        // and profiling. A new setting of the binary's must say what the edge does with it.
        let harmless = [PORT, OIDC_JWKS_URL, PERFMAP];
        for s in SETTINGS.iter().filter(|s| s.scope == Scope::Binary) {
            assert!(s.edge_refusal.is_some() != harmless.contains(&s.name), "{}", s.name);
        }
        // And only settings a component cannot honour are refused.
        for s in SETTINGS.iter().filter(|s| s.edge_refusal.is_some()) {
            assert!(s.scope == Scope::Binary || s.name == STATE_DEST || s.name == CLIENT_SECRET_FILE, "{}", s.name);
        }
    }

    #[test]
    fn defaults_the_code_keeps_as_constants_are_the_tables() {
        let default = |name| default_of(name).unwrap_or_else(|| panic!("{name} has a default"));
        assert_eq!(
            default(GCS_TIMEOUT_SECS).parse::<u64>().unwrap() * 1000,
            crate::gcs::request_timeout_ms(&Values::default()).unwrap()
        );
        assert_eq!(default(GCS_RESUMABLE_ABOVE).parse::<usize>().unwrap(), crate::gcs::RESUMABLE_THRESHOLD);
        assert_eq!(default(GCS_CHUNK_KIB).parse::<usize>().unwrap() * 1024, crate::gcs::CHUNK);
        assert_eq!(default(METADATA_HOST), crate::gcs::METADATA_DEFAULT_HOST);
    }

    #[test]
    fn every_setting_is_named_once() {
        let mut names: Vec<_> = SETTINGS.iter().map(|s| s.name).collect();
        let mut flags: Vec<_> = SETTINGS.iter().map(|s| s.flag).filter(|f| !f.is_empty()).collect();
        let with_flags = flags.len();
        names.sort_unstable();
        flags.sort_unstable();
        names.dedup();
        flags.dedup();
        assert_eq!((names.len(), flags.len()), (SETTINGS.len(), with_flags));
        // A flag exactly where a person sets it; a pass's settings all have one (the binary
        // builds them from here).
        for s in SETTINGS {
            assert_eq!(s.flag.is_empty(), s.shape == Shape::Variable, "{}", s.name);
            assert!(!(s.scope == Scope::Pass && s.flag.is_empty()), "{}", s.name);
        }
        assert!(
            format!("{:?}", values(&[])).contains(CLIENT_SECRET) && !format!("{:?}", values(&[])).contains("s3cret")
        );
    }
}
