//! The PXE HTTP path router: raw request target → `Route`, or a reason it is
//! refused. Percent-decoding and path sanitising live here, so nothing
//! downstream ever sees `..`, an absolute path, a NUL or a hidden file.
//!
//! Pure and panic-free on any input (fuzzed by `fuzz/`); it never touches
//! the file system.

use kindling_site::MacAddr;

/// Longest request target we route; longer ones are refused.
pub const MAX_TARGET_LEN: usize = 2048;
const MAX_SEGMENTS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Other,
}

/// A relative path proven safe to join under a served directory: one or
/// more normal segments, none empty, `.`-prefixed, or containing `/`, `\`,
/// or NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafePath(Vec<String>);

impl SafePath {
    pub fn segments(&self) -> &[String] {
        &self.0
    }
    pub fn as_relative(&self) -> std::path::PathBuf {
        self.0.iter().collect()
    }
    pub fn as_str(&self) -> String {
        self.0.join("/")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoCloudDoc {
    MetaData,
    UserData,
    VendorData,
    NetworkConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/boot/MAC.ipxe`, optionally `?profile=NAME` (menu choice).
    Script {
        mac: MacAddr,
        chosen: Option<String>,
    },
    /// `/boot/NAME`: an iPXE binary from the boot directory.
    BootFile(SafePath),
    /// `/artifacts/PATH`
    Artifact(SafePath),
    NoCloud {
        mac: MacAddr,
        doc: NoCloudDoc,
    },
    /// `/preseed/MAC.cfg`
    Preseed(MacAddr),
    BeginScript,
    RepoTarball,
    /// `/by-hash/sha256/HEX`: a file the appliance hands nodes (the node
    /// agent, the stack's client binaries, the artifacts operators pushed),
    /// named by its content's sha256 (64 lowercase hex digits).
    ByHash(String),
    /// `POST /nodes/MAC/events`
    Event(MacAddr),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no such path")]
    NotFound,
    #[error("method not allowed for this path")]
    MethodNotAllowed,
    #[error("malformed path: {0}")]
    BadPath(&'static str),
    #[error("{0}")]
    BadMac(String),
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes one path segment; a decoded `/`, `\` or NUL, a bad escape
/// or non-UTF-8 result is refused.
fn decode_segment(raw: &str) -> Result<String, RouteError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex);
            let lo = bytes.get(i + 2).copied().and_then(hex);
            match (hi, lo) {
                (Some(h), Some(l)) => out.push(h << 4 | l),
                _ => return Err(RouteError::BadPath("bad percent escape")),
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    if out.iter().any(|b| matches!(b, b'/' | b'\\' | 0)) {
        return Err(RouteError::BadPath("encoded separator or NUL in a segment"));
    }
    String::from_utf8(out).map_err(|_| RouteError::BadPath("not UTF-8"))
}

fn safe_path(segments: &[String]) -> Result<SafePath, RouteError> {
    if segments.is_empty() {
        return Err(RouteError::NotFound);
    }
    for s in segments {
        if s.is_empty() {
            return Err(RouteError::BadPath("empty segment"));
        }
        if s.starts_with('.') {
            return Err(RouteError::BadPath("dot segment or hidden file"));
        }
    }
    Ok(SafePath(segments.to_vec()))
}

fn mac(text: &str) -> Result<MacAddr, RouteError> {
    text.parse()
        .map_err(|e: kindling_site::ParseValueError| RouteError::BadMac(e.to_string()))
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

pub fn route(method: Method, target: &str) -> Result<Route, RouteError> {
    if target.len() > MAX_TARGET_LEN {
        return Err(RouteError::BadPath("request target too long"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = path
        .strip_prefix('/')
        .ok_or(RouteError::BadPath("must start with /"))?;
    let raw: Vec<&str> = path.split('/').collect();
    if raw.len() > MAX_SEGMENTS {
        return Err(RouteError::BadPath("too many segments"));
    }
    let segs = raw
        .iter()
        .map(|s| decode_segment(s))
        .collect::<Result<Vec<String>, _>>()?;
    let read = matches!(method, Method::Get | Method::Head);
    let only_read = |r: Route| {
        if read {
            Ok(r)
        } else {
            Err(RouteError::MethodNotAllowed)
        }
    };
    let strs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match strs.as_slice() {
        ["boot", file] if file.ends_with(".ipxe") => {
            let mac = mac(file.trim_end_matches(".ipxe"))?;
            let chosen = query_param(query, "profile")
                .map(decode_segment)
                .transpose()?
                .filter(|p| {
                    !p.is_empty()
                        && p.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                });
            only_read(Route::Script { mac, chosen })
        }
        ["boot", _] => only_read(Route::BootFile(safe_path(&segs[1..])?)),
        ["artifacts", ..] => only_read(Route::Artifact(safe_path(
            segs.get(1..).unwrap_or_default(),
        )?)),
        ["nocloud", m, doc] => {
            let doc = match *doc {
                "meta-data" => NoCloudDoc::MetaData,
                "user-data" => NoCloudDoc::UserData,
                "vendor-data" => NoCloudDoc::VendorData,
                "network-config" => NoCloudDoc::NetworkConfig,
                _ => return Err(RouteError::NotFound),
            };
            // Serving user-data mints the node's one grant of the cycle: a
            // HEAD would spend it on a body nobody receives.
            if doc == NoCloudDoc::UserData && method == Method::Head {
                return Err(RouteError::MethodNotAllowed);
            }
            only_read(Route::NoCloud { mac: mac(m)?, doc })
        }
        ["preseed", file] if file.ends_with(".cfg") => {
            only_read(Route::Preseed(mac(file.trim_end_matches(".cfg"))?))
        }
        ["by-hash", "sha256", digest]
            if digest.len() == 64
                && digest
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            only_read(Route::ByHash((*digest).to_string()))
        }
        ["begin.sh"] => only_read(Route::BeginScript),
        ["repo.tar.gz"] => only_read(Route::RepoTarball),
        ["nodes", m, "events"] => {
            let mac = mac(m)?;
            if method == Method::Post {
                Ok(Route::Event(mac))
            } else {
                Err(RouteError::MethodNotAllowed)
            }
        }
        _ => Err(RouteError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x10]);

    #[test]
    fn routes_every_documented_path() {
        assert_eq!(
            route(Method::Get, "/boot/52:54:00:6b:00:10.ipxe"),
            Ok(Route::Script {
                mac: MAC,
                chosen: None
            })
        );
        assert_eq!(
            route(Method::Get, "/boot/52-54-00-6B-00-10.ipxe?profile=prod"),
            Ok(Route::Script {
                mac: MAC,
                chosen: Some("prod".into())
            })
        );
        assert!(matches!(
            route(Method::Head, "/boot/ipxe.efi"),
            Ok(Route::BootFile(_))
        ));
        assert!(
            matches!(route(Method::Get, "/artifacts/d-i/linux"), Ok(Route::Artifact(p)) if p.as_str() == "d-i/linux")
        );
        assert_eq!(
            route(Method::Get, "/nocloud/52:54:00:6b:00:10/user-data"),
            Ok(Route::NoCloud {
                mac: MAC,
                doc: NoCloudDoc::UserData
            })
        );
        assert_eq!(
            route(
                Method::Get,
                "/nocloud/52%3A54%3A00%3A6b%3A00%3A10/meta-data"
            ),
            Ok(Route::NoCloud {
                mac: MAC,
                doc: NoCloudDoc::MetaData
            })
        );
        assert_eq!(
            route(Method::Get, "/preseed/52:54:00:6b:00:10.cfg"),
            Ok(Route::Preseed(MAC))
        );
        assert_eq!(route(Method::Get, "/begin.sh"), Ok(Route::BeginScript));
        assert_eq!(route(Method::Get, "/repo.tar.gz"), Ok(Route::RepoTarball));
        assert_eq!(
            route(Method::Post, "/nodes/52:54:00:6b:00:10/events"),
            Ok(Route::Event(MAC))
        );
        let digest = "a".repeat(64);
        assert_eq!(
            route(Method::Head, &format!("/by-hash/sha256/{digest}")),
            Ok(Route::ByHash(digest.clone()))
        );
        for bad in [
            "a".repeat(63),
            "a".repeat(65),
            "A".repeat(64),
            format!("{}g", "a".repeat(63)),
        ] {
            assert_eq!(
                route(Method::Get, &format!("/by-hash/sha256/{bad}")),
                Err(RouteError::NotFound),
                "{bad}"
            );
        }
        assert_eq!(
            route(Method::Post, &format!("/by-hash/sha256/{digest}")),
            Err(RouteError::MethodNotAllowed)
        );
    }

    #[test]
    fn refuses_traversal_and_junk() {
        for bad in [
            "/artifacts/../etc/passwd",
            "/artifacts/%2e%2e/etc/passwd",
            "/artifacts/a%2fb",
            "/artifacts/.hidden",
            "/artifacts//x",
            "/artifacts/a%00b",
            "/artifacts/a%zz",
            "/boot/..",
            "/artifacts/%ff%fe",
        ] {
            assert!(
                matches!(route(Method::Get, bad), Err(RouteError::BadPath(_))),
                "{bad}: {:?}",
                route(Method::Get, bad)
            );
        }
        assert_eq!(
            route(Method::Get, "/artifacts/"),
            Err(RouteError::BadPath("empty segment"))
        );
        assert!(matches!(
            route(Method::Get, "/boot/not-a-mac.ipxe"),
            Err(RouteError::BadMac(_))
        ));
        assert_eq!(
            route(Method::Get, "/nodes/52:54:00:6b:00:10/events"),
            Err(RouteError::MethodNotAllowed)
        );
        assert_eq!(
            route(Method::Post, "/begin.sh"),
            Err(RouteError::MethodNotAllowed)
        );
        assert_eq!(
            route(Method::Head, "/nocloud/52:54:00:6b:00:10/user-data"),
            Err(RouteError::MethodNotAllowed),
            "a HEAD must not spend the node's grant"
        );
        assert!(route(Method::Head, "/nocloud/52:54:00:6b:00:10/meta-data").is_ok());
        assert_eq!(route(Method::Get, "/nope"), Err(RouteError::NotFound));
        assert_eq!(
            route(Method::Get, "relative"),
            Err(RouteError::BadPath("must start with /"))
        );
        assert!(route(Method::Get, &"/a".repeat(3000)).is_err());
    }

    #[test]
    fn menu_choice_must_be_a_plain_name() {
        assert!(route(Method::Get, "/boot/52:54:00:6b:00:10.ipxe?profile=../x").is_err());
        assert_eq!(
            route(Method::Get, "/boot/52:54:00:6b:00:10.ipxe?profile=a$b"),
            Ok(Route::Script {
                mac: MAC,
                chosen: None
            })
        );
    }
}
