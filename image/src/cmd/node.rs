//! `kindling node …` (placeholder until its crate lands).

#[derive(clap::Subcommand)]
pub enum Command {
    /// Not built yet.
    Todo,
}

pub fn run(_command: Command) -> anyhow::Result<()> {
    anyhow::bail!("'kindling node' is not built yet")
}
