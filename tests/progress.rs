//! The progress line: a backfill with stderr on a terminal (here a pseudo-terminal, as `ssh` or
//! a terminal emulator gives one) draws a live line per organization.

use crate::harness::*;
use anypoint_sim::{OrgSpec, SimConfig};
use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use std::io::Read;
use std::process::Stdio;

/// A pseudo-terminal of 40 rows and 160 columns: its controller, and its terminal end.
fn pty() -> (std::fs::File, std::fs::File) {
    // Close-on-exec: other tests' children must not hold it open.
    let controller = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
    grantpt(&controller).unwrap();
    unlockpt(&controller).unwrap();
    let name = ptsname(&controller, Vec::new()).unwrap();
    // Not this test process's controlling terminal: closing it must not hang the process up.
    let terminal = std::os::unix::fs::OpenOptionsExt::custom_flags(
        std::fs::OpenOptions::new().read(true).write(true),
        libc::O_NOCTTY,
    )
    .open(name.to_str().unwrap())
    .unwrap();
    let size = rustix::termios::Winsize { ws_row: 40, ws_col: 160, ws_xpixel: 0, ws_ypixel: 0 };
    rustix::termios::tcsetwinsize(&terminal, size).unwrap();
    (std::fs::File::from(controller), terminal)
}

/// Runs a pass with stderr on a pseudo-terminal of type `term`: its exit code, the summary,
/// and what the terminal showed.
fn run_at_terminal(sim: &anypoint_sim::Simulator, term: &str) -> (Option<i32>, serde_json::Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let (mut controller, terminal) = pty();
    let mut cmd = command(sim, &format!("file://{}", dir.path().display()));
    // Bounded: the host stops a pass at its time limit, so reading the terminal always ends.
    cmd.arg("run").env("TERM", term).env("MULESOFT_AUDIT_OBJECT_KIB", "128").env("MULESOFT_AUDIT_MAX_RUN_TIME", "2m");
    cmd.stdout(Stdio::piped()).stderr(terminal);
    let child = cmd.spawn().unwrap();
    // The child holds the only terminal end now: reading ends (EIO) when it exits.
    drop(cmd);
    let drawn = std::thread::spawn(move || {
        let mut drawn = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = controller.read(&mut buf) {
            drawn.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&drawn).into_owned()
    });
    let output = child.wait_with_output().unwrap();
    let drawn = drawn.join().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_default();
    (output.status.code(), summary, plain(&drawn))
}

/// What a terminal shows, without its control sequences (`ESC [ … letter`): the text itself.
fn plain(drawn: &str) -> String {
    let mut text = String::with_capacity(drawn.len());
    let mut chars = drawn.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().take_while(|c| !c.is_ascii_alphabetic()).for_each(drop);
        } else {
            text.push(c);
        }
    }
    text
}

#[test]
fn a_backfill_at_a_terminal_draws_a_progress_line_per_organization() {
    let orgs = ["org-tty-a", "org-tty-b"];
    let sim = sim(SimConfig::new(vec![OrgSpec::new(orgs[0], 3000), OrgSpec::new(orgs[1], 2000)]));
    let (code, summary, drawn) = run_at_terminal(&sim, "xterm-256color");
    assert_eq!(code, Some(0), "{summary}\n{drawn}");
    for org in orgs {
        let written =
            summary["orgs"].as_array().unwrap().iter().find(|o| o["org_id"] == org).unwrap()["entries_written"]
                .as_u64()
                .unwrap();
        assert!(written > 1000, "{summary}");
        // The bar's last frame: the organization, its bar, and every entry it delivered.
        let frame = format!("{org} [");
        assert!(drawn.contains(&frame), "no line for {org}:\n{drawn}");
        assert!(drawn.contains(&format!("· {written} entries ·")), "{org} ends at {written} entries:\n{drawn}");
    }
    assert!(drawn.contains("(ETA "), "{drawn}");
    assert!(!drawn.contains("object written"), "the bars stand for the per-object lines:\n{drawn}");
}

#[test]
fn a_dumb_terminal_keeps_the_per_object_lines() {
    // indicatif draws nothing where `TERM` is `dumb` (Emacs' shell, some CI runners): the log
    // lines must stay, or such a terminal would show no progress at all.
    let sim = sim(SimConfig::new(vec![OrgSpec::new("org-tty-dumb", 2000)]));
    let (code, summary, drawn) = run_at_terminal(&sim, "dumb");
    assert_eq!(code, Some(0), "{summary}\n{drawn}");
    let objects = summary["orgs"][0]["objects_written"].as_u64().unwrap();
    assert!(objects >= 2, "{summary}");
    assert_eq!(drawn.matches("object written").count() as u64, objects, "{drawn}");
    assert!(!drawn.contains("entries ·"), "{drawn}");
}
