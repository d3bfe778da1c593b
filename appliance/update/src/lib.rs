//! Signed A/B update bundles (`NAME.kupd`): what a bundle is, how the
//! operator's side builds one, and how the appliance checks one and writes
//! its kernel image into the inactive slot without ever keeping a byte it
//! did not verify.
//!
//! A bundle is an uncompressed tar of three entries, in this order:
//! `manifest.json`, `manifest.json.minisig` (a minisign signature over the
//! manifest, the same keys and format as overlays) and `kindling.efi` (the
//! unified kernel image, whose size and sha256 the manifest names). The
//! signature covers the manifest only, so the image is checked while it
//! streams to disk.
//!
//! Library code: never panics on input, never exits, never reboots; slots,
//! boot counting and the health gate are the caller's.

pub mod agent;
pub mod bundle;
pub mod channel;
pub mod fetch;
pub mod manifest;
pub mod poll;
pub mod push;
mod report;
pub mod slots;
pub mod spool;
pub mod trial;
pub mod version;

pub use bundle::{build, stage, verify, BuildRequest, StageError, StageRequest, Staged};
pub use channel::{ChannelError, ChannelIndex, ChannelPolicy, Release};
pub use manifest::{Manifest, ManifestError};
pub use slots::{EntryName, SlotError, Slots};
pub use version::{ParseVersionError, Version};
