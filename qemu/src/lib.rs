//! kindling-lab: the QEMU lab of DESIGN.md. It creates its own network
//! namespaces (an upstream router with DHCP and an HTTP target, a LAN
//! namespace with the uplink and bootstrap-LAN bridges and taps), boots the
//! appliance VM from a kernel, ISO or raw disk, boots PXE node VMs, follows
//! their serial consoles, and tears everything down again. It also builds the
//! lab node payload and measures boot-to-ready.
//!
//! It never touches the host's own interfaces, never gives a VM user-mode
//! networking, and never signals a process it did not start.

pub mod accel;
pub mod api;
pub mod bench;
pub mod cmd;
pub mod demo;
pub mod dhcp_probe;
pub mod down;
pub mod error;
pub mod kernel;
pub mod lab;
pub mod network;
pub mod payload;
pub mod process;
pub mod qemu_lock;
pub mod running_vm;
pub mod sntp;
pub mod upstream;
pub mod vm;
pub mod watch;

pub use error::{LabError, Result};
pub use lab::{
    ApplianceBoot, ApplianceSpec, Lab, LabOptions, LogPolicy, NodeFirmware, NodeSpec, VmId,
};
pub use network::LabNames;
pub use vm::{AttachedDisk, DiskBus, NicModel};
