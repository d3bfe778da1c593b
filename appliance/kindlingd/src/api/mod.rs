//! `kindlingd api`: the appliance's status and control API (placeholder).

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
