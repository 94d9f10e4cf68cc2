//! The `statewall` command: daemon, rule checker, capture replay and control client.
#![forbid(unsafe_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use statewall::config::Settings;
use statewall::daemon;
use statewall::engine::{Engine, EngineConfig};
use statewall::io::netfilter::Plan;
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

/// Where `run` and `print-rules` look for the configuration by default.
const DEFAULT_CONFIG: &str = "/etc/statewall/statewall.toml";

#[derive(Subcommand)]
enum Command {
    /// Run the firewall in the foreground: bind the queues, install the iptables rules,
    /// judge packets until SIGTERM/SIGINT (SIGHUP reloads the rules).
    Run {
        /// Configuration file (TOML; `STATEWALL_SECTION__KEY` environment overrides).
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Print the iptables/ip6tables commands `run` would install (for `netfilter.manage =
    /// false`: an admin adds them to the firewall scripts).
    PrintRules {
        /// Configuration file; without it, the built-in defaults.
        #[arg(long)]
        config: Option<PathBuf>,
    },
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
        Command::Run { config } => cmd_run(&config),
        Command::PrintRules { config } => cmd_print_rules(config.as_deref()),
        Command::Replay {
            file,
            json,
            verbose,
            config,
        } => cmd_replay(file, json, verbose, config),
    }
}

/// Loads the settings or explains which key is wrong (exit status 2).
fn load_settings(path: &Path) -> Result<Settings, ExitCode> {
    Settings::load(path).map_err(|e| {
        eprintln!("statewall: {e}");
        ExitCode::from(2)
    })
}

fn cmd_run(config: &Path) -> ExitCode {
    let settings = match load_settings(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    daemon::init_logging(&settings.log);
    match daemon::run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        // A rule file that cannot be used is a configuration error, like a bad key.
        Err(e @ daemon::DaemonError::Rules(_)) => {
            tracing::error!("{e}");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(1)
        }
    }
}

fn cmd_print_rules(config: Option<&Path>) -> ExitCode {
    let settings = match config {
        Some(path) => match load_settings(path) {
            Ok(s) => s,
            Err(code) => return code,
        },
        None => Settings::default(),
    };
    let plan = Plan::new(&settings.queue, &settings.netfilter);
    for rule in &plan.install {
        println!("{rule}");
    }
    ExitCode::SUCCESS
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
