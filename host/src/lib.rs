//! The `mulesoft-audit` host: runs the collector component (embedded) in a wasmtime sandbox,
//! gives it an object store (GCS, a directory, memory), and triggers it from the command line,
//! Pub/Sub push, CloudEvents or a schedule.

pub mod cli;
pub mod logging;
pub mod pass;
pub mod runtime;
pub mod sandbox;
pub mod serve;
pub mod settings;
pub mod store;

#[cfg(test)]
mod tests {
    #[test]
    fn the_readme_shows_the_wit_contract_as_it_is() {
        let readme = include_str!("../../README.md");
        let wit = include_str!("../../wit/audit.wit");
        assert!(readme.contains(wit), "paste wit/audit.wit into README.md again");
    }
}
