//! Interface, address and route changes over rtnetlink: link up, MTU, VLAN,
//! the one IPv4 address of a role, the default route, and read-back for status.
//!
//! Owns every netlink write the service makes. It never decides *what* to
//! configure (that is `plan` and `service`) and never shells out to `ip`.

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkUnspec, LinkVlan, RouteMessageBuilder};
use std::net::{IpAddr, Ipv4Addr};

#[derive(Debug, thiserror::Error)]
pub enum LinkChangeError {
    #[error("set {device} up (mtu {mtu:?}): {source}")]
    SetUp {
        device: String,
        mtu: Option<u32>,
        source: rtnetlink::Error,
    },
    #[error("create VLAN {vlan} on {parent}: {source}")]
    CreateVlan {
        parent: String,
        vlan: u16,
        source: rtnetlink::Error,
    },
    #[error("find interface {device}: {source}")]
    FindLink {
        device: String,
        source: rtnetlink::Error,
    },
    #[error("interface {0} vanished right after it was created")]
    LinkVanished(String),
    #[error("list addresses of {device}: {source}")]
    ListAddresses {
        device: String,
        source: rtnetlink::Error,
    },
    #[error("add address {address}/{prefix_len} to {device}: {source}")]
    AddAddress {
        device: String,
        address: Ipv4Addr,
        prefix_len: u8,
        source: rtnetlink::Error,
    },
    #[error("remove address {address} from {device}: {source}")]
    RemoveAddress {
        device: String,
        address: IpAddr,
        source: rtnetlink::Error,
    },
    #[error("set default route via {gateway} on {device}: {source}")]
    SetDefaultRoute {
        device: String,
        gateway: Ipv4Addr,
        source: rtnetlink::Error,
    },
    #[error("list routes: {0}")]
    ListRoutes(rtnetlink::Error),
    #[error("remove route {route}: {source}")]
    RemoveRoute {
        route: String,
        source: rtnetlink::Error,
    },
}

/// One interface the service configures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub name: String,
    pub index: u32,
}

pub async fn set_up(
    handle: &Handle,
    dev: &Device,
    mtu: Option<u32>,
) -> Result<(), LinkChangeError> {
    let mut msg = LinkUnspec::new_with_index(dev.index).up();
    if let Some(mtu) = mtu {
        msg = msg.mtu(mtu);
    }
    handle
        .link()
        .set(msg.build())
        .execute()
        .await
        .map_err(|source| LinkChangeError::SetUp {
            device: dev.name.clone(),
            mtu,
            source,
        })
}

/// The VLAN device on `parent` (`<parent>.<id>`, cut to 15 bytes), created if missing.
pub async fn ensure_vlan(
    handle: &Handle,
    parent: &Device,
    vlan: u16,
) -> Result<Device, LinkChangeError> {
    let mut name = format!("{}.{vlan}", parent.name);
    if name.len() > 15 {
        name = format!("vlan{vlan}");
    }
    if let Some(index) = index_of(handle, &name).await? {
        return Ok(Device { name, index });
    }
    handle
        .link()
        .add(LinkVlan::new(&name, parent.index, vlan).up().build())
        .execute()
        .await
        .map_err(|source| LinkChangeError::CreateVlan {
            parent: parent.name.clone(),
            vlan,
            source,
        })?;
    let index = index_of(handle, &name)
        .await?
        .ok_or_else(|| LinkChangeError::LinkVanished(name.clone()))?;
    Ok(Device { name, index })
}

/// Brings the loopback interface up. On the appliance nothing else does
/// (PID 1 is kindling-init), and local services (Consul, Vault) listen on
/// 127.0.0.1. A namespace without `lo` is left alone.
pub async fn set_loopback_up(handle: &Handle) -> Result<(), LinkChangeError> {
    match index_of(handle, "lo").await? {
        Some(index) => {
            let lo = Device {
                name: "lo".into(),
                index,
            };
            set_up(handle, &lo, None).await
        }
        None => Ok(()),
    }
}

async fn index_of(handle: &Handle, name: &str) -> Result<Option<u32>, LinkChangeError> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        // ENODEV: no such link.
        Err(rtnetlink::Error::NetlinkError(err)) if err.raw_code() == -libc::ENODEV => Ok(None),
        Err(source) => Err(LinkChangeError::FindLink {
            device: name.into(),
            source,
        }),
    }
}

/// Addresses on a device, both families, as (address, prefix length).
pub async fn addresses(
    handle: &Handle,
    dev: &Device,
) -> Result<Vec<(IpAddr, u8)>, LinkChangeError> {
    Ok(address_messages(handle, dev)
        .await?
        .iter()
        .filter_map(address_of)
        .collect())
}

async fn address_messages(
    handle: &Handle,
    dev: &Device,
) -> Result<Vec<AddressMessage>, LinkChangeError> {
    handle
        .address()
        .get()
        .set_link_index_filter(dev.index)
        .execute()
        .try_collect()
        .await
        .map_err(|source| LinkChangeError::ListAddresses {
            device: dev.name.clone(),
            source,
        })
}

