//! `kindlingd net`: placeholder until its crate lands.

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
