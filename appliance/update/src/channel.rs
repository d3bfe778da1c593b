//! Channel indexes: which bundles a channel (`dev`, `prod`) offers, signed
//! with the overlay keys, served as `CHANNEL.json` and
//! `CHANNEL.json.minisig` beside the bundles by any static HTTP server.
//!
//! Three things an index guards against besides forgery: a mirror that
//! stopped updating (every index expires, so a frozen copy goes stale), a
//! mirror that serves an older index than one already seen (every signing
//! raises `sequence`; the appliance keeps the highest it accepted), and a
//! release that skipped its trial (a channel may require each release to
//! name the channel it was blessed on first: prod takes only what passed
//! dev, and only `promote` writes that).
//!
//! Owns the index format, its checks and the publish/promote edits; the
//! operator's CLI signs and writes, the appliance's agent fetches.

use crate::version::Version;
use kindling_overlay::minisign::{self, KeyError, PublicKey, SecretKey, SignatureError};
use serde::{Deserialize, Serialize};

/// The one index format this build writes and reads.
pub const FORMAT: u32 = 1;
/// An index larger than this is refused unread.
pub const MAX_INDEX: u64 = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelIndex {
    pub format: u32,
    /// The channel this index is for; an index for another is refused.
    pub channel: String,
    /// Raised by every signing; never accepted lower than one seen.
    pub sequence: u64,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds after which the index is stale.
    pub expires: u64,
    /// Oldest version first.
    pub releases: Vec<Release>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub version: Version,
    /// The bundle's file name, beside the index.
    pub bundle: String,
    pub size: u64,
    /// The whole bundle file's sha256 (hex).
    pub sha256: String,
    /// The channel this release was blessed on before this one offered
    /// it (set by `promote`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blessed_on: Option<String>,
}

