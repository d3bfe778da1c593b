//! `kindling image …` (placeholder until its crate lands).

#[derive(clap::Subcommand)]
pub enum Command {
    /// Not built yet.
    Todo,
}

pub fn run(_command: Command) -> anyhow::Result<()> {
    anyhow::bail!("'kindling image' is not built yet")
}
