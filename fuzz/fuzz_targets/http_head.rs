//! Fuzzes the PXE HTTP request-head parser with raw connection bytes, then
//! routes what it accepts. It must never panic; an accepted head must lie
//! inside the input and within the head limit, and its target must survive
//! the router.
#![no_main]

use kindling_pxe::http::request::{parse, Parsed, MAX_HEAD};
use kindling_pxe::http::{range, router};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Parsed::Complete(head, used)) = parse(data) {
        assert!(used <= data.len() && used <= MAX_HEAD, "head of {used} bytes");
        let _ = router::route(head.method, &head.target);
        let _ = range::evaluate(head.range.as_deref(), head.content_length);
    }
});
