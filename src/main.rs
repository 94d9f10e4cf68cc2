//! The `statewall` command: daemon, rule checker, capture replay and control client.
#![forbid(unsafe_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use statewall::config::Settings;
use statewall::control;
use statewall::daemon;
use statewall::engine::{Engine, EngineConfig};
use statewall::io::netfilter::Plan;
use statewall::replay::{replay, Fragments, ReplayOptions};
use statewall::rules;

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
    /// Remove statewall's iptables/ip6tables rules (the STATEWALL chains and every jump to
    /// them). `run` leaves them in place at exit unless `[netfilter] on_stop = "remove"`.
    Cleanup {
        /// Configuration file (with `[netfilter] manage = false` nothing is removed). A missing
        /// default file means the built-in defaults.
        #[arg(long)]
        config: Option<PathBuf>,
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
        /// Hand IP fragments to the engine one by one instead of reassembling them first as
        /// the gateway's kernel does (a gateway without kernel reassembly).
        #[arg(long)]
        no_defrag: bool,
        /// Use this configuration's timeouts and limits (default: built-in defaults, every new
        /// connection allowed, nothing under /etc read).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check a rule file: exit 0 when valid (warnings allowed), 1 with
    /// `FILE:LINE:COL: error: ...` lines otherwise.
    Check {
        /// The rule file (or use `--config` to check the configured one).
        file: Option<PathBuf>,
        /// Check the rule file named by this configuration's `rules` key.
        #[arg(long)]
        config: Option<PathBuf>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Daemon status: uptime, rule file, table size, queue counters, drops per reason.
    Status(ClientArgs),
    /// Counters: packets, verdicts, drops per reason, connections per state.
    Stats(ClientArgs),
    /// List tracked connections, like `conntrack -L`: state, packets and bytes per direction,
    /// the rule that admitted each and its label.
    Conns {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Kill the connections matching a filter, like `conntrack -D`: their next packets are
    /// dropped, and both ends of a TCP connection get a RST.
    Kill {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Block an address or network (both directions, new and existing connections), e.g.
    /// from a fail2ban or CrowdSec action.
    Block {
        #[command(flatten)]
        client: ClientArgs,
        /// The address or CIDR network.
        net: String,
        /// How long: seconds, or with a unit (`90s`, `10m`, `4h`, `1d`); default 1h.
        #[arg(long)]
        ttl: Option<String>,
    },
    /// The rules in force with their hit counters, like `pfctl -vsr`.
    Rules {
        #[command(flatten)]
        client: ClientArgs,
        /// Also the live connections each rule admitted, and its source line.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Stream events as they happen, like `conntrack -E`: new and ended connections, drops,
    /// alerts, blocks.
    Events(ClientArgs),
    /// Reload the rule file; the running rules stay if the new ones have errors.
    Reload(ClientArgs),
    /// List sources blocked by the scan detector.
    Blocks(ClientArgs),
    /// Write the man page statewall(8) and shell completions (bash, zsh, fish) into DIR
    /// (used by scripts/package).
    #[command(hide = true)]
    GenerateAssets {
        /// Output directory.
        dir: PathBuf,
    },
    /// Lift the block of a source.
    Unblock {
        #[command(flatten)]
        client: ClientArgs,
        /// The blocked address.
        addr: std::net::IpAddr,
    },
    /// Gateway pair: this gateway now holds the addresses (keepalived's MASTER notification).
    /// Adopts what the kernel table holds with statewall's mark and opens the takeover window.
    Takeover(ClientArgs),
    /// Gateway pair: this gateway lost the addresses (BACKUP, FAULT, STOP). Every flow follows
    /// the kernel table again; unknown mid-stream segments are dropped silently.
    Standby(ClientArgs),
}

/// The connection filter of `conns` and `kill`.
#[derive(clap::Args)]
struct FilterArgs {
    /// Source address or CIDR.
    #[arg(long)]
    src: Option<String>,
    /// Destination address or CIDR.
    #[arg(long)]
    dst: Option<String>,
    /// Port (either side).
    #[arg(long)]
    port: Option<u16>,
    /// State (ESTABLISHED, TIME_WAIT, UNREPLIED, ...).
    #[arg(long)]
    state: Option<String>,
    /// Protocol (tcp, udp, icmp, ... or a number).
    #[arg(long)]
    proto: Option<String>,
    /// Filter words: `src A`, `dst A`, `port P`, `state S`, `proto P` (or `key=value`).
    filter: Vec<String>,
}

impl FilterArgs {
    fn parse(self, command: &str) -> Result<control::ConnFilter, ExitCode> {
        let mut words = self.filter;
        for (k, v) in [
            ("src", self.src),
            ("dst", self.dst),
            ("state", self.state),
            ("proto", self.proto),
        ] {
            if let Some(v) = v {
                words.push(format!("{k}={v}"));
            }
        }
        if let Some(p) = self.port {
            words.push(format!("port={p}"));
        }
        control::ConnFilter::from_args(&words).map_err(|e| {
            eprintln!("statewall: {command}: {e}");
            ExitCode::from(2)
        })
    }
}

/// A duration: seconds, or a number with `s`, `m`, `h` or `d`.
fn parse_ttl(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 600, 90s, 10m, 4h, 1d)"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("`{s}`: unknown unit (s, m, h or d)")),
    };
    n.checked_mul(unit)
        .filter(|&secs| secs > 0)
        .ok_or_else(|| format!("`{s}`: a block lasts from 1 s to many years"))
}

/// How client commands find the daemon.
#[derive(clap::Args)]
struct ClientArgs {
    /// Control socket path.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Configuration whose `[control] socket` to use.
    #[arg(long)]
    config: Option<PathBuf>,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

impl ClientArgs {
    /// The socket path, or exit status 2 with a message.
    fn socket(&self) -> Result<PathBuf, ExitCode> {
        control::socket_path(self.socket.clone(), self.config.clone()).map_err(|e| {
            eprintln!("statewall: {e}");
            ExitCode::from(2)
        })
    }

    fn call(&self, f: impl FnOnce(&Path, bool) -> i32) -> ExitCode {
        match self.socket() {
            Ok(path) => exit(f(&path, self.json)),
            Err(code) => code,
        }
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => cmd_run(&config),
        Command::PrintRules { config } => cmd_print_rules(config.as_deref()),
        Command::Cleanup { config } => cmd_cleanup(config.as_deref()),
        Command::GenerateAssets { dir } => cmd_generate_assets(&dir),
        Command::Replay {
            file,
            json,
            verbose,
            no_defrag,
            config,
        } => {
            let fragments = if no_defrag {
                Fragments::AsSeen
            } else {
                Fragments::Reassemble
            };
            let opts = ReplayOptions {
                json,
                verbose,
                fragments,
            };
            cmd_replay(file, opts, config)
        }
        Command::Check { file, config, json } => cmd_check(file, config, json),
        Command::Status(c) => c.call(control::cli_status),
        Command::Stats(c) => c.call(control::cli_stats),
        Command::Reload(c) => c.call(control::cli_reload),
        Command::Blocks(c) => c.call(control::cli_blocks),
        Command::Unblock { client, addr } => {
            client.call(|path, json| control::cli_unblock(path, addr, json))
        }
        Command::Takeover(c) => c.call(control::cli_takeover),
        Command::Standby(c) => c.call(control::cli_standby),
        Command::Conns { client, filter } => match filter.parse("conns") {
            Ok(f) => client.call(|path, json| control::cli_conns(path, &f, json)),
            Err(code) => code,
        },
        Command::Kill { client, filter } => match filter.parse("kill") {
            Ok(f) => client.call(|path, json| control::client::cli_kill(path, &f, json)),
            Err(code) => code,
        },
        Command::Block { client, net, ttl } => {
            let net = match net.parse::<control::protocol::AddrMatch>() {
                Ok(n) => n,
                Err(e) => {
                    eprintln!("statewall: block: {e}");
                    return ExitCode::from(2);
                }
            };
            let ttl = match ttl.as_deref().map(parse_ttl).transpose() {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("statewall: block: {e}");
                    return ExitCode::from(2);
                }
            };
            client.call(|path, json| control::client::cli_block(path, net, ttl, json))
        }
        Command::Rules { client, verbose } => {
            client.call(|path, json| control::client::cli_rules(path, verbose, json))
        }
        Command::Events(c) => c.call(control::client::cli_events),
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

/// statewall(8) from the CLI definition (every subcommand as a section), and completions.
fn cmd_generate_assets(dir: &Path) -> ExitCode {
    use clap::CommandFactory;
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let cmd = Cli::command();
        let mut page = Vec::new();
        let man = clap_mangen::Man::new(cmd.clone()).section("8");
        man.render_title(&mut page)?;
        man.render_name_section(&mut page)?;
        man.render_synopsis_section(&mut page)?;
        man.render_description_section(&mut page)?;
        page.extend_from_slice(b".SH COMMANDS\n");
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let name = format!("statewall {}", sub.get_name());
            let sub = sub.clone().name(name);
            page.extend_from_slice(format!(".SS \"{}\"\n", sub.get_name()).as_bytes());
            let sub_man = clap_mangen::Man::new(sub);
            sub_man.render_synopsis_section(&mut page)?;
            page.extend_from_slice(b".PP\n");
            sub_man.render_description_section(&mut page)?;
            sub_man.render_options_section(&mut page)?;
        }
        page.extend_from_slice(SEE_ALSO.as_bytes());
        // The per-command parts repeat .SH headers: make them subsections of COMMANDS.
        let page = String::from_utf8_lossy(&page)
            .lines()
            .scan(false, |in_commands, line| {
                if line == ".SH COMMANDS" {
                    *in_commands = true;
                    return Some(line.to_string());
                }
                if line.starts_with(".SH SEE ALSO") {
                    *in_commands = false;
                }
                Some(match line.strip_prefix(".SH ") {
                    Some(_) if *in_commands => String::new(),
                    _ => line.to_string(),
                })
            })
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(dir.join("statewall.8"), page + "\n")?;
        for (shell, file) in [
            (clap_complete::Shell::Bash, "statewall.bash"),
            (clap_complete::Shell::Zsh, "_statewall"),
            (clap_complete::Shell::Fish, "statewall.fish"),
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "statewall", &mut out);
            std::fs::write(dir.join(file), out)?;
        }
        Ok(())
    };
    match write() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("statewall: generate-assets {}: {e}", dir.display());
            ExitCode::from(1)
        }
    }
}

