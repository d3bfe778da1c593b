//! The PKI engine's record of what it issued: listing serial numbers,
//! reading one certificate, revoking one.

use super::client::VaultApi;
use super::error::{api_err, VaultError};
use vaultrs::error::ClientError;

/// One certificate as the PKI engine keeps it.
pub struct IssuedCert {
    pub pem: String,
    /// Whether it has been revoked.
    pub revoked: bool,
}

impl VaultApi {
    /// The serial numbers of every certificate `mount` issued (and has not
    /// tidied away); empty when it issued none.
    pub async fn pki_serials(&self, mount: &str) -> Result<Vec<String>, VaultError> {
        let client = self.typed("list certificates")?;
        match vaultrs::pki::cert::list(&client, mount).await {
            Ok(serials) => Ok(serials),
            Err(ClientError::APIError { code: 404, .. }) => Ok(Vec::new()),
            Err(e) => Err(api_err(&format!("list {mount}/certs"), e)),
        }
    }

    /// One certificate by serial; `None` when it is gone (tidied).
    pub async fn pki_cert(
        &self,
        mount: &str,
        serial: &str,
    ) -> Result<Option<IssuedCert>, VaultError> {
        let client = self.typed("read certificate")?;
        match vaultrs::pki::cert::read(&client, mount, serial).await {
            Ok(c) => Ok(Some(IssuedCert {
                pem: c.certificate,
                revoked: c.revocation_time > 0,
            })),
            Err(ClientError::APIError { code: 404, .. }) => Ok(None),
            Err(e) => Err(api_err(&format!("read {mount}/cert/{serial}"), e)),
        }
    }

    pub async fn pki_revoke(&self, mount: &str, serial: &str) -> Result<(), VaultError> {
        let client = self.typed("revoke certificate")?;
        vaultrs::pki::cert::revoke(&client, mount, serial)
            .await
            .map(|_| ())
            .map_err(|e| api_err(&format!("revoke {mount} certificate {serial}"), e))
    }
}
