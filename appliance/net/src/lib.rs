//! placeholder: the net crate is being written.
