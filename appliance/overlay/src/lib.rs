//! placeholder: the overlay crate is being written.
