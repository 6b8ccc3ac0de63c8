//! The `facegate` command line. It parses the arguments, sets up logging and hands each
//! command to its module under `cmds/`. Results are JSON on stdout; errors go to stderr with
//! a non-zero exit status.

mod cmds;

use clap::{Parser, Subcommand};

use facegate_core::config::{Config, Flags};

#[derive(Parser)]
#[command(
    name = "facegate",
    version,
    about = "Face recognition for door camera appliances"
)]
struct Cli {
    #[command(flatten)]
    global: cmds::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Find faces: boxes, five landmarks and detection scores.
    Detect(cmds::detect::Args),
    /// Compare the most central face of two images.
    Compare(cmds::compare::Args),
    /// Track liveness on synthetic presentations: planar photo attacks rendered through the
    /// pipeline, and bona fide head motion made from real faces' 3-D landmarks.
    EvalLiveness(cmds::eval_liveness::Args),
    /// The still-image liveness checks of each image, with every measured value.
    Liveness(cmds::liveness::Args),
    /// Templates of every face in an image.
    Embed(cmds::embed::Args),
    /// Verification accuracy over a CSV of `left,right,same` pairs.
    Eval(cmds::eval::Args),
    /// Benchmarks, each reported next to a reference measured in the same run.
    Bench(cmds::bench::Args),
    /// Enrol photos through a running server (PUT /persons): each photo's file stem is the
    /// person id and name. Prints one result per photo; exits 1 if any was not enrolled.
    Enroll(cmds::enroll::Args),
    /// Run the HTTP API (and, with a camera configured, the recognition pipeline).
    Serve(cmds::serve::Args),
    /// The main job as a demo (what `make run` starts): finds or starts mosquitto on
    /// 127.0.0.1:1883, serves the API, enrols a demo person through it, replays other photos
    /// of that person and of strangers as a camera, and prints the MQTT messages.
    Demo(cmds::demo::Args),
    /// Check the installation: ONNX Runtime and its providers, models against the lock file,
    /// V4L2 cameras, the store, the broker. Exit status 1 when something needs fixing.
    Doctor(cmds::doctor::Args),
    /// The door controller for the board wired to the lock: subscribes to one door's access
    /// messages, verifies signature, expiry and sequence against the trusted appliances' keys
    /// ([door] config), and pulses the relay (a GPIO line or a command) for a grant.
    Door(cmds::door::Args),
    /// Write the embedder's input for every face of the photos (aligned, normalised chips as
    /// raw little-endian f32, 3 × side × side each), to calibrate the int8 model
    /// (`make models-int8`).
    Chips(cmds::chips::Args),
    /// The audit trail: `facegate audit verify` checks the event log's hash chain.
    Audit(cmds::audit::Args),
    /// Print the built-in default configuration.
    PrintConfig,
}

fn main() {
    let cli = Cli::parse();
    let daemon = matches!(
        cli.command,
        Command::Serve(_) | Command::Demo(_) | Command::Door(_)
    );
    // `serve` logs its requests and enrolments (ONNX Runtime's own info lines are
    // session-construction chatter); the demo prints its MQTT messages, and one-shot commands
    // only their problems.
    let serve = matches!(cli.command, Command::Serve(_) | Command::Door(_));
    let default_level = if serve { "info,ort=warn" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FACEGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if daemon {
        facegate_daemon::daemon::limits::raise_open_file_limit();
    } else if !matches!(cli.command, Command::Bench(_)) {
        // A one-shot command whose output goes into a closed pipe (`facegate embed x | head`)
        // ends quietly, as other Unix tools do, instead of panicking in println!. Daemons keep
        // Rust's ignored SIGPIPE: their sockets report EPIPE as an error instead.
        // SAFETY: no other thread exists yet, and SIG_DFL is a valid disposition for SIGPIPE.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    if let Err(e) = run(cli) {
        eprintln!("facegate: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut flags = Flags {
        embedder: cli.global.embedder,
        ..Flags::default()
    };
    match &cli.command {
        Command::Serve(args) => {
            flags.listen = args.listen;
            flags.data_dir = args.data_dir.clone();
            flags.api_keys = Some(args.api_key.clone());
        }
        // The demo serves with the first key it finds.
        Command::Demo(_) => flags.api_keys = Some(Vec::new()),
        _ => {}
    }
    let env = |name: &str| std::env::var(name).ok();
    let config = Config::resolve(cli.global.config.as_deref(), env, &flags)?;
    match &cli.command {
        Command::PrintConfig => print!("{}", Config::default_toml()),
        Command::Detect(args) => cmds::detect::run(&config, args)?,
        Command::Compare(args) => cmds::compare::run(&config, args)?,
        Command::EvalLiveness(args) => cmds::eval_liveness::run(&config, args)?,
        Command::Liveness(args) => cmds::liveness::run(&config, args)?,
        Command::Embed(args) => cmds::embed::run(&config, args)?,
        Command::Eval(args) => cmds::eval::run(&config, args)?,
        Command::Bench(args) => cmds::bench::run(&config, args)?,
        Command::Enroll(args) => cmds::enroll::run(args)?,
        Command::Serve(args) => cmds::serve::run(config, args)?,
        Command::Demo(args) => cmds::demo::run(config, args)?,
        Command::Doctor(args) => cmds::doctor::run(&config, args)?,
        Command::Door(args) => cmds::door::run(&config, args)?,
        Command::Audit(args) => cmds::audit::run(&config, args)?,
        Command::Chips(args) => cmds::chips::run(&config, args)?,
    }
    Ok(())
}
