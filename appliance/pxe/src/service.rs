//! `PxeService`: the one long-running PXE process. Binds every listener
//! (DHCP 67 [+ 4011 in proxy mode], rogue watch on 68, TFTP 69, HTTP, RA),
//! signals readiness once all required listeners are bound, then keeps
//! leases, inventory and `status/pxe.json` flushed until SIGTERM/SIGINT.
//!
//! Owns wiring and lifecycle only. A listener that dies ends the service with
//! an error (init restarts it); optional parts (rogue watch, RAs) that cannot
//! start are reported in status and the rest keeps serving.

use crate::dhcp::client::ClientFacts;
use crate::dhcp::commit::{self, AckQueue, LeaseWriter};
use crate::dhcp::socket::{open_udp, DhcpObserver, SocketError};
use crate::dhcp::{self, DhcpResponder, Handled, NodePolicy, Port};
use crate::enroll::EnrollmentSource;
use crate::grants::GrantKeeper;
use crate::holder::{LeaseHolders, Neighbours, OwnLeases};
use crate::http::handler::{NodeGate, PxeHttp};
use crate::leases::LeaseStore;
use crate::local_boot::boots_from_disk;
use crate::settings::PxeSettings;
use crate::status::{write_status, Stats, StatusFile};
use kindling_clock::unix_now;
use kindling_inventory::policy::node_facts;
use kindling_inventory::{
    CatalogWatch, ForgetStore, Inventory, NomadNodesWatch, ProfileChoice, ReprovisionStore,
    ReprovisionWatch,
};
use kindling_site::DhcpMode;
use kindling_site::MacAddr;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error(transparent)]
    Http(#[from] crate::http::listener::ListenError),
    #[error("no interface carries the LAN address {0} (is the net service up?)")]
    NoLanInterface(Ipv4Addr),
    #[error("{listener} stopped: {reason}")]
    ListenerDied {
        listener: &'static str,
        reason: String,
    },
    #[error("block signals: {0}")]
    Signals(nix::Error),
    #[error("clone the DHCP socket for the ACK committer: {0}")]
    SocketClone(std::io::Error),
}

/// Ports and knobs; `Default` is the appliance's.
#[derive(Clone)]
pub struct ServiceOptions {
    /// LAN interface name; found by its address when `None`.
    pub interface: Option<String>,
    pub dhcp_port: u16,
    pub client_port: u16,
    pub proxy_port: u16,
    pub tftp_port: u16,
    /// Open HTTP connections served at once; more get a 503.
    pub http_max_connections: usize,
    pub enrollment: Arc<dyn EnrollmentSource>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            interface: None,
            dhcp_port: 67,
            client_port: 68,
            proxy_port: 4011,
            tftp_port: 69,
            http_max_connections: 256,
            enrollment: Arc::new(crate::enroll::NoEnrollment),
        }
    }
}

/// The interface that holds `addr`, waiting up to `wait` for it to appear.
pub fn interface_with_addr(addr: Ipv4Addr, wait: Duration) -> Option<String> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
            for ifa in addrs {
                let v4 = ifa
                    .address
                    .as_ref()
                    .and_then(|a| a.as_sockaddr_in())
                    .map(|s| s.ip());
                if v4 == Some(addr) {
                    return Some(ifa.interface_name);
                }
            }
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What the DHCP loop consults and feeds: profile policy and the inventory.
struct DhcpView {
    inventory: Arc<Inventory>,
    grants: Arc<GrantKeeper>,
    settings: Arc<PxeSettings>,
}

impl NodePolicy for DhcpView {
    fn may_boot(&self, facts: &ClientFacts) -> bool {
        let node = node_facts(facts.mac, facts.arch, Some(facts.firmware));
        self.inventory.profile_for_facts(&node) != ProfileChoice::NotServed
            && !boots_from_disk(&self.inventory, &self.grants, &self.settings, &facts.mac)
    }
    fn reserved_ip(&self, mac: &MacAddr) -> Option<Ipv4Addr> {
        self.settings.reservations.get(mac).and_then(|r| r.ip)
    }
    fn hostname(&self, mac: &MacAddr) -> Option<String> {
        self.settings
            .reservations
            .get(mac)
            .and_then(|r| r.hostname.clone())
    }
}

