//! `inquerytest`: see the library for everything.

fn main() {
    std::process::exit(inquerytest::main_with(std::env::args_os()));
}
