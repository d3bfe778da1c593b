//! `kindling keygen` (placeholder until the overlay crate lands).

#[derive(clap::Args)]
pub struct Args {
    /// Directory to write kindling.pub and kindling.key into.
    #[arg(long)]
    pub out: std::path::PathBuf,
}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("keygen is not built yet")
}