fn address_of(msg: &AddressMessage) -> Option<(IpAddr, u8)> {
    msg.attributes.iter().find_map(|attr| match attr {
        AddressAttribute::Address(ip) => Some((*ip, msg.header.prefix_len)),
        _ => None,
    })
}

/// Deletes the address `msg` describes (`address`, for the error) from the device.
async fn remove_address(
    handle: &Handle,
    dev: &Device,
    msg: AddressMessage,
    address: IpAddr,
) -> Result<(), LinkChangeError> {
    handle
        .address()
        .del(msg)
        .execute()
        .await
        .map_err(|source| LinkChangeError::RemoveAddress {
            device: dev.name.clone(),
            address,
            source,
        })
}

/// Makes `address/prefix_len` the only IPv4 address on the device (a config
/// change must not leave the old one behind).
pub async fn set_only_ipv4(
    handle: &Handle,
    dev: &Device,
    address: Ipv4Addr,
    prefix_len: u8,
) -> Result<(), LinkChangeError> {
    let mut present = false;
    for msg in address_messages(handle, dev).await? {
        match address_of(&msg) {
            Some((IpAddr::V4(ip), len)) if ip == address && len == prefix_len => present = true,
            Some((ip @ IpAddr::V4(_), _)) => remove_address(handle, dev, msg, ip).await?,
            _ => {}
        }
    }
    if present {
        return Ok(());
    }
    handle
        .address()
        .add(dev.index, IpAddr::V4(address), prefix_len)
        .replace()
        .execute()
        .await
        .map_err(|source| LinkChangeError::AddAddress {
            device: dev.name.clone(),
            address,
            prefix_len,
            source,
        })
}

/// Removes one IPv4 address if present (lease lost).
pub async fn remove_ipv4(
    handle: &Handle,
    dev: &Device,
    address: Ipv4Addr,
) -> Result<(), LinkChangeError> {
    for msg in address_messages(handle, dev).await? {
        if matches!(address_of(&msg), Some((IpAddr::V4(ip), _)) if ip == address) {
            remove_address(handle, dev, msg, IpAddr::V4(address)).await?;
        }
    }
    Ok(())
}

pub async fn set_default_route(
    handle: &Handle,
    dev: &Device,
    gateway: Ipv4Addr,
) -> Result<(), LinkChangeError> {
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .output_interface(dev.index)
        .build();
    handle
        .route()
        .add(route)
        .replace()
        .execute()
        .await
        .map_err(|source| LinkChangeError::SetDefaultRoute {
            device: dev.name.clone(),
            gateway,
            source,
        })
}

/// One IPv4 route of the main table, for status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RouteEntry {
    pub destination: String,
    pub gateway: Option<Ipv4Addr>,
    pub device_index: Option<u32>,
    /// Filled in by the service for the devices it knows.
    pub device: Option<String>,
}

async fn ipv4_route_messages(handle: &Handle) -> Result<Vec<RouteMessage>, LinkChangeError> {
    let mut query = RouteMessageBuilder::<Ipv4Addr>::new().build();
    query.header.address_family = AddressFamily::Inet;
    handle
        .route()
        .get(query)
        .execute()
        .try_collect()
        .await
        .map_err(LinkChangeError::ListRoutes)
}

pub async fn ipv4_routes(handle: &Handle) -> Result<Vec<RouteEntry>, LinkChangeError> {
    Ok(ipv4_route_messages(handle)
        .await?
        .iter()
        .filter(|msg| {
            msg.header.table == RouteMessage::default().header.table || msg.header.table == 254
        })
        .map(route_entry)
        .collect())
}

fn route_entry(msg: &RouteMessage) -> RouteEntry {
    let mut destination = None;
    let mut gateway = None;
    let mut device_index = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => destination = Some(*ip),
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
            RouteAttribute::Oif(index) => device_index = Some(*index),
            _ => {}
        }
    }
    let destination = format!(
        "{}/{}",
        destination.unwrap_or(Ipv4Addr::UNSPECIFIED),
        msg.header.destination_prefix_length
    );
    RouteEntry {
        destination,
        gateway,
        device_index,
        device: None,
    }
}

/// Removes the default routes through `dev` (lease lost).
pub async fn remove_default_routes(handle: &Handle, dev: &Device) -> Result<(), LinkChangeError> {
    for msg in ipv4_route_messages(handle).await? {
        let entry = route_entry(&msg);
        if msg.header.destination_prefix_length == 0 && entry.device_index == Some(dev.index) {
            handle.route().del(msg).execute().await.map_err(|source| {
                LinkChangeError::RemoveRoute {
                    route: format!("{entry:?}"),
                    source,
                }
            })?;
        }
    }
    Ok(())
}