const SEE_ALSO: &str = ".SH FILES
.TP
/etc/statewall/statewall.toml
the configuration, see statewall.toml(5)
.TP
/etc/statewall/*.rules
rule files, see statewall.rules(5)
.TP
/run/statewall/control.sock
the control socket of the running daemon
.SH EXIT STATUS
0 on success; 1 when the daemon failed (a queue, the netfilter rules, a worker); 2 for a
configuration or rule file error (nothing was changed).
.SH SEE ALSO
statewall.toml(5), statewall.rules(5), iptables(8), systemd.service(5);
/usr/share/doc/statewall/operations.md
";

fn cmd_cleanup(config: Option<&Path>) -> ExitCode {
    let settings = match config {
        Some(path) => match load_settings(path) {
            Ok(s) => s,
            Err(code) => return code,
        },
        None if Path::new(DEFAULT_CONFIG).exists() => {
            match load_settings(Path::new(DEFAULT_CONFIG)) {
                Ok(s) => s,
                Err(code) => return code,
            }
        }
        None => Settings::default(),
    };
    if !settings.netfilter.manage {
        eprintln!(
            "statewall: cleanup: [netfilter] manage = false: the rules are yours, nothing removed"
        );
        return ExitCode::SUCCESS;
    }
    match statewall::io::netfilter::remove_all() {
        Ok(true) => {
            eprintln!("statewall: netfilter rules removed");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            eprintln!("statewall: no statewall rules were installed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("statewall: cleanup: {e}");
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
    let plan = Plan::new(
        &settings.queue,
        &settings.netfilter,
        settings.offload_active(),
    );
    for rule in &plan.install {
        println!("{rule}");
    }
    ExitCode::SUCCESS
}

fn cmd_check(file: Option<PathBuf>, config: Option<PathBuf>, json: bool) -> ExitCode {
    let path = match (file, config) {
        (Some(f), _) => f,
        (None, Some(c)) => match load_settings(&c) {
            Ok(Settings { rules: Some(r), .. }) => r,
            Ok(_) => {
                eprintln!(
                    "statewall: {}: no `rules` key: nothing to check",
                    c.display()
                );
                return ExitCode::from(2);
            }
            Err(code) => return code,
        },
        (None, None) => {
            eprintln!("statewall: check: give a rule file or --config PATH");
            return ExitCode::from(2);
        }
    };
    let (code, text) = rules::check_report(&path, json);
    print!("{text}");
    exit(code)
}

fn cmd_replay(file: PathBuf, opts: ReplayOptions, config: Option<PathBuf>) -> ExitCode {
    let engine = match config {
        Some(path) => {
            let settings = match load_settings(&path) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let engine = Engine::new(settings.engine());
            if let Some(rules_path) = &settings.rules {
                match rules::load(rules_path) {
                    Ok(loaded) => engine.set_policy(std::sync::Arc::new(loaded.policy)),
                    Err(diags) => {
                        for d in diags.iter().filter(|d| d.is_error()) {
                            eprintln!("{d}");
                        }
                        return ExitCode::from(2);
                    }
                }
            }
            engine
        }
        None => Engine::new(EngineConfig::default()),
    };
    let input = match File::open(&file) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("statewall: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match replay(input, &engine, opts, &mut out) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("statewall: {}: {e}", file.display());
            ExitCode::from(2)
        }
    }
}
