//! The one push path of `kindling artifact push` and `import-iso`: hash
//! the file here, then stream it to `POST /v1/artifacts` stating that
//! hash, so the appliance keeps the bytes only if they arrived as they are
//! on this machine.

use super::client::{query_value, Session};
use anyhow::Context;
use kindling_api::artifacts::ArtifactPushed;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// The file's sha256 (lowercase hex) and size, read once in 1 MiB pieces.
pub(super) fn sha256_of(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    let mut total = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((format!("{:x}", hasher.finalize()), total))
}

/// What the appliance answered to one push, and how long the upload took.
pub struct Pushed {
    pub reply: ArtifactPushed,
    pub seconds: f64,
}

/// The one push path: hashes `file` here (with a spinner), then streams it
/// to the appliance as `name`, stating the hash (with a progress bar).
pub fn push_file(session: &Session, file: &Path, name: &str) -> anyhow::Result<Pushed> {
    let spinner = super::progress::Spinner::start(format!("hashing {}", file.display()));
    let hashed = sha256_of(file);
    spinner.finish();
    let (sha256, length) = hashed?;
    let reader =
        std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    let path = format!("/v1/artifacts?name={}&sha256={sha256}", query_value(name));
    let started = std::time::Instant::now();
    let bar = super::progress::Bar::start(format!("pushing {name}"), length);
    let reply: ArtifactPushed = session
        .upload_as(&path, std::io::BufReader::new(reader), length, |sent| {
            bar.set(sent)
        })
        .inspect_err(|_| bar.finish())?;
    bar.finish();
    Ok(Pushed {
        reply,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_percent_encoded_in_the_query() {
        assert_eq!(query_value("debian-12.iso"), "debian-12.iso");
        assert_eq!(query_value("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
