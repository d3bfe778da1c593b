//! placeholder: the lab is being written.
