//! The merge, case by case and as a whole.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use crate::sync::KvEntry;
use kindling_api::nodes::KvStatus;

const A: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x10]);
const B: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x20]);
const NOW: u64 = 1_000_000;

fn profiles() -> BTreeSet<String> {
    ["dev", "prod"].into_iter().map(String::from).collect()
}

fn entry(name: &str, value: &str, index: u64, flags: u64) -> KvEntry {
    KvEntry {
        key: format!("kindling/assignments/{name}"),
        name: name.into(),
        value: value.as_bytes().to_vec(),
        modify_index: index,
        flags,
    }
}

fn listing(entries: Vec<KvEntry>) -> KvListing {
    KvListing {
        index: 100,
        epoch: Some("e1".into()),
        entries,
    }
}

fn synced(profile: &str, index: u64) -> AssignmentRecord {
    AssignmentRecord {
        profile: Some(profile.into()),
        changed_ms: 10,
        kv_index: index,
        pending: false,
    }
}

fn local(profile: Option<&str>, at: u64, base: u64) -> AssignmentRecord {
    AssignmentRecord {
        profile: profile.map(String::from),
        changed_ms: at,
        kv_index: base,
        pending: true,
    }
}

fn state(records: Vec<(MacAddr, AssignmentRecord)>) -> AssignmentsState {
    AssignmentsState {
        records: records.into_iter().collect(),
        kv_epoch: Some("e1".into()),
        ..Default::default()
    }
}

fn run(s: &mut AssignmentsState, l: &KvListing) -> MergePlan {
    merge(s, l, &profiles(), NOW, "seed")
}

#[test]
fn kv_changes_are_taken_when_nothing_changed_here() {
    let mut s = state(vec![(A, synced("dev", 5)), (B, synced("dev", 6))]);
    let plan = run(
        &mut s,
        &listing(vec![entry("52:54:00:6b:00:10", "prod\n", 7, 0)]),
    );
    assert!(plan.writes.is_empty(), "{plan:?}");
    assert_eq!(
        s.records[&A],
        AssignmentRecord {
            profile: Some("prod".into()),
            changed_ms: NOW,
            kv_index: 7,
            pending: false
        }
    );
    assert!(!s.records.contains_key(&B), "deleted in KV: unassigned");
    assert!(s.refused.is_empty());
}

#[test]
fn local_changes_are_pushed_with_check_and_set() {
    let mut s = state(vec![
        (A, local(Some("prod"), 50, 5)),
        (B, local(None, 50, 6)),
    ]);
    s.records
        .insert(MacAddr([2, 0, 0, 0, 0, 1]), local(Some("dev"), 50, 0));
    let plan = run(
        &mut s,
        &listing(vec![
            entry("52:54:00:6b:00:10", "dev", 5, 0),
            entry("52:54:00:6b:00:20", "dev", 6, 0),
        ]),
    );
    assert_eq!(
        plan.writes,
        vec![
            KvWrite::Put {
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
                profile: "dev".into(),
                stamp_ms: 50,
                cas: 0
            },
            KvWrite::Put {
                mac: A,
                profile: "prod".into(),
                stamp_ms: 50,
                cas: 5
            },
            KvWrite::Delete { mac: B, cas: 6 },
        ]
    );
    // Once KV shows them, they are in sync.
    let plan = run(
        &mut s,
        &listing(vec![
            entry("52:54:00:6b:00:10", "prod", 9, 50),
            entry("02:00:00:00:00:01", "dev", 8, 50),
        ]),
    );
    assert!(plan.writes.is_empty());
    assert_eq!(s.pending(), 0);
    assert_eq!(s.records[&A].kv_index, 9);
    assert!(!s.records.contains_key(&B));
}

