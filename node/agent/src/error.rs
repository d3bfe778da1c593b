//! Why a step failed, as one line an operator can act on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no {0}: the node's user-data (written by the appliance's cloud-init documents) was not applied")]
    NoNodeFile(PathBuf),
    #[error("no enrollment grant at {0} and this node never enrolled: it was not provisioned by the appliance, or its user-data was not applied")]
    NoGrant(PathBuf),
    #[error("grant: already used or expired (Vault: {0}); the appliance must re-arm the node for a new grant")]
    GrantUsed(String),
    #[error("the grant is for {granted} but this node's MAC is {ours}")]
    WrongNode { granted: String, ours: String },
    #[error("{what} is missing and this node has no Vault login (its grant was redeemed before): re-provision the node for a new grant")]
    NeedsLogin { what: String },
    #[error("{0}")]
    Vault(String),
    #[error("{0}")]
    Http(String),
    #[error("{name} from {url}: sha256 {got}, expected {want}; nothing installed")]
    Checksum {
        name: String,
        url: String,
        got: String,
        want: String,
    },
    #[error("{0}")]
    Config(String),
    #[error("{command}: {reason}")]
    Command { command: String, reason: String },
    #[error("systemd is not running here (no /run/systemd/system): the unit files are written, start consul and nomad under this node's init")]
    NoSystemd,
}
