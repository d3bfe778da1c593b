//! The pure merge of one KV listing into the local assignments: per MAC, a
//! [`decide`] from (the local record, what KV holds, now) to a
//! [`Decision`]; around it, the epoch check and the applying of decisions to
//! the state.
//!
//! Does no I/O and reads no clock: the engine passes the time in.

use super::{KvListing, KvWrite};
use crate::assignments::{AssignmentRecord, AssignmentsState};
use kindling_site::MacAddr;
use std::collections::{BTreeMap, BTreeSet};

/// What one merge decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MergePlan {
    pub writes: Vec<KvWrite>,
    /// Human lines for the log: assignments taken from KV, conflicts, re-seeding.
    pub events: Vec<String>,
}

/// What KV holds for one MAC, once checked against the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvSide {
    Absent,
    Valid {
        profile: String,
        index: u64,
        flags: u64,
    },
    Refused {
        index: u64,
        flags: u64,
        /// `Consul KV KEY = "VALUE"`, for messages.
        what: String,
        reason: String,
        /// The value, if it is text.
        text: Option<String>,
    },
}

/// What becomes of the local record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordChange {
    /// Left as it is.
    Keep,
    /// Replaced by (or created from) KV's entry.
    Take(AssignmentRecord),
    /// In step with KV as of this ModifyIndex: nothing left to push.
    Agree { index: u64 },
    /// Gone (unassigned, and KV has no entry either, or KV's deletion won).
    Remove,
}

/// What the merge decided for one MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub record: RecordChange,
    pub write: Option<KvWrite>,
    /// A line for the log.
    pub event: Option<String>,
    /// A line for the status: KV's entry was refused.
    pub refused: Option<String>,
}

impl Decision {
    fn record(record: RecordChange) -> Self {
        Self {
            record,
            write: None,
            event: None,
            refused: None,
        }
    }
    fn event(mut self, line: String) -> Self {
        self.event = Some(line);
        self
    }
    fn refused(mut self, line: String) -> Self {
        self.refused = Some(line);
        self
    }
    fn write(mut self, write: KvWrite) -> Self {
        self.write = Some(write);
        self
    }
}

fn shown(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    let cut: String = text.chars().take(64).collect();
    format!("{cut:?}")
}

