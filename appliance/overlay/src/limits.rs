//! Size limits applied before and while reading an overlay. Secure defaults
//! are the `Default`; tests shrink them.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest `.kovl` read at all.
    pub max_kovl_bytes: u64,
    /// Largest `manifest.json`.
    pub max_manifest_bytes: u64,
    /// Largest decompressed payload stream (tar headers included): the zip-bomb guard.
    pub max_unpacked_bytes: u64,
    /// Most entries in a payload.
    pub max_files: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_kovl_bytes: 64 * 1024 * 1024,
            max_manifest_bytes: 256 * 1024,
            max_unpacked_bytes: 256 * 1024 * 1024,
            max_files: 10_000,
        }
    }
}
