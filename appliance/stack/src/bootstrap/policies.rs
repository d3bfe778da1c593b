//! The Vault and Consul policy texts the bootstrap writes. Kept together so a
//! reviewer sees every grant kindling makes in one place.

use crate::vault::TokenRole;

/// KV v2 mount for everything kindling stores in Vault.
pub const KV_MOUNT: &str = "kindling";
pub const APPROLE_MOUNT: &str = "approle";
pub const SSH_MOUNT: &str = "ssh";
pub const PKI_ROOT_MOUNT: &str = "pki";
pub const PKI_INT_MOUNT: &str = "pki_int";
/// Where Consul's management token is kept in [`KV_MOUNT`] (`accessor_id`,
/// `secret_id`): the bootstrap writes it once, the backup service reads it
/// for Consul's snapshot API (which needs `acl = "write"`).
pub const CONSUL_MANAGEMENT_KV: &str = "stack/consul/management";
/// Where Nomad's management token is kept in [`KV_MOUNT`]: the bootstrap
/// writes it once, `kindlingd nomad-nodes` reads it to list client nodes.
pub const NOMAD_MANAGEMENT_KV: &str = "stack/nomad/management";

/// The bootstrap's own token (`appliance-token` on the data partition): the
/// exact paths the steps and the enroller use, nothing else. It cannot seal,
/// rekey, generate a root token, restore raft storage, disable audit, enable
/// other auth methods or mount other engines, and it creates tokens only
/// through the named token roles. It does write the node policies and
/// AppRole roles, which a holder could abuse to grant itself more: it is
/// kept like a root secret (0600, the bootstrap's account only, used by the
/// one-shot bootstrap and never by a network-facing service).
///
/// It may read a raft snapshot (`sys/storage/raft/snapshot`) for the
/// backup service (`kindlingd backup`, same account): the snapshot is
/// Vault's storage still sealed by its barrier key, useless without the
/// unseal shares, and the backup is encrypted to the operators besides. It
/// cannot restore one (`snapshot-force` needs `sudo`; restoring is the
/// operator's, docs/backups.md).
///
/// It lists `pki_int`'s issued certificates to revoke a re-armed node's
/// ([`crate::node_certs`]).
pub const BOOTSTRAP_POLICY_NAME: &str = "kindling-bootstrap";
pub const BOOTSTRAP_POLICY: &str = r#"
path "sys/mounts" { capabilities = ["read"] }
path "sys/mounts/kindling" { capabilities = ["create", "read", "update"] }
path "sys/mounts/ssh" { capabilities = ["create", "read", "update"] }
path "sys/mounts/pki" { capabilities = ["create", "read", "update"] }
path "sys/mounts/pki_int" { capabilities = ["create", "read", "update"] }
path "sys/auth" { capabilities = ["read"] }
path "sys/auth/approle" { capabilities = ["create", "read", "update", "sudo"] }
path "sys/audit" { capabilities = ["read", "sudo"] }
path "sys/audit/file" { capabilities = ["create", "update", "sudo"] }
path "sys/storage/raft/snapshot" { capabilities = ["read"] }
path "sys/policy/node-*" { capabilities = ["create", "read", "update"] }
path "sys/policy/nomad-server" { capabilities = ["create", "read", "update"] }
path "sys/policy/consul-connect-ca" { capabilities = ["create", "read", "update"] }
path "sys/policy/kindling-enroll" { capabilities = ["create", "read", "update"] }
path "sys/policies/acl/kindling-enroll" { capabilities = ["read"] }
path "kindling/*" { capabilities = ["create", "read", "update", "list"] }
path "auth/approle/role/node-*" { capabilities = ["create", "read", "update", "list"] }
path "auth/token/roles/nomad-cluster" { capabilities = ["create", "read", "update"] }
path "auth/token/roles/nomad-server" { capabilities = ["create", "read", "update"] }
path "auth/token/roles/consul-connect-ca" { capabilities = ["create", "read", "update"] }
path "auth/token/roles/kindling-enroll" { capabilities = ["create", "read", "update"] }
path "auth/token/create/nomad-server" { capabilities = ["create", "update"] }
path "auth/token/create/consul-connect-ca" { capabilities = ["create", "update"] }
path "auth/token/create/kindling-enroll" { capabilities = ["create", "update"] }
path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/renew-self" { capabilities = ["update"] }
path "auth/token/lookup-accessor" { capabilities = ["update"] }
path "auth/token/revoke-accessor" { capabilities = ["update"] }
path "ssh/config/ca" { capabilities = ["create", "read", "update"] }
path "ssh/roles/client" { capabilities = ["create", "read", "update"] }
path "ssh/roles/host" { capabilities = ["create", "read", "update"] }
path "ssh/roles/node-host" { capabilities = ["create", "read", "update"] }
path "pki/*" { capabilities = ["create", "read", "update"] }
path "pki_int/*" { capabilities = ["create", "read", "update"] }
path "pki_int/certs" { capabilities = ["list"] }
"#;