impl DhcpObserver for DhcpView {
    fn observed(&self, handled: &Handled) {
        let f = &handled.facts;
        self.inventory
            .observe_dhcp(f.mac, handled.bound, f.arch, f.firmware, unix_now());
    }
}

enum Event {
    Died(&'static str, String),
    Shutdown,
}

/// The grant keeper for this site: re-arm requests from the data
/// partition, each profile's allowance for unknown MACs.
pub fn grant_keeper(
    settings: &PxeSettings,
    inventory: Arc<Inventory>,
    enrollment: Arc<dyn EnrollmentSource>,
    stats: Arc<Stats>,
) -> GrantKeeper {
    let allowance = settings
        .profiles
        .iter()
        .map(|(name, p)| (name.clone(), p.enrollment.unknown_macs))
        .collect();
    GrantKeeper::new(
        inventory,
        enrollment,
        ReprovisionWatch::new(ReprovisionStore::in_state_dir(&settings.paths.state_dir)),
        allowance,
        stats,
    )
}

/// How often grants whose life is over are settled, and the enrollment
/// token renewed.
const GRANT_SWEEP: Duration = Duration::from_secs(10);
const TOKEN_RENEWAL: Duration = Duration::from_secs(3600);

fn watch_grants(grants: &GrantKeeper) {
    // The bootstrap renewed the token at boot; from then on, hourly.
    let mut renewed = std::time::Instant::now();
    loop {
        grants.sweep(unix_now());
        if renewed.elapsed() >= TOKEN_RENEWAL {
            grants.renew();
            renewed = std::time::Instant::now();
        }
        std::thread::sleep(GRANT_SWEEP);
    }
}

fn spawn(
    name: &'static str,
    tx: &mpsc::Sender<Event>,
    body: impl FnOnce() -> String + Send + 'static,
) {
    let thread_tx = tx.clone();
    let started = std::thread::Builder::new()
        .name(format!("pxe-{name}"))
        .spawn(move || {
            let reason = body();
            let _ = thread_tx.send(Event::Died(name, reason));
        });
    if let Err(e) = started {
        let _ = tx.send(Event::Died(name, format!("could not start thread: {e}")));
    }
}

/// Runs the service until SIGTERM/SIGINT (Ok) or a listener dies (Err).
/// `ready` is called once every required listener is bound.
pub fn run(
    settings: PxeSettings,
    options: ServiceOptions,
    ready: impl FnOnce(),
) -> Result<(), ServiceError> {
    // Block the stop signals in every thread; one thread waits for them so
    // the final flush happens before exit.
    let mut stop = nix::sys::signal::SigSet::empty();
    stop.add(nix::sys::signal::Signal::SIGTERM);
    stop.add(nix::sys::signal::Signal::SIGINT);
    stop.thread_block().map_err(ServiceError::Signals)?;

    let settings = Arc::new(settings);
    let stats = Arc::new(Stats::default());
    let mut problems: Vec<String> = Vec::new();

    let (inventory, inv_problem) =
        Inventory::open(&settings.paths.state_dir, settings.profile_policy());
    problems.extend(inv_problem);
    let inventory = Arc::new(
        inventory
            .with_discovered_cap(settings.max_discovered)
            .with_membership(settings.membership.clone()),
    );

    let now = unix_now();
    let reserved = settings
        .reservations
        .iter()
        .filter_map(|(m, r)| r.ip.map(|ip| (*m, ip)));
    let leases_path = settings.paths.leases_file();
    let leases = match LeaseStore::new(settings.range_start, settings.range_end, reserved.clone())
        .load(leases_path.clone(), now)
    {
        Ok(store) => store,
        Err(e) => {
            let aside = leases_path.with_extension(format!("corrupt.{now}"));
            let _ = std::fs::rename(&leases_path, &aside);
            problems.push(format!("{e}; moved to {}", aside.display()));
            LeaseStore::new(settings.range_start, settings.range_end, reserved)
                .load(leases_path, now)
                .unwrap_or_else(|_| LeaseStore::new(settings.range_start, settings.range_end, []))
        }
    };

    let interface = match options.interface.clone() {
        Some(i) => i,
        None => interface_with_addr(settings.lan_addr, Duration::from_secs(10))
            .ok_or(ServiceError::NoLanInterface(settings.lan_addr))?,
    };
    let files = dhcp::boot::BootFiles::from_dir(&settings.paths.boot_dir);
    let responder = Arc::new(Mutex::new(DhcpResponder::new(
        (*settings).clone(),
        files,
        leases,
    )));
    let grants = Arc::new(grant_keeper(
        &settings,
        inventory.clone(),
        options.enrollment.clone(),
        stats.clone(),
    ));
    let view = Arc::new(DhcpView {
        inventory: inventory.clone(),
        grants: grants.clone(),
        settings: settings.clone(),
    });

    // Bind everything before reporting ready.
    let any = Ipv4Addr::UNSPECIFIED;
    let dhcp_socket = open_udp(SocketAddrV4::new(any, options.dhcp_port), Some(&interface))?;
    let proxy_socket = match settings.mode {
        DhcpMode::Proxy => Some(open_udp(
            SocketAddrV4::new(any, options.proxy_port),
            Some(&interface),
        )?),
        DhcpMode::Authoritative => None,
    };
    let tftp_socket = open_udp(
        SocketAddrV4::new(settings.lan_addr, options.tftp_port),
        None,
    )?;
    let http_server = crate::http::listener::bind(SocketAddr::V4(SocketAddrV4::new(
        settings.lan_addr,
        settings.http_port,
    )))?;
    let rogue_socket = match open_udp(
        SocketAddrV4::new(any, options.client_port),
        Some(&interface),
    ) {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(format!("rogue DHCP detection off: {e}"));
            None
        }
    };
    let ra = if settings.router_advertisements {
        match crate::ra::RaSender::open(&interface) {
            Ok(ra) => Some(ra),
            Err(e) => {
                problems.push(format!("IPv6 router advertisements off: {e}"));
                None
            }
        }
    } else {
        None
    };
    for p in &problems {
        tracing::warn!("pxe: {p}");
    }

