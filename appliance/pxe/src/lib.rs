//! placeholder: the pxe crate is being written.
