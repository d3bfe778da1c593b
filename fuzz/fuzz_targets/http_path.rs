//! Fuzzes the PXE HTTP path router and Range parser: any request target and
//! header. It must never panic, and a routed artifact or boot-file path must
//! never contain a parent, hidden or empty segment.
#![no_main]

use kindling_pxe::http::range;
use kindling_pxe::http::router::{route, Method, Route};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let method = match selector % 4 {
        0 => Method::Get,
        1 => Method::Head,
        2 => Method::Post,
        _ => Method::Other,
    };
    let text = String::from_utf8_lossy(rest);
    let (target, header) = text.split_once('\n').unwrap_or((&text, ""));
    if let Ok(Route::Artifact(p) | Route::BootFile(p)) = route(method, target) {
        for seg in p.segments() {
            assert!(!seg.is_empty() && !seg.starts_with('.') && !seg.contains(['/', '\\', '\0']), "unsafe segment {seg:?}");
        }
    }
    let len = u64::from(selector) * 1000;
    match range::evaluate(Some(header), len) {
        range::RangeAnswer::Partial { start, end } => assert!(start <= end && end < len),
        range::RangeAnswer::Full | range::RangeAnswer::Unsatisfiable => {}
    }
});
