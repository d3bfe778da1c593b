//! `/init`: the thin binary over `kindling_init::pid1`.
fn main() {
    kindling_init::pid1::main()
}
