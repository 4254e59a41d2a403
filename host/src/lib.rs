//! The `mulesoft-audit` host: runs the collector component (embedded) in a wasmtime sandbox,
//! gives it an object store (GCS, a directory, memory), and triggers it from the command line,
//! Pub/Sub push, CloudEvents or a schedule.

pub mod bindings;
pub mod cli;
pub mod commands;
pub mod logging;
pub mod metrics;
pub mod pass;
pub mod progress;
pub mod runtime;
pub mod sandbox;
pub mod serve;
pub mod settings;
pub mod stop;
pub mod store;

#[cfg(test)]
mod tests {
    /// The README shows an excerpt of the WIT: every line of it must still be in the file.
    #[test]
    fn the_readmes_wit_excerpt_is_the_wit_as_it_is() {
        let readme = include_str!("../../README.md");
        let wit = include_str!("../../wit/audit.wit");
        let start = readme.find("```wit\n").map(|i| i + 7).unwrap_or(0);
        let excerpt = &readme[start..start + readme[start..].find("```").unwrap_or(0)];
        assert!(excerpt.lines().count() > 5, "the README shows a WIT excerpt");
        for line in excerpt.lines().map(str::trim).filter(|l| !l.is_empty() && *l != "}") {
            assert!(wit.contains(line), "README's WIT excerpt has a line wit/audit.wit does not: {line}");
        }
    }
}
