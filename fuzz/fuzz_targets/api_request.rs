//! Fuzzes what the control API reads of a request before anything else:
//! the request head, tokenised by httparse with the API's limits (hyper, the
//! API's HTTP layer, parses heads with httparse; 32 header fields), then
//! every `Authorization` header through `kindling_api::auth`'s parser and
//! the operator lookup, as `authorize()` does before a body is read.
//!
//! Must never panic; a parsed credential is a token68 string within the
//! length limit, and only the one listed token identifies an operator.
#![no_main]

use kindling_api::auth::{identify, parse_authorization, Token, MAX_CREDENTIAL};
use kindling_site::{ApiOperator, OperatorRole};
use libfuzzer_sys::fuzz_target;

/// The token `operators()` lists (also in the seed corpus, so the fuzzer
/// reaches the success path).
const KNOWN: &str = "kt1_0707070707070707070707070707070707070707070707070707070707070707";

fn operators() -> Vec<ApiOperator> {
    let known = Token::parse(KNOWN).expect("a valid token");
    vec![
        ApiOperator {
            name: "fuzz-admin".into(),
            role: OperatorRole::Admin,
            token_sha256: known.sha256(),
        },
        ApiOperator {
            name: "fuzz-read".into(),
            role: OperatorRole::Read,
            token_sha256: Token::from_random([9; 32]).sha256(),
        },
    ]
}

fn check(value: &[u8], operators: &[ApiOperator]) {
    let Ok(token) = parse_authorization(value) else {
        return;
    };
    let text = token.expose();
    assert!(!text.is_empty() && text.len() <= MAX_CREDENTIAL, "{text:?}");
    assert!(text.bytes().all(|b| b.is_ascii_graphic()), "{text:?}");
    if let Some(op) = identify(operators, &token) {
        assert_eq!(op.name, "fuzz-admin");
        assert_eq!(text, KNOWN, "another token identified an operator");
    }
}

fuzz_target!(|data: &[u8]| {
    let operators = operators();
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    if let Ok(httparse::Status::Complete(used)) = request.parse(data) {
        assert!(used <= data.len());
        for h in request.headers.iter() {
            if h.name.eq_ignore_ascii_case("authorization") {
                check(h.value, &operators);
            }
        }
    }
    // And the bytes as one header value, whatever a head parser lets through.
    check(data, &operators);
});
