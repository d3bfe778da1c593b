//! The PXE HTTP service: routing (`router`), byte ranges (`range`), request
//! handling independent of the HTTP library (`handler`) and the tiny_http
//! listener (`listener`).

pub mod file_body;
pub mod handler;
pub mod listener;
pub mod range;
pub mod router;
