//! Running the binary (and any other process): its environment, and what it printed and returned.
//! A failed run is reported with everything needed to rerun it by hand, as ripgrep's test
//! `util.rs` does, but with the environment by name only: some of its values are secrets.

use anypoint_sim::Simulator;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_mulesoft-audit");

/// Compiled-code cache shared by every test (the first run compiles).
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cwasm-cache")
}

/// Clears a child's environment but for libfaketime's variables, so that the whole suite can be
/// run at another time of day (`tests/at-midnight.sh`: every process shares the shifted clock).
pub fn clean_env(cmd: &mut Command) -> &mut Command {
    cmd.env_clear();
    for (name, value) in std::env::vars_os() {
        if name == "LD_PRELOAD" || name.to_string_lossy().starts_with("FAKETIME") {
            cmd.env(name, value);
        }
    }
    cmd
}

/// The binary with a clean environment and the settings every test shares.
pub fn command(sim: &Simulator, dest: &str) -> Command {
    let mut cmd = Command::new(BIN);
    clean_env(&mut cmd)
        .env("MULESOFT_AUDIT_CACHE_DIR", cache_dir())
        .env("MULESOFT_AUDIT_LOG", "info")
        .env("MULE_ORG_ID", sim.org_ids().join(","))
        .env("MULE_BASE_URL", sim.url())
        .env("CLIENT_ID", anypoint_sim::DEMO_CLIENT_ID)
        .env("CLIENT_SECRET", anypoint_sim::DEMO_CLIENT_SECRET)
        .env("MULESOFT_AUDIT_DEST", dest)
        .env("MULESOFT_AUDIT_LAG", "1s")
        .env("MULESOFT_AUDIT_RPM", "100000")
        .stdin(Stdio::null());
    cmd
}

/// What a `run` printed and returned.
#[derive(Debug)]
pub struct RunResult {
    pub code: i32,
    pub summary: serde_json::Value,
    pub stdout: String,
    pub stderr: String,
    /// What ran (`describe`), for failure messages; empty when the caller ran it and called `finish`.
    pub command: String,
}

impl RunResult {
    /// The command, its exit code and what it printed, for an assertion's message.
    pub fn report(&self) -> String {
        let command = if self.command.is_empty() { "command: (not recorded)" } else { self.command.as_str() };
        format!(
            "\n\n==========\n{command}\n\nexit code: {}\n\nstdout:\n{}\n\nstderr:\n{}\n==========\n",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The command line, the names of the variables set on it (never their values: some are
/// secrets) and its working directory. Not `Command`'s `Debug`, which prints the values.
fn describe(cmd: &Command) -> String {
    let mut line = format!("{:?}", cmd.get_program());
    for arg in cmd.get_args() {
        line.push_str(&format!(" {arg:?}"));
    }
    let names = |set: bool| {
        cmd.get_envs()
            .filter(|(_, value)| value.is_some() == set)
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let cwd = match cmd.get_current_dir() {
        Some(dir) => dir.display().to_string(),
        None => match std::env::current_dir() {
            Ok(dir) => format!("{} (the tests' own)", dir.display()),
            Err(e) => format!("the tests' own ({e})"),
        },
    };
    format!("command: {line}\nenv set (names only): {}\nenv removed: {}\ncwd: {cwd}", names(true), names(false))
}

/// A result that does not know its command: the caller ran it (`run` and `run_at_once` record it).
pub fn finish(output: Output) -> RunResult {
    finished(output, String::new())
}

fn finished(output: Output, command: String) -> RunResult {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let summary = stdout.lines().last().and_then(|l| serde_json::from_str(l).ok()).unwrap_or(serde_json::Value::Null);
    RunResult { code: output.status.code().unwrap_or(-1), summary, stdout, stderr, command }
}

/// Starts every command at once, then waits for each: processes racing on one store.
pub fn run_at_once(commands: impl IntoIterator<Item = Command>) -> Vec<RunResult> {
    let children: Vec<_> = commands
        .into_iter()
        .map(|mut c| {
            let command = describe(&c);
            let child =
                c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("{e}\n{command}"));
            (child, command)
        })
        .collect();
    children
        .into_iter()
        .map(|(c, command)| {
            let output = c.wait_with_output().unwrap_or_else(|e| panic!("{e}\n{command}"));
            finished(output, command)
        })
        .collect()
}

pub fn run(mut cmd: Command) -> RunResult {
    cmd.arg("run");
    let command = describe(&cmd);
    let output = cmd.output().unwrap_or_else(|e| panic!("binary runs: {e}\n{command}"));
    finished(output, command)
}

/// Runs and requires success.
pub fn run_ok(cmd: Command) -> RunResult {
    let r = run(cmd);
    assert_eq!(r.code, 0, "run failed, expected success:{}", r.report());
    r
}

/// Runs any `cmd` to its end and requires success; `what` says what it was for.
pub fn assert_succeeds(what: &str, mut cmd: Command) {
    let command = describe(&cmd);
    let output = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}\n{command}"));
    let r = finished(output, command);
    assert_eq!(r.code, 0, "{what}:{}", r.report());
}

/// Polls `ready` every 50 ms until it holds; fails naming `what` once `within` has passed.
pub fn wait_until(what: &str, within: std::time::Duration, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