/// The token roles the bootstrap creates service tokens through (so it
/// needs no `sudo` on token creation and no policy it gives away).
pub const TOKEN_ROLES: &[TokenRole] = &[
    TokenRole {
        role: "nomad-server",
        policy: "nomad-server",
        period: "72h",
        default_policy: true,
    },
    TokenRole {
        role: "consul-connect-ca",
        policy: "consul-connect-ca",
        period: "768h",
        default_policy: true,
    },
    TokenRole {
        role: ENROLL_POLICY,
        policy: ENROLL_POLICY,
        period: "768h",
        default_policy: false,
    },
];

/// A node of `profile`: reads its own entries (selected by the `mac` metadata
/// of the secret-id it logged in with, via identity templating), its
/// profile's, and the gossip key; gets a client certificate and a signed
/// host key for its own name only (roles [`NODE_PKI_ROLE`], [`NODE_SSH_ROLE`]).
pub fn node_policy(profile: &str, approle_accessor: &str) -> String {
    format!(
        r#"
path "kindling/data/nodes/{{{{identity.entity.aliases.{approle_accessor}.metadata.mac}}}}/*" {{ capabilities = ["read"] }}
path "kindling/data/profiles/{profile}/*" {{ capabilities = ["read"] }}
path "kindling/data/stack/consul/gossip" {{ capabilities = ["read"] }}
# kindling-node's tls step: the node's client certificate for Consul and
# Nomad RPC. Role `node` names only the node's own hostname (templated on
# its login), client.<dc>.consul, client.global.nomad and localhost.
path "pki_int/issue/{NODE_PKI_ROLE}" {{ capabilities = ["update"] }}
# kindling-node's ssh-host-cert step: role `node-host` signs host keys for
# the node's own hostname (bare and in the site's domain) only.
path "ssh/sign/{NODE_SSH_ROLE}" {{ capabilities = ["update"] }}
# The CA's public key, which sshd trusts as the user CA.
path "ssh/config/ca" {{ capabilities = ["read"] }}
"#
    )
}

/// The PKI role (in `pki_int`) nodes issue their client certificates with.
pub const NODE_PKI_ROLE: &str = "node";
/// The SSH role nodes sign their host keys with.
pub const NODE_SSH_ROLE: &str = "node-host";

/// The node's hostname as its AppRole login says it: the `hostname`
/// metadata of the secret-id the appliance minted for that node.
fn node_hostname_template(approle_accessor: &str) -> String {
    format!("{{{{identity.entity.aliases.{approle_accessor}.metadata.hostname}}}}")
}

/// Role [`NODE_PKI_ROLE`]: a node's Consul/Nomad client certificate names
/// its own hostname, the names Consul's and Nomad's clients carry and
/// `localhost`, nothing else (no other host, no IP address, no wildcard).
pub fn node_pki_role(approle_accessor: &str, datacenter: &str) -> serde_json::Value {
    serde_json::json!({
        "allowed_domains": [
            node_hostname_template(approle_accessor),
            format!("client.{datacenter}.consul"),
            "client.global.nomad",
            "localhost",
        ],
        "allowed_domains_template": true,
        "allow_bare_domains": true,
        "allow_subdomains": false,
        "allow_glob_domains": false,
        "allow_wildcard_certificates": false,
        "allow_localhost": true,
        "allow_ip_sans": false,
        "enforce_hostnames": true,
        "server_flag": true,
        "client_flag": true,
        "key_type": "ec",
        "key_bits": 256,
        "max_ttl": "720h",
    })
}

/// Role [`NODE_SSH_ROLE`]: host certificates for the node's own hostname,
/// bare and in the site's domain; no user certificates.
pub fn node_ssh_role(approle_accessor: &str, domain: &str) -> serde_json::Value {
    let host = node_hostname_template(approle_accessor);
    serde_json::json!({
        "key_type": "ca",
        "allow_host_certificates": true,
        "allow_user_certificates": false,
        "allowed_domains": format!("{host},{host}.{domain}"),
        "allowed_domains_template": true,
        "allow_bare_domains": true,
        "allow_subdomains": false,
        "ttl": "8760h",
        "max_ttl": "8760h",
    })
}

/// The name of the enrollment token's policy (see [`enroll_policy`]).
pub const ENROLL_POLICY: &str = "kindling-enroll";

/// The AppRole role of a node profile (nodes the site does not name).
pub fn node_role(profile: &str) -> String {
    format!("node-{profile}")
}

/// The AppRole role of one node the site names (`mac_key` as
/// `52-54-00-6b-00-10`), with its profile's policy. Its own role, so its
/// own role-id: AppRole names a login's identity alias after the role-id,
/// and a login overwrites the alias metadata the node policy is templated
/// on; nodes sharing a role would share it (the latest login's MAC and
/// hostname would be every earlier token's).
pub fn site_node_role(mac_key: &str) -> String {
    format!("node-mac-{mac_key}")
}

