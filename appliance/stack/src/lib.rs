//! placeholder: the stack crate is being written.