    let (tx, rx) = mpsc::channel::<Event>();
    let lease_writer = Arc::new(LeaseWriter::new(responder.clone()));
    let (acks, pending_acks) = AckQueue::new();
    {
        let socket = dhcp_socket.try_clone().map_err(ServiceError::SocketClone)?;
        let (writer, stats) = (lease_writer.clone(), stats.clone());
        spawn("dhcp-commit", &tx, move || {
            commit::run_committer(&pending_acks, &socket, &writer, &stats);
            "the DHCP receive loop stopped".into()
        });
    }
    {
        let (responder, view, stats) = (responder.clone(), view.clone(), stats.clone());
        spawn("dhcp", &tx, move || {
            let acks = Some(&acks);
            dhcp::socket::serve(&dhcp_socket, Port::Dhcp, &responder, &*view, &stats, acks)
                .to_string()
        });
    }
    if let Some(sock) = proxy_socket {
        let (responder, view, stats) = (responder.clone(), view.clone(), stats.clone());
        // ProxyDHCP binds no leases: its ACKs never wait for the disk.
        spawn("proxydhcp", &tx, move || {
            dhcp::socket::serve(&sock, Port::ProxyPxe, &responder, &*view, &stats, None).to_string()
        });
    }
    if let Some(sock) = rogue_socket {
        let (stats, id) = (stats.clone(), settings.lan_addr);
        // Detection is best effort: its end is logged, not fatal.
        std::thread::Builder::new()
            .name("pxe-rogue".into())
            .spawn(move || {
                let e = dhcp::rogue::watch(&sock, id, &stats);
                tracing::warn!(error = %e, "pxe: rogue DHCP watch stopped");
            })
            .map_err(|e| tracing::warn!(error = %e, "pxe: rogue watch not started"))
            .ok();
    }
    {
        let (root, stats) = (settings.paths.boot_dir.clone(), stats.clone());
        spawn("tftp", &tx, move || {
            crate::tftp::serve_blocking(tftp_socket, &root, stats).to_string()
        });
    }
    let holders: Arc<dyn LeaseHolders> = match settings.mode {
        DhcpMode::Authoritative => Arc::new(OwnLeases::new(responder.clone())),
        DhcpMode::Proxy => Arc::new(Neighbours::default()),
    };
    let http = Arc::new(PxeHttp::new(
        settings.clone(),
        inventory.clone(),
        NodeGate {
            holders,
            grants: grants.clone(),
        },
        stats.clone(),
    ));
    {
        let grants = grants.clone();
        // Vault lookups block: never on the status loop or a DHCP thread.
        std::thread::Builder::new()
            .name("pxe-grants".into())
            .spawn(move || watch_grants(&grants))
            .map_err(|e| tracing::warn!(error = %e, "pxe: grant watch not started"))
            .ok();
    }
    {
        let max = options.http_max_connections;
        spawn("http", &tx, move || {
            crate::http::listener::serve(http_server, http, max, Default::default()).to_string()
        });
    }
    if let Some(ra) = ra {
        let stats = stats.clone();
        std::thread::Builder::new()
            .name("pxe-ra".into())
            .spawn(move || ra.run(&stats))
            .map_err(|e| tracing::warn!(error = %e, "pxe: RA thread not started"))
            .ok();
    }
    {
        let tx = tx.clone();
        std::thread::Builder::new()
            .name("pxe-signals".into())
            .spawn(move || {
                let _ = stop.wait();
                let _ = tx.send(Event::Shutdown);
            })
            .map_err(|e| tracing::warn!(error = %e, "pxe: signal thread not started"))
            .ok();
    }

