//! The clock floor: until NTP has set the time, the wall clock never runs
//! earlier than the image's build time. A board with a dead RTC battery
//! boots in 1970 (or 2000), where every overlay looks "not yet valid" and
//! every TLS certificate "not yet issued"; the build time is the latest
//! moment known for certain to be in the past.
//!
//! Owns the one forward step of CLOCK_REALTIME at boot. It never moves the
//! clock backwards.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the floor did.
#[derive(Debug, PartialEq, Eq)]
pub enum ClockFloor {
    /// The clock was already at or after the floor.
    Kept { floor: u64 },
    /// The clock was behind the floor and was set to it.
    Raised { from: u64, to: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum ClockFloorError {
    #[error("reading the build time from {path}: {source}")]
    Reference {
        path: String,
        source: std::io::Error,
    },
    #[error("setting the clock from {from} to {to} (unix seconds): {source}")]
    Set {
        from: u64,
        to: u64,
        source: nix::Error,
    },
}

/// The floor: the modification time of `reference`, a file of the image
/// (every file in the image carries the build's epoch as its mtime).
pub fn floor_of(reference: &Path) -> Result<u64, ClockFloorError> {
    let error = |source| ClockFloorError::Reference {
        path: reference.display().to_string(),
        source,
    };
    let modified = std::fs::metadata(reference)
        .and_then(|m| m.modified())
        .map_err(error)?;
    Ok(modified
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0))
}

/// Decides, without touching the clock: `Some(floor)` when `now` is behind it.
pub fn behind(now: u64, floor: u64) -> Option<u64> {
    (now < floor).then_some(floor)
}

/// Raises CLOCK_REALTIME to the floor given by `reference` if it is behind.
pub fn apply(reference: &Path) -> Result<ClockFloor, ClockFloorError> {
    let floor = floor_of(reference)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let Some(to) = behind(now, floor) else {
        return Ok(ClockFloor::Kept { floor });
    };
    let spec = nix::sys::time::TimeSpec::new(i64::try_from(to).unwrap_or(i64::MAX), 0);
    nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, spec).map_err(|source| {
        ClockFloorError::Set {
            from: now,
            to,
            source,
        }
    })?;
    Ok(ClockFloor::Raised { from: now, to })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_a_clock_behind_the_floor_moves_and_only_forward() {
        assert_eq!(behind(5, 1_700_000_000), Some(1_700_000_000));
        assert_eq!(behind(1_700_000_000, 1_700_000_000), None);
        assert_eq!(behind(1_800_000_000, 1_700_000_000), None);
    }

    #[test]
    fn the_floor_is_the_reference_files_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("version");
        std::fs::write(&file, "1.0\n").unwrap();
        let epoch = UNIX_EPOCH + Duration::from_secs(1_704_067_200);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(epoch)
            .unwrap();
        assert_eq!(floor_of(&file).unwrap(), 1_704_067_200);
        // The host clock is past 2024: nothing to do, nothing touched.
        assert_eq!(
            apply(&file).unwrap(),
            ClockFloor::Kept {
                floor: 1_704_067_200
            }
        );
        let missing = floor_of(&dir.path().join("nope")).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }
}
