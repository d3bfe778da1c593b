//! HTTP `Range: bytes=…` for one range (RFC 9110 §14). Multi-range requests
//! get the whole file (allowed by the RFC; firmware never sends them).
//!
//! Pure: it never touches files.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No usable Range header: 200 with the whole body.
    Full,
    /// 206 with bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

pub fn evaluate(header: Option<&str>, len: u64) -> RangeAnswer {
    let Some(spec) = header.map(str::trim).and_then(|h| h.strip_prefix("bytes=")) else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match last.parse::<u64>() {
            Ok(0) => RangeAnswer::Unsatisfiable,
            Ok(_) if len == 0 => RangeAnswer::Unsatisfiable,
            Ok(n) => RangeAnswer::Partial {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            Err(_) => RangeAnswer::Full,
        },
        (false, _) => {
            let Ok(start) = first.parse::<u64>() else {
                return RangeAnswer::Full;
            };
            let end = if last.is_empty() {
                u64::MAX
            } else {
                match last.parse::<u64>() {
                    Ok(e) if e >= start => e,
                    _ => return RangeAnswer::Full,
                }
            };
            if start >= len {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Partial {
                    start,
                    end: end.min(len - 1),
                }
            }
        }
        (true, true) => RangeAnswer::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(evaluate(None, 100), RangeAnswer::Full);
        assert_eq!(
            evaluate(Some("bytes=0-9"), 100),
            RangeAnswer::Partial { start: 0, end: 9 }
        );
        assert_eq!(
            evaluate(Some("bytes=90-"), 100),
            RangeAnswer::Partial { start: 90, end: 99 }
        );
        assert_eq!(
            evaluate(Some("bytes=90-1000"), 100),
            RangeAnswer::Partial { start: 90, end: 99 }
        );
        assert_eq!(
            evaluate(Some("bytes=-10"), 100),
            RangeAnswer::Partial { start: 90, end: 99 }
        );
        assert_eq!(
            evaluate(Some("bytes=-1000"), 100),
            RangeAnswer::Partial { start: 0, end: 99 }
        );
        assert_eq!(
            evaluate(Some("bytes=100-"), 100),
            RangeAnswer::Unsatisfiable
        );
        assert_eq!(evaluate(Some("bytes=-0"), 100), RangeAnswer::Unsatisfiable);
        assert_eq!(evaluate(Some("bytes=0-0"), 0), RangeAnswer::Unsatisfiable);
        assert_eq!(
            evaluate(Some("bytes=5-2"), 100),
            RangeAnswer::Full,
            "invalid spec is ignored"
        );
        assert_eq!(evaluate(Some("bytes=0-1,5-6"), 100), RangeAnswer::Full);
        assert_eq!(evaluate(Some("items=0-1"), 100), RangeAnswer::Full);
        assert_eq!(evaluate(Some("bytes=x-1"), 100), RangeAnswer::Full);
    }
}
