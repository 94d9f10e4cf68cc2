//! The `statewall` command: daemon, rule checker, capture replay and control client.
#![forbid(unsafe_code)]

use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use statewall::config::Settings;
use statewall::engine::{Engine, EngineConfig};
use statewall::replay::{replay, ReplayOptions};

#[derive(Parser)]
#[command(
    name = "statewall",
    version,
    about = "Stateful firewall and connection-tracking gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a capture (pcap/pcapng: Ethernet, Linux cooked or raw IP) through the engine and
    /// report every dropped packet with its reason.
    Replay {
        /// The capture file.
        file: PathBuf,
        /// JSON lines output.
        #[arg(long)]
        json: bool,
        /// Also report accepted packets.
        #[arg(long, short)]
        verbose: bool,
        /// Use this configuration's timeouts and limits (default: built-in defaults, every new
        /// connection allowed, nothing under /etc read).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Replay {
            file,
            json,
            verbose,
            config,
        } => cmd_replay(file, json, verbose, config),
    }
}

fn cmd_replay(file: PathBuf, json: bool, verbose: bool, config: Option<PathBuf>) -> ExitCode {
    let engine_config = match config {
        Some(path) => match Settings::load(&path) {
            Ok(s) => s.engine(),
            Err(e) => {
                eprintln!("statewall: {e}");
                return ExitCode::from(2);
            }
        },
        None => EngineConfig::default(),
    };
    let engine = Engine::new(engine_config);
    let input = match File::open(&file) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("statewall: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match replay(input, &engine, ReplayOptions { json, verbose }, &mut out) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("statewall: {}: {e}", file.display());
            ExitCode::from(2)
        }
    }
}