/// The PXE service's enrollment token: for each node role, create secret-ids
/// only response-wrapped for at most `grant_ttl_secs`, only with the
/// parameters that bind them (metadata, the node's address as `cidr_list`
/// and `token_bound_cidrs`, their own life), read the role-id, and look up
/// or destroy a secret-id by its accessor; look up a token by its accessor
/// (to see whether a grant's wrapping token was unwrapped); and keep itself
/// alive. Nothing else: no policy, token, KV, PKI or Consul access, and no
/// default policy.
pub fn enroll_policy(roles: impl IntoIterator<Item = String>, grant_ttl_secs: u32) -> String {
    let mut out = String::new();
    for name in roles {
        let role = format!("auth/{APPROLE_MOUNT}/role/{name}");
        out.push_str(&format!(
            r#"
path "{role}/secret-id" {{
  capabilities = ["update"]
  min_wrapping_ttl = "1s"
  max_wrapping_ttl = "{grant_ttl_secs}s"
  required_parameters = ["metadata", "cidr_list", "token_bound_cidrs"]
  allowed_parameters = {{
    "metadata" = []
    "cidr_list" = []
    "token_bound_cidrs" = []
    "ttl" = []
  }}
}}
path "{role}/role-id" {{ capabilities = ["read"] }}
path "{role}/secret-id-accessor/lookup" {{ capabilities = ["update"] }}
path "{role}/secret-id-accessor/destroy" {{ capabilities = ["update"] }}
"#
        ));
    }
    out.push_str(
        r#"
path "auth/token/lookup-accessor" { capabilities = ["update"] }
path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/renew-self" { capabilities = ["update"] }
"#,
    );
    out
}

/// Nomad servers' Vault integration (Nomad's documented server policy).
pub const NOMAD_SERVER_POLICY: &str = r#"
path "auth/token/create/nomad-cluster" { capabilities = ["update"] }
path "auth/token/roles/nomad-cluster" { capabilities = ["read"] }
path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/lookup" { capabilities = ["update"] }
path "auth/token/revoke-accessor" { capabilities = ["update"] }
path "sys/capabilities-self" { capabilities = ["update"] }
path "auth/token/renew-self" { capabilities = ["update"] }
"#;

/// Consul's Vault CA provider: it mounts and runs its own two PKI engines.
pub const CONSUL_CONNECT_CA_POLICY: &str = r#"
path "sys/mounts" { capabilities = ["read"] }
path "sys/mounts/connect_root" { capabilities = ["create", "read", "update", "delete", "list"] }
path "sys/mounts/connect_inter" { capabilities = ["create", "read", "update", "delete", "list"] }
path "sys/mounts/connect_root/tune" { capabilities = ["update"] }
path "sys/mounts/connect_inter/tune" { capabilities = ["update"] }
path "connect_root/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "connect_inter/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/renew-self" { capabilities = ["update"] }
"#;

/// The appliance's own Consul agent.
pub const CONSUL_AGENT_RULES: &str = r#"
node_prefix "" { policy = "write" }
service_prefix "" { policy = "read" }
agent_prefix "" { policy = "read" }
"#;

/// Consul clients of a profile (the token also carries a node identity).
pub fn consul_node_rules(profile: &str) -> String {
    format!(
        r#"
service_prefix "" {{ policy = "write" }}
node_prefix "" {{ policy = "read" }}
agent_prefix "" {{ policy = "read" }}
key_prefix "kindling/profiles/{profile}" {{ policy = "read" }}
"#
    )
}

/// `kindlingd api`'s Consul token: the sync of runtime MAC → profile
/// assignments (`crate::assignments`: its keys and its epoch marker) and
/// the catalog check that decides `joined` (reading node entries: names,
/// IDs, addresses, node meta; no services, no KV, no ACLs). Rewritten on
/// every bootstrap, so a token made by an older release gains new rules.
pub const CONSUL_ASSIGNMENTS_RULES: &str = r#"
key_prefix "kindling/assignments/" { policy = "write" }
key "kindling/assignments-epoch" { policy = "write" }
node_prefix "" { policy = "read" }
"#;

/// Nomad servers' Consul token.
pub const CONSUL_NOMAD_SERVER_RULES: &str = r#"
agent_prefix "" { policy = "read" }
node_prefix "" { policy = "read" }
service_prefix "" { policy = "write" }
acl = "write"
"#;

/// Vault's Consul storage backend: its KV prefix, its service registration
/// and the sessions it locks with.
pub const CONSUL_VAULT_STORAGE_RULES: &str = r#"
key_prefix "vault/" { policy = "write" }
service "vault" { policy = "write" }
agent_prefix "" { policy = "read" }
node_prefix "" { policy = "read" }
session_prefix "" { policy = "write" }
"#;
