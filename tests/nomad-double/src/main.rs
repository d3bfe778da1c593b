//! `nomad-double --listen ADDR [--data-dir DIR]`: runs the Nomad test double
//! until killed (used by `appliance/stack/bench.sh`). Never part of the image.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut listen = "127.0.0.1:4646".to_string();
    let mut data_dir = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.next()) {
            ("--listen", Some(v)) => listen = v.clone(),
            ("--data-dir", Some(v)) => data_dir = Some(std::path::PathBuf::from(v)),
            _ => {
                eprintln!("usage: nomad-double --listen ADDR [--data-dir DIR]");
                return ExitCode::from(2);
            }
        }
    }
    match kindling_nomad_double::NomadDouble::start(&listen, data_dir) {
        Ok(double) => {
            println!("nomad-double: listening on {}", double.url());
            loop {
                std::thread::park();
            }
        }
        Err(e) => {
            eprintln!("nomad-double: {e}");
            ExitCode::FAILURE
        }
    }
}
