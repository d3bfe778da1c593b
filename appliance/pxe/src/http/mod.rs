//! The PXE HTTP service: the listener and its connections (`listener`,
//! `connection`), request and response heads (`request`, `response`),
//! routing (`router`), byte ranges (`range`), file bodies by sendfile
//! (`file_body`, sent for all connections by `pump`) and request handling
//! independent of the wire (`handler`).

pub mod connection;
pub mod file_body;
pub mod handler;
pub mod listener;
pub mod pump;
pub mod range;
pub mod request;
pub mod response;
pub mod router;
