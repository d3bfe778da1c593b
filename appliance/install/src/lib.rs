//! Installing the appliance from its ISO or USB stick onto a local disk.
//!
//! `kindlingd install` (a one-shot, only on boots from the ISO whose kernel
//! command line or site asks for it) uses this crate: [`target`] decides
//! whether the disk may be written and says why not, [`iso`] reads the UKI's
//! parts and systemd-boot from the boot medium, [`uki`] assembles slot A's
//! UKI from them, [`write`] lays out the raw A/B
//! disk ([`layout`], the same layout `kindling image build` makes) and
//! reads it back, [`status`] is what the console and
//! `/run/kindling/status/install.json` say. See docs/install.md.

pub mod disk_io;
pub mod fat32;
pub mod iso;
pub mod layout;
pub mod probe;
pub mod status;
pub mod target;
pub mod uki;
pub mod write;