/// What an appliance asks of its channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPolicy {
    pub channel: String,
    /// A release must have been blessed on this channel first.
    pub requires_blessing_on: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("index signature: {0}")]
    Signature(#[from] SignatureError),
    #[error("index: {0}")]
    Parse(String),
    #[error("index: format {0}, this build reads format {FORMAT}")]
    Format(u32),
    #[error("index is for channel {found:?}, not {expected:?}")]
    WrongChannel { expected: String, found: String },
    #[error("index {channel} #{sequence} expired at {expires} (now {now}): the mirror is stale")]
    Expired {
        channel: String,
        sequence: u64,
        expires: u64,
        now: u64,
    },
    #[error("index {channel} #{sequence} is older than #{seen}, already accepted: a replayed or rolled-back mirror")]
    Replayed {
        channel: String,
        sequence: u64,
        seen: u64,
    },
    #[error("index lists version {0} twice")]
    Duplicate(Version),
    #[error("release {version}: bundle name {name:?} is not a plain file name ending in .kupd")]
    BundleName { version: Version, name: String },
    #[error("release {version}: sha256 {digest:?} is not 64 hex digits")]
    Digest { version: Version, digest: String },
    #[error("version {version} is not on channel {channel}")]
    NotOnChannel { version: Version, channel: String },
    #[error("version {version} is already on {channel} with another bundle ({theirs}); publish a new version instead")]
    Conflict {
        version: Version,
        channel: String,
        theirs: String,
    },
    #[error("sign the index: {0}")]
    Sign(#[from] KeyError),
}

impl ChannelIndex {
    /// A new, empty index for `channel`.
    pub fn new(channel: &str, now: u64) -> Self {
        Self {
            format: FORMAT,
            channel: channel.to_string(),
            sequence: 0,
            created: now,
            expires: now,
            releases: Vec::new(),
        }
    }

    /// Parses and checks the shape (format, names, digests, no version
    /// twice); not the signature.
    pub fn parse(bytes: &[u8]) -> Result<Self, ChannelError> {
        let index: Self =
            serde_json::from_slice(bytes).map_err(|e| ChannelError::Parse(e.to_string()))?;
        if index.format != FORMAT {
            return Err(ChannelError::Format(index.format));
        }
        for (i, r) in index.releases.iter().enumerate() {
            let plain = !r.bundle.contains('/') && !r.bundle.starts_with('.');
            if !plain || !r.bundle.ends_with(".kupd") {
                return Err(ChannelError::BundleName {
                    version: r.version.clone(),
                    name: r.bundle.clone(),
                });
            }
            if !is_sha256_hex(&r.sha256) {
                return Err(ChannelError::Digest {
                    version: r.version.clone(),
                    digest: r.sha256.clone(),
                });
            }
            if index.releases[..i].iter().any(|o| o.version == r.version) {
                return Err(ChannelError::Duplicate(r.version.clone()));
            }
        }
        Ok(index)
    }

    /// Verifies `bytes` with `signature` against `trusted` keys, then what
    /// an appliance checks: the channel, expiry, and no older sequence than
    /// `seen`.
    pub fn verify(
        bytes: &[u8],
        signature: &str,
        trusted: &[PublicKey],
        channel: &str,
        seen: u64,
        now: u64,
    ) -> Result<Self, ChannelError> {
        minisign::verify(bytes, signature, trusted)?;
        let index = Self::parse(bytes)?;
        if index.channel != channel {
            return Err(ChannelError::WrongChannel {
                expected: channel.to_string(),
                found: index.channel,
            });
        }
        if now > index.expires {
            return Err(ChannelError::Expired {
                channel: index.channel,
                sequence: index.sequence,
                expires: index.expires,
                now,
            });
        }
        if index.sequence < seen {
            return Err(ChannelError::Replayed {
                channel: index.channel,
                sequence: index.sequence,
                seen,
            });
        }
        Ok(index)
    }

    /// The release an appliance under `policy`, running `running` with
    /// version floor `floor` and `refused` versions, would take: the newest
    /// that is newer than both, not refused, and blessed where the policy
    /// asks. `None`: nothing to do.
    pub fn offer(
        &self,
        policy: &ChannelPolicy,
        running: &Version,
        floor: &Version,
        refused: &[Version],
    ) -> Option<&Release> {
        self.releases
            .iter()
            .filter(|r| r.version > *running && r.version >= *floor)
            .filter(|r| !refused.contains(&r.version))
            .filter(|r| {
                policy
                    .requires_blessing_on
                    .as_ref()
                    .is_none_or(|need| r.blessed_on.as_ref() == Some(need))
            })
            .max_by(|a, b| a.version.cmp(&b.version))
    }

    /// Adds `release` (the same version with the same bundle again is a
    /// no-op; with another bundle, refused: a version names one image).
    pub fn publish(&mut self, release: Release) -> Result<(), ChannelError> {
        if let Some(there) = self.releases.iter().find(|r| r.version == release.version) {
            if there.sha256 != release.sha256 {
                return Err(ChannelError::Conflict {
                    version: release.version,
                    channel: self.channel.clone(),
                    theirs: there.sha256.clone(),
                });
            }
            return Ok(());
        }
        self.releases.push(release);
        self.releases.sort_by(|a, b| a.version.cmp(&b.version));
        Ok(())
    }

    /// Copies `version` from `from` into this index, marked as blessed on
    /// `from`'s channel.
    pub fn promote(&mut self, from: &ChannelIndex, version: &Version) -> Result<(), ChannelError> {
        let release = from
            .releases
            .iter()
            .find(|r| r.version == *version)
            .ok_or_else(|| ChannelError::NotOnChannel {
                version: version.clone(),
                channel: from.channel.clone(),
            })?;
        self.publish(Release {
            blessed_on: Some(from.channel.clone()),
            ..release.clone()
        })
    }

    /// The index signed anew: sequence raised, valid from `now` for
    /// `valid_secs`. Returns the bytes to serve and their signature.
    pub fn sign(
        &mut self,
        key: &SecretKey,
        now: u64,
        valid_secs: u64,
    ) -> Result<(Vec<u8>, String), ChannelError> {
        self.sequence += 1;
        self.created = now;
        self.expires = now.saturating_add(valid_secs);
        let mut bytes =
            serde_json::to_vec_pretty(self).map_err(|e| ChannelError::Parse(e.to_string()))?;
        bytes.push(b'\n');
        let comment = format!(
            "kindling channel {} #{} expires {}",
            self.channel, self.sequence, self.expires
        );
        let signature = key.sign(&bytes, &comment)?;
        Ok((bytes, signature))
    }
}

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    fn release(version: &str, digest: char) -> Release {
        Release {
            version: v(version),
            bundle: format!("kindling-{version}.kupd"),
            size: 10,
            sha256: digest.to_string().repeat(64),
            blessed_on: None,
        }
    }

    const NOW: u64 = 1_800_000_000;
    const DAY: u64 = 86_400;

    #[test]
    fn publish_promote_and_what_each_channel_offers() {
        let mut dev = ChannelIndex::new("dev", NOW);
        dev.publish(release("1.1", 'a')).unwrap();
        dev.publish(release("1.2", 'b')).unwrap();
        dev.publish(release("1.2", 'b')).unwrap();
        assert_eq!(dev.releases.len(), 2);
        assert!(matches!(
            dev.publish(release("1.2", 'c')),
            Err(ChannelError::Conflict { .. })
        ));
        let mut prod = ChannelIndex::new("prod", NOW);
        // A release put on prod without passing dev is not taken there.
        prod.publish(release("1.2", 'b')).unwrap();
        let prod_policy = ChannelPolicy {
            channel: "prod".into(),
            requires_blessing_on: Some("dev".into()),
        };
        assert_eq!(prod.offer(&prod_policy, &v("1.0"), &v("1.0"), &[]), None);
        let mut prod = ChannelIndex::new("prod", NOW);
        prod.promote(&dev, &v("1.1")).unwrap();
        assert!(matches!(
            prod.promote(&dev, &v("9")),
            Err(ChannelError::NotOnChannel { .. })
        ));
        let offered = prod.offer(&prod_policy, &v("1.0"), &v("1.0"), &[]).unwrap();
        assert_eq!(
            (offered.version.clone(), offered.blessed_on.as_deref()),
            (v("1.1"), Some("dev"))
        );
        let dev_policy = ChannelPolicy {
            channel: "dev".into(),
            requires_blessing_on: None,
        };
        // Newest first; not the running one, not below the floor, not refused.
        let newest = |running: &str, floor: &str, refused: &[Version]| {
            dev.offer(&dev_policy, &v(running), &v(floor), refused)
                .map(|r| r.version.to_string())
        };
        assert_eq!(newest("1.0", "1.0", &[]).as_deref(), Some("1.2"));
        assert_eq!(newest("1.0", "1.0", &[v("1.2")]).as_deref(), Some("1.1"));
        assert_eq!(newest("1.2", "1.2", &[]), None);
        assert_eq!(newest("1.0", "1.3", &[]), None);
    }

    #[test]
    fn signed_indexes_are_checked_for_forgery_staleness_replay_and_channel() {
        let key = SecretKey::generate().unwrap();
        let other = SecretKey::generate().unwrap();
        let trusted = [key.public_key()];
        let mut dev = ChannelIndex::new("dev", NOW);
        dev.publish(release("1.1", 'a')).unwrap();
        let (first, first_sig) = dev.sign(&key, NOW, 7 * DAY).unwrap();
        let (second, second_sig) = dev.sign(&key, NOW + 10, 7 * DAY).unwrap();
        let verify = |bytes: &[u8], sig: &str, channel: &str, seen: u64, now: u64| {
            ChannelIndex::verify(bytes, sig, &trusted, channel, seen, now)
        };
        let got = verify(&second, &second_sig, "dev", 1, NOW + 20).unwrap();
        assert_eq!(got.sequence, 2);
        assert!(matches!(
            verify(&first, &first_sig, "dev", 2, NOW + 20),
            Err(ChannelError::Replayed {
                sequence: 1,
                seen: 2,
                ..
            })
        ));
        assert!(matches!(
            verify(&second, &second_sig, "dev", 0, NOW + 8 * DAY),
            Err(ChannelError::Expired { .. })
        ));
        assert!(matches!(
            verify(&second, &second_sig, "prod", 0, NOW),
            Err(ChannelError::WrongChannel { .. })
        ));
        let (_, foreign_sig) = dev.clone().sign(&other, NOW, DAY).unwrap();
        assert!(matches!(
            verify(&second, &foreign_sig, "dev", 0, NOW),
            Err(ChannelError::Signature(_))
        ));
        let tampered = String::from_utf8(second.clone())
            .unwrap()
            .replace("\"1.1\"", "\"9.9\"");
        assert!(matches!(
            verify(tampered.as_bytes(), &second_sig, "dev", 0, NOW),
            Err(ChannelError::Signature(_))
        ));
    }

    #[test]
    fn a_bad_shape_names_the_release() {
        let mut index = ChannelIndex::new("dev", NOW);
        index.releases.push(Release {
            bundle: "../etc/passwd.kupd".into(),
            ..release("1.1", 'a')
        });
        let bytes = serde_json::to_vec(&index).unwrap();
        let err = ChannelIndex::parse(&bytes).unwrap_err();
        assert!(
            err.to_string().starts_with("release 1.1: bundle name"),
            "{err}"
        );
        index.releases[0] = Release {
            sha256: "xyz".into(),
            ..release("1.1", 'a')
        };
        let err = ChannelIndex::parse(&serde_json::to_vec(&index).unwrap()).unwrap_err();
        assert!(err.to_string().contains("not 64 hex digits"), "{err}");
        index.releases = vec![release("1.1", 'a'), release("1.1", 'b')];
        let err = ChannelIndex::parse(&serde_json::to_vec(&index).unwrap()).unwrap_err();
        assert!(
            matches!(err, ChannelError::Duplicate(ref d) if *d == v("1.1")),
            "{err}"
        );
    }
}
