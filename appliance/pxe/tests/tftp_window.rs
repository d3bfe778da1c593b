//! RFC 7440 windowsize on the appliance's TFTP server, under induced loss
//! between namespaces this test creates (`kp-*`): the file
//! arrives byte-identical, and after every loss the server resends from the
//! block after the last one the client acknowledged, never anything before
//! it. A minimal client that asks for a window (tests/common/tftp_client.rs)
//! plays the node. The loss is an nftables rule dropping 5 % of the UDP
//! packets a namespace receives (`numgen random`): it works on kernels
//! without `sch_netem`, and a drop on input is silent to the sender (a drop
//! on output would fail its `sendto` instead). Skipped when not root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::tftp_client::{self, Event, Request};
use common::*;
use kindling_pxe::PxeSettings;
use std::net::SocketAddr;
use std::time::Duration;

const NODE_MAC: &str = "52:54:00:6b:00:31";
const FILE_BYTES: usize = 512 * 1024 + 77;

fn request(windowsize: Option<u16>) -> Request {
    Request {
        file: "payload.bin".into(),
        blksize: 1428,
        windowsize,
        silence: Duration::from_millis(150),
        give_up: Duration::from_secs(20),
        // A lost first block of a window is noticed by the server's timeout.
        server_timeout: Some(1),
        ack_delay: Duration::ZERO,
    }
}

fn fetch(pair: &NetnsPair, req: Request) -> tftp_client::Transfer {
    let server: SocketAddr = "192.168.100.1:69".parse().unwrap();
    in_netns(&pair.node, move || tftp_client::get(server, &req)).unwrap()
}

/// Drops 5 % of the UDP packets namespace `ns` receives.
fn drop_five_percent_received(ns: &str) {
    sh(
        ns,
        "nft add table inet kp_loss
         nft add chain inet kp_loss input '{ type filter hook input priority 0; }'
         nft add rule inet kp_loss input meta l4proto udp numgen random mod 100 '<' 5 drop",
    );
}

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// After the client sent an ACK for block `a`, no DATA block at or below
/// `a` may arrive: the server resends from `a + 1`. Holds when ACKs are
/// never lost (the loss is on the data direction only) and the link does
/// not reorder. Returns how many blocks arrived more than once.
fn check_resends_start_after_last_ack(events: &[Event]) -> usize {
    let mut acked: u64 = 0;
    let mut seen = std::collections::HashSet::new();
    let mut resent = 0;
    for (i, e) in events.iter().enumerate() {
        match *e {
            Event::Ack(a) | Event::ReAck(a) => acked = acked.max(a),
            Event::Data(b) => {
                assert!(
                    b > acked,
                    "block {b} arrived (event {i}) after block {acked} was acknowledged: \
                     the server resent from before the last ACK"
                );
                if !seen.insert(b) {
                    resent += 1;
                }
            }
        }
    }
    resent
}

#[test]
fn windowed_transfer_survives_loss_and_resends_from_the_last_ack() {
    require_root!();
    let dirs = Dirs::new();
    let payload = pseudo_random(FILE_BYTES);
    std::fs::write(dirs.path("boot/payload.bin"), &payload).unwrap();
    let settings = PxeSettings::from_site(&lab_site(), dirs.paths(&dirs.path("boot"))).unwrap();
    let pair = NetnsPair::new(NODE_MAC);
    start_service(&pair.server, &pair.server_if, settings);
    pair.node_static("192.168.100.51/24");

    // Clean link first: the window is agreed and the file is identical.
    let clean = fetch(&pair, request(Some(16)));
    assert_eq!(clean.window, 16, "the server agrees to windowsize 16");
    assert_eq!(clean.blksize, 1428);
    assert!(clean.data == payload, "clean transfer differs");
    let blocks = FILE_BYTES.div_ceil(1428) as u64;
    assert!(
        clean.acks_sent <= blocks / 16 + 2,
        "one ACK per window on a clean link, got {} for {blocks} blocks",
        clean.acks_sent
    );

    // 5 % of the server's packets lost (DATA only, so every ACK arrives).
    drop_five_percent_received(&pair.node);
    let lossy = fetch(&pair, request(Some(16)));
    assert!(lossy.data == payload, "transfer under data loss differs");
    let resent = check_resends_start_after_last_ack(&lossy.events);
    let reacks = lossy
        .events
        .iter()
        .filter(|e| matches!(e, Event::ReAck(_)))
        .count();
    eprintln!(
        "data loss: {reacks} re-ACKs, {resent} blocks resent, {:?}",
        lossy.elapsed
    );
    assert!(
        reacks > 0 && resent > 0,
        "5 % loss over {blocks} blocks must cause re-ACKs ({reacks}) and resent blocks ({resent})"
    );

    // Loss both ways (ACKs lost too): still byte-identical.
    drop_five_percent_received(&pair.server);
    let both = fetch(&pair, request(Some(16)));
    assert!(both.data == payload, "transfer under two-way loss differs");

    // Lock-step under the same loss still works (no windowsize asked).
    let lockstep = fetch(&pair, request(None));
    assert_eq!(lockstep.window, 1);
    assert!(lockstep.data == payload, "lock-step transfer differs");
}

#[test]
fn resend_check_catches_a_server_that_goes_back() {
    // The hostile case for the checker itself: a block at or below the
    // acknowledged one arriving after the ACK must be caught.
    let good = [
        Event::Data(1),
        Event::Data(3),
        Event::ReAck(1),
        Event::Data(2),
        Event::Data(3),
        Event::Ack(3),
    ];
    assert_eq!(check_resends_start_after_last_ack(&good), 1);
    let bad = [
        Event::Data(1),
        Event::Data(2),
        Event::Ack(2),
        Event::Data(2),
    ];
    assert!(std::panic::catch_unwind(|| check_resends_start_after_last_ack(&bad)).is_err());
}
