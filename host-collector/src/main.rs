use clap::Parser;

/// PLACEHOLDER
#[derive(Parser)]
#[command(version)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("not implemented yet");
    std::process::exit(3);
}
