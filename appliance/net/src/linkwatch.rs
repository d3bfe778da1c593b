//! Carrier changes from the kernel's link notifications (RTMGRP_LINK), as a
//! stream of `(ifindex, carrier)` the service reacts to.
//!
//! Owns the subscription socket. It never changes a link and never polls.

use futures_util::StreamExt;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::link::LinkFlags;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{AsyncSocket, SocketAddr};
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum LinkWatchError {
    #[error("open the netlink link-notification socket: {0}")]
    Open(std::io::Error),
    #[error("subscribe to link notifications: {0}")]
    Subscribe(std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarrierChange {
    pub index: u32,
    pub carrier: bool,
}

/// Starts watching; the returned receiver sees every link notification's
/// carrier state (duplicates included: the caller keeps the last value).
pub fn watch_carrier() -> Result<mpsc::UnboundedReceiver<CarrierChange>, LinkWatchError> {
    let (mut connection, _handle, mut messages) =
        rtnetlink::new_connection().map_err(LinkWatchError::Open)?;
    let groups = rtnetlink::constants::RTMGRP_LINK;
    connection
        .socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(0, groups))
        .map_err(LinkWatchError::Subscribe)?;
    tokio::spawn(connection);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some((message, _)) = messages.next().await {
            if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) =
                message.payload
            {
                let change = CarrierChange {
                    index: link.header.index,
                    carrier: link.header.flags.contains(LinkFlags::LowerUp),
                };
                if tx.send(change).is_err() {
                    break;
                }
            }
        }
    });
    Ok(rx)
}
