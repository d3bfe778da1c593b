//! cloud-init's `ssh` module, as far as a node without sshd needs it: an
//! Ed25519 host key pair in OpenSSH format (what the node agent has signed
//! as the host certificate), made once.

use rand_core::OsRng;
use ssh_key::{Algorithm, LineEnding, PrivateKey};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

const KEY: &str = "/etc/ssh/ssh_host_ed25519_key";

pub fn ensure(root: &Path) -> Result<String, String> {
    let private = super::under(root, KEY)?;
    let public = super::under(root, &format!("{KEY}.pub"))?;
    if private.exists() && public.exists() {
        return Ok(format!("ssh: host key {KEY} already there"));
    }
    let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
        .map_err(|e| format!("making an Ed25519 host key: {e}"))?;
    let private_text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| format!("encoding the host key: {e}"))?;
    let public_text = key
        .public_key()
        .to_openssh()
        .map_err(|e| format!("encoding the host public key: {e}"))?;
    if let Some(dir) = private.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    write_new(&private, private_text.as_bytes(), 0o600)?;
    write_new(&public, format!("{public_text}\n").as_bytes(), 0o644)?;
    Ok(format!("ssh: made host key {KEY} (ed25519)"))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn makes_a_key_pair_once() {
        let dir = tempfile::tempdir().unwrap();
        let said = ensure(dir.path()).unwrap();
        assert!(said.contains("made host key"), "{said}");
        let public = dir.path().join("etc/ssh/ssh_host_ed25519_key.pub");
        let first = std::fs::read_to_string(&public).unwrap();
        assert!(first.starts_with("ssh-ed25519 AAAA"), "{first}");
        let parsed = ssh_key::PublicKey::from_openssh(first.trim()).unwrap();
        assert_eq!(parsed.algorithm(), Algorithm::Ed25519);
        assert!(ensure(dir.path()).unwrap().contains("already there"));
        assert_eq!(std::fs::read_to_string(&public).unwrap(), first);
    }
}