/// Sorts the listing into per-MAC sides; keys that name no MAC go to `refused`.
pub fn sides(
    listing: &KvListing,
    profiles: &BTreeSet<String>,
    refused: &mut Vec<String>,
) -> BTreeMap<MacAddr, KvSide> {
    let mut out = BTreeMap::new();
    for entry in &listing.entries {
        if entry.name.is_empty() {
            // The prefix's own "folder" key (the Consul UI makes one).
            continue;
        }
        let mac: MacAddr = match entry.name.parse() {
            Ok(m) => m,
            Err(e) => {
                refused.push(format!("Consul KV {} refused: {e}", entry.key));
                continue;
            }
        };
        if mac.to_string() != entry.name {
            let canonical = format!(
                "{}{mac}",
                entry.key.strip_suffix(&entry.name).unwrap_or_default()
            );
            refused.push(format!(
                "Consul KV {} refused: write the MAC lower-case with colons: {canonical}",
                entry.key
            ));
            continue;
        }
        let what = format!("Consul KV {} = {}", entry.key, shown(&entry.value));
        let (index, flags) = (entry.modify_index, entry.flags);
        let side = match std::str::from_utf8(&entry.value).map(str::trim) {
            Err(_) => KvSide::Refused {
                index,
                flags,
                what,
                reason: "the value is not text".into(),
                text: None,
            },
            Ok("") => KvSide::Refused {
                index,
                flags,
                what,
                reason: "the value is empty (delete the key to unassign)".into(),
                text: None,
            },
            Ok(p) if !profiles.contains(p) => KvSide::Refused {
                index,
                flags,
                what,
                text: Some(p.to_string()),
                reason: format!(
                    "profile {p:?} is not defined by the site (known: {})",
                    profiles.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            },
            Ok(p) => KvSide::Valid {
                profile: p.to_string(),
                index,
                flags,
            },
        };
        out.insert(mac, side);
    }
    out
}

fn push_of(mac: MacAddr, rec: &AssignmentRecord, cas: u64) -> KvWrite {
    match &rec.profile {
        Some(p) => KvWrite::Put {
            mac,
            profile: p.clone(),
            stamp_ms: rec.changed_ms,
            cas,
        },
        None => KvWrite::Delete { mac, cas },
    }
}

fn named(profile: Option<&str>) -> String {
    profile.map_or_else(|| "no assignment".into(), |p| format!("profile {p}"))
}

/// The time a KV entry's change counts as made. A stamp from the future (a
/// wrong clock, or any number a KV writer put in Flags) counts as now, so it
/// cannot win every later conflict; an unstamped entry is dated when seen.
pub fn kv_time(flags: u64, now_ms: u64) -> u64 {
    if flags > 0 {
        flags.min(now_ms)
    } else {
        now_ms
    }
}

/// The record KV's valid entry becomes.
fn pulled(profile: String, index: u64, flags: u64, now_ms: u64) -> RecordChange {
    RecordChange::Take(AssignmentRecord {
        profile: Some(profile),
        changed_ms: kv_time(flags, now_ms),
        kv_index: index,
        pending: false,
    })
}

/// The decision for one MAC: its local record (if any), what KV holds for
/// it, and the time now.
pub fn decide(
    mac: MacAddr,
    record: Option<&AssignmentRecord>,
    side: KvSide,
    now_ms: u64,
) -> Decision {
    use RecordChange::{Agree, Keep, Remove};
    let Some(rec) = record else {
        return match side {
            KvSide::Valid {
                profile,
                index,
                flags,
            } => Decision::record(pulled(profile.clone(), index, flags, now_ms))
                .event(format!("{mac}: profile {profile} from Consul KV")),
            KvSide::Refused { what, reason, .. } => Decision::record(Keep).refused(format!(
                "{what} refused: {reason}; {mac} keeps no assignment"
            )),
            KvSide::Absent => Decision::record(Keep),
        };
    };
    let current = named(rec.profile.as_deref());
    if let KvSide::Refused {
        index,
        what,
        reason,
        text: Some(text),
        ..
    } = &side
    {
        if rec.profile.as_deref() == Some(text.as_str()) {
            // KV holds this record's own profile, which the site no longer
            // defines (a newer overlay dropped it): in step, and not in force
            // until a profile of that name is back.
            return Decision::record(Agree { index: *index }).refused(format!(
                "{what}: {reason}; kept, but not in force until the site defines it"
            ));
        }
    }
    // A record that agreed with KV at some index and was not changed here
    // since: KV's later state is taken (if valid).
    if !rec.pending && rec.kv_index > 0 {
        return match side {
            KvSide::Absent => Decision::record(Remove)
                .event(format!("{mac}: unassigned in Consul KV (was {current})")),
            KvSide::Valid { profile, index, .. }
                if rec.profile.as_deref() == Some(profile.as_str()) =>
            {
                Decision::record(Agree { index })
            }
            KvSide::Valid {
                profile,
                index,
                flags,
            } => Decision::record(pulled(profile.clone(), index, flags, now_ms)).event(format!(
                "{mac}: profile {profile} from Consul KV (was {current})"
            )),
            KvSide::Refused { what, reason, .. } => Decision::record(Keep)
                .refused(format!("{what} refused: {reason}; {mac} keeps {current}")),
        };
    }
    // A change made here that KV has not seen.
    match side {
        KvSide::Absent => match &rec.profile {
            // KV has no entry either: the unassignment is done.
            None => Decision::record(Remove),
            Some(_) if rec.kv_index == 0 || rec.changed_ms >= now_ms => {
                Decision::record(Keep).write(push_of(mac, rec, 0))
            }
            Some(_) => Decision::record(Remove).event(format!(
                "{mac}: {current} (set here at {} ms) lost to its deletion in Consul KV, which is later",
                rec.changed_ms
            )),
        },
        KvSide::Valid {
            profile,
            index,
            flags,
        } => {
            if rec.profile.as_deref() == Some(profile.as_str()) {
                // KV holds this change already (our own push landed).
                Decision::record(Agree { index })
            } else if index == rec.kv_index {
                Decision::record(Keep).write(push_of(mac, rec, index))
            } else if rec.changed_ms >= kv_time(flags, now_ms) {
                Decision::record(Keep)
                    .write(push_of(mac, rec, index))
                    .event(format!(
                        "{mac}: {current} set here wins over profile {profile} in Consul KV (later change)"
                    ))
            } else {
                Decision::record(pulled(profile.clone(), index, flags, now_ms)).event(format!(
                    "{mac}: profile {profile} from Consul KV wins over {current} set here (later change)"
                ))
            }
        }
        KvSide::Refused {
            index,
            flags,
            what,
            reason,
            ..
        } => {
            if rec.changed_ms >= kv_time(flags, now_ms) {
                Decision::record(Keep)
                    .write(push_of(mac, rec, index))
                    .refused(format!(
                        "{what} refused: {reason}; replacing it with {current} set here (later change)"
                    ))
            } else {
                Decision::record(Keep).refused(format!(
                    "{what} refused: {reason}; {mac} keeps {current}, set here and not pushed over the later KV entry"
                ))
            }
        }
    }
}

/// Compares the state's KV epoch with the listing's. A different or missing
/// one means KV is not the store these records were merged with (Consul's
/// data was lost or replaced): what it lacks is re-seeded from here.
fn reconcile_epoch(state: &mut AssignmentsState, theirs: Option<&String>, plan: &mut MergePlan) {
    match (&state.kv_epoch, theirs) {
        (Some(mine), Some(theirs)) if mine == theirs => {}
        (None, Some(theirs)) => state.kv_epoch = Some(theirs.clone()),
        (None, None) => {}
        (Some(mine), theirs) => {
            plan.events.push(format!(
                "Consul KV's assignments epoch is {} (was {mine}): re-seeding it from the local copy",
                theirs.map_or("unset", String::as_str)
            ));
            state.records.retain(|_, r| r.profile.is_some());
            for r in state.records.values_mut() {
                r.kv_index = 0;
                r.pending = true;
            }
            state.kv_epoch = theirs.cloned();
        }
    }
}

/// Merges one KV listing into the local state. `now_ms` dates unstamped KV
/// entries; `epoch_seed` names a new epoch should one be needed.
pub fn merge(
    state: &mut AssignmentsState,
    listing: &KvListing,
    profiles: &BTreeSet<String>,
    now_ms: u64,
    epoch_seed: &str,
) -> MergePlan {
    let mut plan = MergePlan::default();
    reconcile_epoch(state, listing.epoch.as_ref(), &mut plan);
    if state.kv_epoch.is_none() {
        plan.writes
            .push(KvWrite::ClaimEpoch(epoch_seed.to_string()));
    }

    let mut refused = Vec::new();
    let mut kv = sides(listing, profiles, &mut refused);
    let macs: BTreeSet<MacAddr> = state.records.keys().chain(kv.keys()).copied().collect();
    for mac in macs {
        let side = kv.remove(&mac).unwrap_or(KvSide::Absent);
        let decision = decide(mac, state.records.get(&mac), side, now_ms);
        match decision.record {
            RecordChange::Keep => {}
            RecordChange::Take(record) => {
                state.records.insert(mac, record);
            }
            RecordChange::Agree { index } => {
                if let Some(r) = state.records.get_mut(&mac) {
                    r.kv_index = index;
                    r.pending = false;
                }
            }
            RecordChange::Remove => {
                state.records.remove(&mac);
            }
        }
        plan.writes.extend(decision.write);
        plan.events.extend(decision.event);
        refused.extend(decision.refused);
    }
    state.refused = refused;
    plan
}

#[cfg(test)]
mod tests;