    let mode = match settings.mode {
        DhcpMode::Authoritative => "authoritative",
        DhcpMode::Proxy => "proxy",
    };
    let listeners = {
        let mut l = vec![
            format!("dhcp 0.0.0.0:{} on {interface}", options.dhcp_port),
            format!("tftp {}:{}", settings.lan_addr, options.tftp_port),
            format!("http {}:{}", settings.lan_addr, settings.http_port),
        ];
        if settings.mode == DhcpMode::Proxy {
            l.push(format!(
                "proxydhcp 0.0.0.0:{} on {interface}",
                options.proxy_port
            ));
        }
        l
    };
    let forget_store = ForgetStore::in_state_dir(&settings.paths.state_dir);
    // The catalog listing `kindlingd api` writes and Nomad's node list
    // `kindlingd nomad-nodes` writes: `joined` is decided from them.
    let catalog = Mutex::new(CatalogWatch::new(&settings.paths.state_dir));
    let nomad_nodes = Mutex::new(NomadNodesWatch::new(&settings.paths.state_dir));
    let flush = |ready: bool| {
        let now = unix_now();
        let leases_in_use = {
            let mut r = responder
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            r.leases_mut().prune(now);
            r.leases().active(now).count()
        };
        // ACKed leases are written by the committer before the ACK leaves;
        // this writes what changed without an ACK (releases, declines).
        if let Err(e) = lease_writer.flush(now) {
            tracing::warn!(error = %e, "pxe: lease flush failed");
        }
        // Forget requests from the API drop records before they are written.
        match forget_store.load() {
            Ok(requests) => {
                for mac in inventory.apply_forgets(&requests) {
                    tracing::info!(%mac, "pxe: node forgotten at the operator's request");
                }
            }
            Err(e) => tracing::warn!(error = %e, "pxe: forget requests unreadable"),
        }
        let listing = catalog
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .changed();
        if let Some(listing) = listing {
            inventory.set_catalog(listing, now);
        }
        let listing = nomad_nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .changed();
        if let Some(listing) = listing {
            inventory.set_nomad_nodes(listing, now);
        }
        // Inventory records are written behind, at most once a second and
        // never on the DHCP thread: a flood costs memory (capped), not fsyncs.
        if let Err(e) = inventory.flush_if_dirty() {
            tracing::warn!(error = %e, "pxe: inventory flush failed");
        }
        let mut counters = stats.counters();
        counters.insert("inventory_evicted", inventory.evicted());
        let status = StatusFile {
            service: "pxe",
            ready,
            mode,
            interface: Some(&interface),
            listeners: listeners.clone(),
            updated: now,
            counters,
            leases_in_use,
            inventory_max_discovered: inventory.discovered_cap(),
            rogue_dhcp_servers: stats.rogues(),
            inventory: inventory.summary(),
            // Startup problems, plus what the assignments file reports now
            // (refused Consul KV entries, changes not yet in KV).
            problems: problems
                .iter()
                .cloned()
                .chain(inventory.assignment_problems())
                .chain(grants.problem())
                .collect(),
            alerts: inventory
                .alerts()
                .into_iter()
                .map(|(mac, a)| {
                    let kind = serde_json::to_value(a.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    format!("{mac} {kind}: {}", a.detail)
                })
                .collect(),
        };
        if let Err(e) = write_status(&settings.paths.status_file, &status) {
            tracing::warn!(error = %e, path = %settings.paths.status_file.display(), "pxe: status write failed");
        }
    };
    flush(true);
    tracing::info!(%interface, mode, "pxe: ready");
    ready();
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Err(mpsc::RecvTimeoutError::Timeout) => flush(true),
            Ok(Event::Shutdown) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                flush(false);
                tracing::info!("pxe: stopped");
                return Ok(());
            }
            Ok(Event::Died(listener, reason)) => {
                flush(false);
                return Err(ServiceError::ListenerDied { listener, reason });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::dhcp::client::{ARCH_BIOS, ARCH_EFI_X64};
    use crate::settings::PxePaths;
    use kindling_inventory::testing::lab_site;
    use kindling_inventory::Firmware;
    use kindling_site::{BootFirmware, ProfileSelector, UnknownMacPolicy};

    fn facts(mac: &str, firmware: Firmware, arch: u16) -> ClientFacts {
        ClientFacts {
            mac: mac.parse().unwrap(),
            arch: Some(arch),
            firmware,
            is_ipxe: false,
            is_pxe: true,
            http_client: false,
            hostname: None,
        }
    }

    fn rack(name: &str) -> kindling_site::NodeTags {
        [("rack".to_string(), name.to_string())].into()
    }

    /// The lab site, unknown MACs ignored, UEFI machines of one vendor
    /// selected into `prod`, those of them in rack r12 into `dev`, and
    /// BIOS machines in rack r13 into `dev`.
    fn view(dir: &std::path::Path) -> DhcpView {
        let mut site = lab_site();
        site.pxe.unknown = UnknownMacPolicy::Ignore;
        let vendor_uefi = ProfileSelector {
            profile: "prod".parse().unwrap(),
            mac_prefix: Some("0c:42:a1".parse().unwrap()),
            firmware: Some(BootFirmware::Uefi),
            arch: None,
            tags: Default::default(),
        };
        site.selectors = vec![
            vendor_uefi.clone(),
            ProfileSelector {
                profile: "dev".parse().unwrap(),
                tags: rack("r12"),
                ..vendor_uefi
            },
            ProfileSelector {
                profile: "dev".parse().unwrap(),
                mac_prefix: None,
                firmware: Some(BootFirmware::Bios),
                arch: None,
                tags: rack("r13"),
            },
        ];
        assert!(site.validate().is_empty(), "{:?}", site.validate());
        let paths = PxePaths {
            state_dir: dir.to_path_buf(),
            ..PxePaths::default()
        };
        let settings = Arc::new(PxeSettings::from_site(&site, paths).unwrap());
        let (inventory, problem) = Inventory::open(dir, settings.profile_policy());
        assert!(problem.is_none(), "{problem:?}");
        let inventory = Arc::new(inventory);
        let grants = Arc::new(grant_keeper(
            &settings,
            inventory.clone(),
            Arc::new(crate::enroll::NoEnrollment),
            Arc::new(Stats::default()),
        ));
        DhcpView {
            inventory,
            grants,
            settings,
        }
    }

    #[test]
    fn selectors_decide_on_the_first_dhcp_packet() {
        let dir = tempfile::tempdir().unwrap();
        let view = view(dir.path());
        let vendor_uefi = facts("0c:42:a1:00:00:01", Firmware::Uefi, ARCH_EFI_X64);
        assert!(view.may_boot(&vendor_uefi), "never seen before, selected");
        assert_eq!(
            view.inventory.profile_for_facts(&node_facts(
                vendor_uefi.mac,
                vendor_uefi.arch,
                Some(vendor_uefi.firmware)
            )),
            ProfileChoice::Selected("prod".into())
        );
        let vendor_bios = facts("0c:42:a1:00:00:02", Firmware::Bios, ARCH_BIOS);
        assert!(
            !view.may_boot(&vendor_bios),
            "BIOS: no rule, unknown ignored"
        );
        let other = facts("0c:42:a2:00:00:01", Firmware::Uefi, ARCH_EFI_X64);
        assert!(!view.may_boot(&other));

        // Once seen (as `observed` records it), the HTTP side decides the
        // same from the inventory.
        view.inventory.observe_dhcp(
            vendor_uefi.mac,
            None,
            vendor_uefi.arch,
            vendor_uefi.firmware,
            1,
        );
        assert_eq!(
            view.inventory
                .profile_for(&"0c:42:a1:00:00:01".parse().unwrap()),
            ProfileChoice::Selected("prod".into())
        );
    }
    /// Tags as `kindling node tag`/`untag` leave them (through the API, in
    /// the assignments file), and the PXE service's recheck interval.
    fn retag(view: &DhcpView, mac: &str, set: kindling_site::NodeTags, unset: &[&str]) {
        let unset: Vec<String> = unset.iter().map(|k| k.to_string()).collect();
        view.inventory
            .assignment_store()
            .update(|s| {
                kindling_inventory::assignments::change_tags(s, mac.parse().unwrap(), &set, &unset)
            })
            .unwrap()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(600));
    }

