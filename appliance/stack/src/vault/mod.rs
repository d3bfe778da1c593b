//! Talking to Vault/OpenBao over its HTTP API: health by status code, init,
//! unseal, root-token regeneration, and the idempotent "ensure" operations the
//! bootstrap's setup step is made of. Typed calls go through `vaultrs`; the
//! few it cannot do against OpenBao (health and seal status decode fails,
//! audit devices, wrapped responses) are plain JSON requests.
//!
//! The client core is `client` (with its errors in `error`); each group of
//! Vault's API adds its methods to [`VaultApi`] in its own module: `sys`
//! (health, init, unseal, generate-root), `token` (tokens and policies),
//! `mounts` (secrets engines, auth methods, audit devices), `kv`,
//! `approle` (roles, wrapped secret-ids, unwrap, login) and `pki` (issued
//! certificates: list, read, revoke).
//!
//! Owns no state on disk. Must never log or return a secret in an error
//! message: errors carry Vault's error text and the path, never a body we sent.

mod approle;
mod client;
mod error;
mod kv;
mod mounts;
mod pki;
mod sys;
mod token;

pub use approle::{SecretIdRequest, WrappedSecretId};
pub use client::{install_crypto_provider, VaultApi};
pub use error::{error_chain, error_text, VaultError};
pub use pki::IssuedCert;
pub use sys::{Health, SealStatus};
pub use token::TokenRole;
