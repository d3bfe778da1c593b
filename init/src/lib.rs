//! placeholder: kindling-init is being written.
