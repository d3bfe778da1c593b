//! Pre-decoding of untrusted DHCP datagrams. dhcproto 0.15 asserts on some
//! malformed options (fixed-length options with the wrong length, a
//! classless route with prefix > 32, FQDN shorter than 3 bytes) and would
//! panic; so before decoding, the options area is rebuilt here keeping only
//! the options this server reads, each checked for a valid length. Every
//! other option is dropped: unknown options are ignored, as RFC 2131 asks.
//! Repeated options keep their first instance only (dhcproto would join
//! them, RFC 3396, into a value the length checks never saw).
//!
//! Owns that filter only; it never interprets option values.

/// BOOTP fixed header (236 bytes) + magic cookie.
const OPTIONS_START: usize = 240;
const MAGIC: [u8; 4] = [99, 130, 83, 99];

/// Why a datagram cannot be decoded safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    Short,
    BadMagic,
    /// An option runs past the end of the datagram.
    Truncated,
    /// A kept option has a length invalid for its type.
    BadLength(u8),
}

/// The length rule for each option we read; `None` = not kept.
fn length_ok(code: u8, len: usize) -> Option<bool> {
    Some(match code {
        // message type
        53 => len == 1,
        // requested address, server identifier
        50 | 54 => len == 4,
        // max message size
        57 => len == 2,
        // client architecture: we read the first entry only (fixed below)
        93 => len >= 2 && len.is_multiple_of(2),
        // client network interface identifier
        94 => len == 3,
        // hostname (string, non-empty)
        12 => len >= 1,
        // parameter request list, vendor class, client id, user class,
        // client machine id, iPXE encapsulated options: opaque bytes
        55 | 60 | 61 | 77 | 97 | 175 => true,
        _ => return None,
    })
}

/// The datagram with a filtered options area, ready for dhcproto.
pub fn sanitize(datagram: &[u8]) -> Result<Vec<u8>, WireError> {
    let header = datagram.get(..OPTIONS_START).ok_or(WireError::Short)?;
    if header.get(236..240) != Some(&MAGIC[..]) {
        return Err(WireError::BadMagic);
    }
    let mut out = Vec::with_capacity(datagram.len());
    out.extend_from_slice(header);
    // dhcproto concatenates repeated options (RFC 3396 long options), which
    // would undo the length checks below: only the first instance is kept.
    let mut kept = [false; 256];
    let mut i = OPTIONS_START;
    while let Some(&code) = datagram.get(i) {
        match code {
            0 => {
                i += 1;
                continue;
            }
            255 => break,
            _ => {}
        }
        let len = usize::from(*datagram.get(i + 1).ok_or(WireError::Truncated)?);
        let value = datagram
            .get(i + 2..i + 2 + len)
            .ok_or(WireError::Truncated)?;
        i += 2 + len;
        match length_ok(code, len) {
            None => {}
            Some(false) => return Err(WireError::BadLength(code)),
            Some(true) if kept[usize::from(code)] => {}
            Some(true) => {
                kept[usize::from(code)] = true;
                // dhcproto decodes option 93 as a single u16.
                let value = if code == 93 {
                    value.get(..2).unwrap_or(value)
                } else {
                    value
                };
                out.push(code);
                // `value.len() <= len <= 255`, so the cast is lossless.
                out.push(value.len() as u8);
                out.extend_from_slice(value);
            }
        }
    }
    out.push(255);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(options: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 236];
        p.extend_from_slice(&MAGIC);
        p.extend_from_slice(options);
        p
    }

    #[test]
    fn keeps_known_drops_unknown() {
        let p = packet(&[53, 1, 1, 0, 121, 3, 40, 1, 2, 93, 4, 0, 7, 0, 9, 255]);
        let out = sanitize(&p).unwrap_or_default();
        assert_eq!(&out[240..], &[53, 1, 1, 93, 2, 0, 7, 255]);
    }

    #[test]
    fn repeated_options_keep_the_first_only() {
        // Found by fuzzing: dhcproto joins repeated option 94s into one of
        // length 6 and then asserts on it.
        let p = packet(&[94, 3, 1, 2, 1, 94, 3, 1, 2, 1, 53, 1, 1, 255]);
        let out = sanitize(&p).unwrap_or_default();
        assert_eq!(&out[240..], &[94, 3, 1, 2, 1, 53, 1, 1, 255]);
    }

    #[test]
    fn refuses_bad_lengths_and_truncation() {
        assert_eq!(
            sanitize(&packet(&[50, 3, 1, 2, 3, 255])),
            Err(WireError::BadLength(50))
        );
        assert_eq!(sanitize(&packet(&[60, 10, 1])), Err(WireError::Truncated));
        assert_eq!(sanitize(&packet(&[53])), Err(WireError::Truncated));
        assert_eq!(sanitize(&[0u8; 100]), Err(WireError::Short));
        assert_eq!(sanitize(&[0u8; 300]), Err(WireError::BadMagic));
    }
}