    #[test]
    fn tagging_a_discovered_node_selects_its_next_boot_and_untagging_drops_back() {
        let dir = tempfile::tempdir().unwrap();
        let view = view(dir.path());
        let decided = |f: &ClientFacts| {
            view.inventory
                .profile_for_facts(&node_facts(f.mac, f.arch, Some(f.firmware)))
        };
        let bios = facts("0c:42:a1:00:00:02", Firmware::Bios, ARCH_BIOS);
        let uefi = facts("0c:42:a1:00:00:03", Firmware::Uefi, ARCH_EFI_X64);
        for f in [&bios, &uefi] {
            view.inventory
                .observe_dhcp(f.mac, None, f.arch, f.firmware, 1);
        }
        assert!(!view.may_boot(&bios), "discovered, no rule: ignored");
        assert_eq!(decided(&uefi), ProfileChoice::Selected("prod".into()));

        retag(&view, "0c:42:a1:00:00:02", rack("r13"), &[]);
        retag(&view, "0c:42:a1:00:00:03", rack("r12"), &[]);
        assert!(view.may_boot(&bios), "tagged: its next boot is served");
        assert_eq!(decided(&bios), ProfileChoice::Selected("dev".into()));
        assert_eq!(
            view.inventory.profile_for(&bios.mac),
            ProfileChoice::Selected("dev".into())
        );
        assert_eq!(
            decided(&uefi),
            ProfileChoice::Selected("dev".into()),
            "r12 refines the vendor rule"
        );
        // Another rack: no tag rule of its firmware matches.
        retag(&view, "0c:42:a1:00:00:02", rack("r12"), &[]);
        assert!(!view.may_boot(&bios));

        retag(&view, "0c:42:a1:00:00:02", Default::default(), &["rack"]);
        retag(&view, "0c:42:a1:00:00:03", Default::default(), &["rack"]);
        assert!(!view.may_boot(&bios), "untagged: ignored again");
        assert_eq!(
            decided(&uefi),
            ProfileChoice::Selected("prod".into()),
            "back to the vendor rule"
        );
    }
}
