//! The fallback service table baked into the image
//! (`/etc/kindling/services.json`): init runs it when the config phase
//! fails, so a box with a bad or missing overlay still answers its status API.
//!
//! It uses the service-table types of `kindling-init-protocol`, so the file is
//! exactly what init parses; it never decides what a configured appliance runs (that is
//! `kindlingd config apply`'s job).

use kindling_init_protocol::table::{Readiness, ServiceSpec, ServiceTable};

/// Only the status API: no network roles, no PXE, no stack, because without
/// a verified site configuration the appliance must not hand out leases or
/// touch the uplink.
pub fn fallback_table() -> ServiceTable {
    let mut api = ServiceSpec::new("api", &["/bin/kindlingd", "api"]);
    api.env.insert("RUST_LOG".into(), "info".into());
    // kindlingd api signals readiness on KINDLING_NOTIFY_FD.
    api.readiness = Readiness::Notify;
    ServiceTable {
        hostname: Some("kindling".into()),
        services: vec![api],
        output_logs: None,
        syslog: None,
    }
}

pub fn fallback_json() -> Vec<u8> {
    // Serializing plain strings, numbers and maps with string keys cannot fail.
    let mut json = serde_json::to_vec_pretty(&fallback_table()).unwrap_or_default();
    json.push(b'\n');
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_table_is_what_init_accepts() {
        let table = ServiceTable::parse(&fallback_json(), "fallback").unwrap();
        assert_eq!(table, fallback_table());
        let names: Vec<_> = table.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["api"]);
        assert_eq!(table.services[0].readiness, Readiness::Notify);
        assert!(
            table.services[0].capabilities.is_empty(),
            "the fallback API needs no capability"
        );
    }
}
