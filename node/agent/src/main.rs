//! `kindling-node`: enroll this node with the appliance and start its
//! Consul and Nomad clients. Exit status 0 when every step succeeded, 1
//! when one failed (its error is printed and reported to the appliance).

use clap::Parser;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "kindling-node", version, about)]
struct Args {
    /// The root directory the node's files are under; anything but `/`
    /// writes the files and starts nothing.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Connect to the appliance from this local address.
    #[arg(long)]
    source_address: Option<IpAddr>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let opts = kindling_node::Options {
        root: args.root,
        source_address: args.source_address,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kindling-node: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let report = rt.block_on(kindling_node::run(&opts));
    if report.ok() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