#[test]
fn conflicts_go_to_the_later_change() {
    // Changed here at 50 and in KV (stamped 40, i.e. earlier): ours wins.
    let mut s = state(vec![(A, local(Some("prod"), 50, 5))]);
    let plan = run(
        &mut s,
        &listing(vec![entry("52:54:00:6b:00:10", "dev", 8, 40)]),
    );
    assert_eq!(
        plan.writes,
        vec![KvWrite::Put {
            mac: A,
            profile: "prod".into(),
            stamp_ms: 50,
            cas: 8
        }]
    );
    // KV stamped later than ours: KV wins.
    let mut s = state(vec![(A, local(Some("prod"), 50, 5))]);
    let plan = run(
        &mut s,
        &listing(vec![entry("52:54:00:6b:00:10", "dev", 8, 60)]),
    );
    assert!(plan.writes.is_empty());
    assert_eq!(s.records[&A], synced_at("dev", 60, 8));
    // A stamp from the future counts as now: a local change made later wins.
    let mut s = state(vec![(A, local(Some("prod"), NOW + 5, 5))]);
    let plan = run(
        &mut s,
        &listing(vec![entry("52:54:00:6b:00:10", "dev", 8, u64::MAX)]),
    );
    assert_eq!(plan.writes.len(), 1, "{plan:?}");
    // Unstamped KV write (an operator's `consul kv put`): dated when seen,
    // so later than a change made here before.
    let mut s = state(vec![(A, local(Some("prod"), 50, 5))]);
    run(
        &mut s,
        &listing(vec![entry("52:54:00:6b:00:10", "dev", 8, 0)]),
    );
    assert_eq!(s.records[&A], synced_at("dev", NOW, 8));
    // Deleted in KV after it agreed with us, changed here before that was seen.
    let mut s = state(vec![(A, local(Some("prod"), 50, 5))]);
    let plan = run(&mut s, &listing(vec![]));
    assert!(plan.writes.is_empty() && s.records.is_empty(), "{plan:?}");
}

fn synced_at(profile: &str, at: u64, index: u64) -> AssignmentRecord {
    AssignmentRecord {
        profile: Some(profile.into()),
        changed_ms: at,
        kv_index: index,
        pending: false,
    }
}

