//! `anypoint-sim`: the simulator as a process, for manual runs and benchmarks.

use anypoint_sim::{OrgSpec, SimConfig, Simulator};
use clap::Parser;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "A local stand-in for the MuleSoft Anypoint control plane")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: std::net::SocketAddr,
    /// Organization ids (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "org-1")]
    orgs: Vec<String>,
    /// Entries per organization.
    #[arg(long, default_value_t = 10_000)]
    entries: usize,
    /// Hours the entries spread back from now.
    #[arg(long, default_value_t = 20)]
    span_hours: u64,
    /// Requests per minute before 503.
    #[arg(long)]
    rate_limit: Option<u32>,
    /// Latency added to every reply (ms).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = SimConfig::new(args.orgs.iter().map(|o| OrgSpec::new(o, args.entries)).collect());
    config.seed = args.seed;
    config.span = Duration::from_secs(args.span_hours * 3600);
    config.rate_limit_per_minute = args.rate_limit;
    config.latency = Duration::from_millis(args.latency_ms);
    let sim = Simulator::start(config, args.listen).await?;
    println!("{}", sim.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
