//! `kindling vault …` (placeholder until its crate lands).

#[derive(clap::Subcommand)]
pub enum Command {
    /// Not built yet.
    Todo,
}

pub fn run(_command: Command) -> anyhow::Result<()> {
    anyhow::bail!("'kindling vault' is not built yet")
}