#[test]
fn refused_entries_never_replace_an_assignment_and_are_reported() {
    let mut s = state(vec![(A, synced("dev", 5))]);
    let plan = run(
        &mut s,
        &listing(vec![
            entry("52:54:00:6b:00:10", "gpu", 9, 0),
            entry("52:54:00:6b:00:20", "", 10, 0),
            entry("not-a-mac", "dev", 11, 0),
            entry("52-54-00-6B-00-30", "dev", 12, 0),
            KvEntry {
                value: vec![0xff, 0xfe],
                ..entry("52:54:00:6b:00:40", "", 13, 0)
            },
            entry("", "", 14, 0),
        ]),
    );
    assert!(plan.writes.is_empty());
    assert_eq!(s.records.len(), 1);
    assert_eq!(s.records[&A], synced("dev", 5), "last good kept");
    let all = s.refused.join("\n");
    for needle in [
        "kindling/assignments/52:54:00:6b:00:10 = \"gpu\" refused: profile \"gpu\" is not defined by the site (known: dev, prod); 52:54:00:6b:00:10 keeps profile dev",
        "kindling/assignments/52:54:00:6b:00:20 = \"\" refused: the value is empty",
        "kindling/assignments/not-a-mac refused: invalid MAC address",
        "write the MAC lower-case with colons: kindling/assignments/52:54:00:6b:00:30",
        "refused: the value is not text",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    assert_eq!(s.refused.len(), 5, "{all}");
    assert_eq!(s.problems().len(), 5);
    // Fixed in KV: taken, and the problem is gone.
    run(
        &mut s,
        &listing(vec![entry("52:54:00:6b:00:10", "prod", 15, 0)]),
    );
    assert_eq!(s.records[&A].profile.as_deref(), Some("prod"));
    assert!(s.refused.is_empty());
    // A refused entry over a newer local change is replaced by it.
    let mut s = state(vec![(A, local(Some("prod"), NOW + 1, 5))]);
    let plan = run(
        &mut s,
        &listing(vec![entry("52:54:00:6b:00:10", "gpu", 9, 0)]),
    );
    assert_eq!(plan.writes.len(), 1);
    // An assignment to a profile a newer overlay dropped: pushed once,
    // then in step (not pushed again and again), and reported.
    let mut s = state(vec![(A, local(Some("gpu"), 50, 0))]);
    assert_eq!(run(&mut s, &listing(vec![])).writes.len(), 1);
    let plan = run(
        &mut s,
        &listing(vec![entry("52:54:00:6b:00:10", "gpu", 9, 50)]),
    );
    assert!(plan.writes.is_empty(), "{plan:?}");
    assert_eq!(s.pending(), 0);
    assert!(
        s.refused[0].ends_with("kept, but not in force until the site defines it"),
        "{:?}",
        s.refused
    );
}

#[test]
fn a_rebuilt_kv_is_reseeded_and_a_new_one_claimed() {
    let mut s = state(vec![(A, synced("dev", 5)), (B, local(None, 50, 6))]);
    let mut l = listing(vec![]);
    l.epoch = None;
    let plan = run(&mut s, &l);
    assert_eq!(
        plan.writes,
        vec![
            KvWrite::ClaimEpoch("seed".into()),
            KvWrite::Put {
                mac: A,
                profile: "dev".into(),
                stamp_ms: 10,
                cas: 0
            }
        ]
    );
    assert!(plan.events[0].contains("re-seeding"), "{plan:?}");
    assert!(!s.records.contains_key(&B), "nothing to delete in a new KV");
    // The claimed epoch is adopted on the next listing.
    let mut l = listing(vec![entry("52:54:00:6b:00:10", "dev", 3, 10)]);
    l.epoch = Some("seed".into());
    let plan = run(&mut s, &l);
    assert!(plan.writes.is_empty());
    assert_eq!(s.kv_epoch.as_deref(), Some("seed"));
    assert_eq!(s.records[&A], synced_at("dev", 10, 3));
}

#[test]
fn problems_name_held_back_changes_only_while_kv_is_meant_to_be_used() {
    let mut s = state(vec![(A, local(Some("prod"), 50, 0))]);
    s.kv_status = Some(KvStatus::LocalOnly("stack.consul.enabled = false".into()));
    assert!(s.problems().is_empty());
    s.kv_status = Some(KvStatus::Waiting("Consul not reachable".into()));
    assert_eq!(
        s.problems(),
        vec!["1 assignment change(s) kept locally, not yet in Consul KV: Consul not reachable"]
    );
}

/// Every branch of `decide`, one row each: (what it covers, the local
/// record, KV's side, the record change, the write, a word in the event,
/// a word in the refusal).
#[test]
fn decide_table() {
    use RecordChange::{Agree, Keep, Remove, Take};
    let valid = |p: &str, index: u64, flags: u64| KvSide::Valid {
        profile: p.into(),
        index,
        flags,
    };
    let refused = |text: Option<&str>, index: u64, flags: u64| KvSide::Refused {
        index,
        flags,
        what: "Consul KV k = v".into(),
        reason: "bad".into(),
        text: text.map(String::from),
    };
    let put = |p: &str, stamp_ms: u64, cas: u64| {
        Some(KvWrite::Put {
            mac: A,
            profile: p.into(),
            stamp_ms,
            cas,
        })
    };
    type Row = (
        &'static str,
        Option<AssignmentRecord>,
        KvSide,
        RecordChange,
        Option<KvWrite>,
        Option<&'static str>,
        Option<&'static str>,
    );
    let rows: Vec<Row> = vec![
        // No local record.
        (
            "new in KV",
            None,
            valid("dev", 7, 0),
            Take(synced_at("dev", NOW, 7)),
            None,
            Some("from Consul KV"),
            None,
        ),
        (
            "new in KV, stamped",
            None,
            valid("dev", 7, 40),
            Take(synced_at("dev", 40, 7)),
            None,
            Some("from Consul KV"),
            None,
        ),
        (
            "refused, nothing here",
            None,
            refused(None, 7, 0),
            Keep,
            None,
            None,
            Some("keeps no assignment"),
        ),
        (
            "nothing anywhere",
            None,
            KvSide::Absent,
            Keep,
            None,
            None,
            None,
        ),
        // KV holds our own profile, which the site dropped.
        (
            "own dropped profile, synced",
            Some(synced("gpu", 5)),
            refused(Some("gpu"), 9, 0),
            Agree { index: 9 },
            None,
            None,
            Some("not in force"),
        ),
        (
            "own dropped profile, pending",
            Some(local(Some("gpu"), 50, 0)),
            refused(Some("gpu"), 9, 50),
            Agree { index: 9 },
            None,
            None,
            Some("not in force"),
        ),
        // In step with KV, not changed here.
        (
            "synced, deleted in KV",
            Some(synced("dev", 5)),
            KvSide::Absent,
            Remove,
            None,
            Some("unassigned in Consul KV"),
            None,
        ),
        (
            "synced, same in KV",
            Some(synced("dev", 5)),
            valid("dev", 6, 0),
            Agree { index: 6 },
            None,
            None,
            None,
        ),
        (
            "synced, changed in KV",
            Some(synced("dev", 5)),
            valid("prod", 6, 30),
            Take(synced_at("prod", 30, 6)),
            None,
            Some("(was profile dev)"),
            None,
        ),
        (
            "synced, refused in KV",
            Some(synced("dev", 5)),
            refused(Some("gpu"), 6, 0),
            Keep,
            None,
            None,
            Some("keeps profile dev"),
        ),
        // Changed here, not yet in KV.
        (
            "unassigned here, gone in KV",
            Some(local(None, 50, 5)),
            KvSide::Absent,
            Remove,
            None,
            None,
            None,
        ),
        (
            "new here",
            Some(local(Some("prod"), 50, 0)),
            KvSide::Absent,
            Keep,
            put("prod", 50, 0),
            None,
            None,
        ),
        (
            "changed here after KV's deletion",
            Some(local(Some("prod"), NOW, 5)),
            KvSide::Absent,
            Keep,
            put("prod", NOW, 0),
            None,
            None,
        ),
        (
            "changed here before KV's deletion",
            Some(local(Some("prod"), 50, 5)),
            KvSide::Absent,
            Remove,
            None,
            Some("lost to its deletion"),
            None,
        ),
        (
            "our push landed",
            Some(local(Some("prod"), 50, 5)),
            valid("prod", 9, 50),
            Agree { index: 9 },
            None,
            None,
            None,
        ),
        (
            "KV unchanged since",
            Some(local(Some("prod"), 50, 5)),
            valid("dev", 5, 0),
            Keep,
            put("prod", 50, 5),
            None,
            None,
        ),
        (
            "unassigned here, KV unchanged",
            Some(local(None, 50, 5)),
            valid("dev", 5, 0),
            Keep,
            Some(KvWrite::Delete { mac: A, cas: 5 }),
            None,
            None,
        ),
        (
            "both changed, ours later",
            Some(local(Some("prod"), 50, 5)),
            valid("dev", 8, 40),
            Keep,
            put("prod", 50, 8),
            Some("set here wins"),
            None,
        ),
        (
            "both changed, same time",
            Some(local(Some("prod"), 50, 5)),
            valid("dev", 8, 50),
            Keep,
            put("prod", 50, 8),
            Some("set here wins"),
            None,
        ),
        (
            "both changed, KV later",
            Some(local(Some("prod"), 50, 5)),
            valid("dev", 8, 60),
            Take(synced_at("dev", 60, 8)),
            None,
            Some("from Consul KV wins"),
            None,
        ),
        (
            "both changed, KV unstamped",
            Some(local(Some("prod"), 50, 5)),
            valid("dev", 8, 0),
            Take(synced_at("dev", NOW, 8)),
            None,
            Some("from Consul KV wins"),
            None,
        ),
        (
            "both changed, KV from the future",
            Some(local(Some("prod"), NOW, 5)),
            valid("dev", 8, u64::MAX),
            Keep,
            put("prod", NOW, 8),
            Some("set here wins"),
            None,
        ),
        (
            "refused in KV, ours later",
            Some(local(Some("prod"), 50, 5)),
            refused(Some("gpu"), 8, 40),
            Keep,
            put("prod", 50, 8),
            None,
            Some("replacing it with profile prod"),
        ),
        (
            "refused in KV, KV later",
            Some(local(Some("prod"), 50, 5)),
            refused(None, 8, 60),
            Keep,
            None,
            None,
            Some("not pushed over the later KV entry"),
        ),
    ];
    for (what, record, side, change, write, event, refusal) in rows {
        let d = decide(A, record.as_ref(), side, NOW);
        assert_eq!(d.record, change, "{what}");
        assert_eq!(d.write, write, "{what}");
        match (event, &d.event) {
            (Some(word), Some(line)) => assert!(line.contains(word), "{what}: {line}"),
            (None, None) => {}
            (want, got) => panic!("{what}: event {got:?}, wanted {want:?}"),
        }
        match (refusal, &d.refused) {
            (Some(word), Some(line)) => assert!(line.contains(word), "{what}: {line}"),
            (None, None) => {}
            (want, got) => panic!("{what}: refusal {got:?}, wanted {want:?}"),
        }
    }
}
