//! `/init`: the thin binary over `kindling_init::pid1`. Multi-call: started as
//! `modprobe` (the image's `/sbin/modprobe` links here, the program the kernel
//! runs for `request_module()`) it only loads modules and exits.
fn main() {
    let mut args = std::env::args_os();
    if let Some(argv0) = args.next() {
        if kindling_init::early::modprobe::is_modprobe(&argv0) {
            std::process::exit(kindling_init::early::modprobe::main(args));
        }
    }
    kindling_init::pid1::main()
}
