//! One module per command group, each owning its clap arguments and `run`.

mod client;
pub mod image;
pub mod keygen;
pub mod node;
pub mod overlay;
pub mod stack;
pub mod vault;
