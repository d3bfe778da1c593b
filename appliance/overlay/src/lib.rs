//! Signed site overlays: the `.kovl` format, minisign-compatible keys and
//! signatures, verification (trust, integrity, expiry, version floors, site),
//! safe unpacking, and the appliance's config pipeline that layers accepted
//! overlays into one `SiteConfig` and persists floors.
//!
//! Owns overlay trust decisions. Never touches the network, NICs or services:
//! callers (`kindlingd config`, the API) act on the result.

pub mod api;
pub mod apply;
pub mod format;
pub mod limits;
pub mod manifest;
pub mod minisign;
pub mod pack;
pub mod pin;
pub mod state;
pub mod unpack;
pub mod verify;

pub use apply::{apply, ApplyOptions, ApplyOutcome, ApplyPaths, PushedOverlay, Refused, Report};
pub use limits::Limits;
pub use manifest::{LayerKind, Manifest};
pub use minisign::{KeyId, PublicKey, SecretKey};
pub use pack::{build, pack, pack_pinned, BuildOptions, Built};
pub use pin::{Catalog, PinError, Resolution};
pub use verify::{Verified, VerifyError};
