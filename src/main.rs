//! The `facegate` command line. Results are JSON on stdout; errors go to stderr with a
//! non-zero exit status.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::json;

use facegate_core::config::{Config, EmbedderKind};
use facegate_core::engine::detector::Detection;
use facegate_core::engine::landmarks::Landmarks;
use facegate_core::engine::{most_central, Engine, Face, FivePoints};
use facegate_tools::eval;

/// Where `make models` puts the fixture photos used by `facegate bench` by default.
const FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

#[derive(Parser)]
#[command(
    name = "facegate",
    version,
    about = "Face recognition for door camera appliances"
)]
struct Cli {
    /// Configuration file (TOML). Without it the built-in defaults apply.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Use this embedder instead of the configured one: arcface512 or dlib128.
    #[arg(long, global = true, value_name = "NAME")]
    embedder: Option<EmbedderKind>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Find faces: boxes, five landmarks and detection scores.
    Detect { image: PathBuf },
    /// Compare the most central face of two images.
    Compare {
        a: PathBuf,
        b: PathBuf,
        /// Similarity score at or above which the faces count as the same person.
        #[arg(long, default_value_t = 0.7)]
        min_similarity: f32,
    },
    /// Track liveness on synthetic presentations: planar photo attacks rendered through the
    /// pipeline, and bona fide head motion made from real faces' 3-D landmarks.
    EvalLiveness {
        /// Photos with one face (files or folders): the attack sources and face models.
        #[arg(required = true)]
        photos: Vec<PathBuf>,
        #[arg(long, default_value_t = 500)]
        attacks: usize,
        #[arg(long, default_value_t = 500)]
        bona_fide: usize,
        #[arg(long, default_value_t = 8)]
        frames: usize,
        /// Include every sequence's (motion, residual) in the output.
        #[arg(long)]
        points: bool,
    },
    /// The still-image liveness checks of each image, with every measured value.
    Liveness {
        images: Vec<PathBuf>,
        /// Also report the PAD model's live probability for the largest face even when the
        /// geometric checks fail (for measuring the model, never for a verdict).
        #[arg(long)]
        pad_always: bool,
    },
    /// Templates of every face in an image.
    Embed { image: PathBuf },
    /// Verification accuracy over a CSV of `left,right,same` pairs.
    Eval {
        #[arg(long, value_name = "FILE.csv")]
        pairs: PathBuf,
        /// Also score every pair of the listed images (identity = folder name).
        #[arg(long)]
        all_pairs: bool,
        /// Worker threads (one engine each); default: every core.
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Benchmarks, each reported next to a reference measured in the same run.
    /// `engine`: per-stage latency on 1280×720 frames. `search`: exact 1:N search over random
    /// templates next to the memory-bandwidth floor. `http`: /face-search under load next to
    /// one engine pass. `memory`: resident memory of `serve` with N persons enrolled.
    /// `pipeline`: the main job on a 1280×720 replay (frame rate kept, event latency next to
    /// one engine pass; --iterations is the seconds per run). `soak`: --minutes of mixed API
    /// load on a `serve` child with a replay camera while its own loopback mosquitto is stopped
    /// every minute; RSS, outbox, log and events produced against events received.
    Bench {
        #[arg(value_parser = ["engine", "search", "http", "memory", "pipeline", "soak"])]
        what: String,
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
        iterations: u32,
        /// Photo with one face (engine: placed on a 1280×720 frame; http, memory: the query).
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/obama.jpg"))]
        one: PathBuf,
        /// Photo with six faces.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/t1.jpg"))]
        six: PathBuf,
        /// search: collection sizes.
        #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
        templates: Vec<usize>,
        /// search: template dimensions.
        #[arg(long, value_delimiter = ',', default_value = "512,128")]
        dim: Vec<usize>,
        /// http: persons enrolled; memory: persons enrolled.
        #[arg(long, default_value_t = 100_000)]
        persons: usize,
        /// http: concurrent clients, one load run each.
        #[arg(long, value_delimiter = ',', default_value = "1,2,16")]
        clients: Vec<usize>,
        /// http: requests per client per run.
        #[arg(long, default_value_t = 20)]
        requests: usize,
        /// soak: minutes of load.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
        minutes: u32,
    },
    /// Enrol photos through a running server (PUT /persons): each photo's file stem is the
    /// person id and name. Prints one result per photo; exits 1 if any was not enrolled.
    Enroll {
        /// Base URL of the API.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// API key; default: $FACEGATE_API_KEY.
        #[arg(long)]
        api_key: Option<String>,
        #[arg(long)]
        collection: String,
        /// Create the collection first when it does not exist.
        #[arg(long)]
        create: bool,
        /// What to keep of each photo.
        #[arg(long, default_value = "StoreThumbnails",
              value_parser = ["NoStorage", "StoreThumbnails", "StoreFullImage"])]
        storage: String,
        /// JPEG/PNG files, or folders of them.
        #[arg(required = true)]
        photos: Vec<PathBuf>,
    },
    /// Run the HTTP API (and, with a camera configured, the recognition pipeline).
    Serve {
        /// Address and port to listen on (overrides server.listen); port 0 picks a free one.
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<std::net::SocketAddr>,
        /// Folder of the LMDB store (overrides store.data_dir).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// An accepted API key (repeatable); adds to the configured keys.
        #[arg(long, value_name = "KEY")]
        api_key: Vec<String>,
        /// Serve without any API key check. Only for a closed test bench: every client on the
        /// network gets full access, and /health and the log say so.
        #[arg(long)]
        insecure_no_auth: bool,
    },
    /// The main job as a demo (what `make run` starts): finds or starts mosquitto on
    /// 127.0.0.1:1883, serves the API, enrols a demo person through it, replays other photos
    /// of that person and of strangers as a camera, and prints the MQTT messages.
    Demo {
        /// Folder of the demo's store, replay frames and broker config.
        #[arg(long, default_value = "data/demo")]
        data_dir: PathBuf,
        /// Folder with the fixture photos (made by `make models`).
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))]
        photos: PathBuf,
    },
    /// Check the installation: ONNX Runtime and its providers, models against the lock file,
    /// V4L2 cameras, the store, the broker. Exit status 1 when something needs fixing.
    Doctor {
        /// Folder of the LMDB store (default: store.data_dir).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Write the embedder's input for every face of the photos (aligned, normalised chips as
    /// raw little-endian f32, 3 × side × side each), to calibrate the int8 model
    /// (`make models-int8`).
    Chips {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// JPEG/PNG photos.
        #[arg(required = true)]
        photos: Vec<PathBuf>,
    },
    /// Print the built-in default configuration.
    PrintConfig,
}

fn main() {
    let cli = Cli::parse();
    // A daemon logs its requests and enrolments; one-shot commands only their problems.
    let default_level = if matches!(cli.command, Command::Serve { .. }) {
        // ONNX Runtime's own info lines are session-construction chatter.
        "info,ort=warn"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FACEGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if matches!(cli.command, Command::Serve { .. } | Command::Demo { .. }) {
        raise_open_file_limit();
    } else if !matches!(cli.command, Command::Bench { .. }) {
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

/// Raise the soft limit of open files to the hard limit: `server.max_connections` client
/// connections plus the store, models and cameras must fit under it (the systemd unit sets
/// `LimitNOFILE`; a shell often starts with a soft limit of 1024).
fn raise_open_file_limit() {
    let Some(mut limit) = open_file_limit() else {
        return;
    };
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit only reads the struct passed to it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            tracing::debug!("cannot raise the open-file limit");
        }
    }
}

/// The process's open-file limit (soft and hard).
fn open_file_limit() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed to it.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit)
}

/// Descriptors kept for everything but client connections: the store, the outbox, models,
/// cameras, the broker, log and refusals in progress.
const RESERVED_FILES: u64 = 256;

/// Warn when `server.max_connections` client connections would not fit under the open-file
/// limit: the cap would then not protect the descriptors it is there to protect.
// rlim_t is 64-bit here but 32-bit on armhf: the casts are needed there.
#[allow(clippy::unnecessary_cast)]
fn check_open_file_limit(max_connections: usize) {
    let Some(limit) = open_file_limit() else {
        return;
    };
    let needed = max_connections as u64 + RESERVED_FILES;
    if (limit.rlim_cur as u64) < needed {
        tracing::warn!(
            open_file_limit = limit.rlim_cur as u64,
            needed,
            "server.max_connections does not fit under the open-file limit: lower it, or raise \
             LimitNOFILE / ulimit -n"
        );
    }
}

fn load_config(cli: &Cli) -> Result<Config> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(kind) = cli.embedder {
        config.inference.embedder = kind;
    }
    Ok(config)
}

fn run(cli: Cli) -> Result<()> {
    let config = load_config(&cli)?;
    match &cli.command {
        Command::PrintConfig => print!("{}", Config::default_toml()),
        Command::Chips { out, photos } => {
            // The chips are the network's input, the same for every precision; fp32 is the
            // model that exists before `make models-int8` has run.
            let mut config = config.clone();
            config.inference.precision = facegate_core::config::Precision::Fp32;
            let mut engine = Engine::open(&config)?;
            std::fs::create_dir_all(out)?;
            let mut n = 0;
            for photo in photos {
                let frame = read_frame(&engine, photo)?;
                let located = engine.locate(&frame)?;
                let lms: Vec<_> = located.iter().map(|(_, l)| l).collect();
                for chip in engine.chips(&frame, &lms) {
                    let bytes: Vec<u8> = chip.iter().flat_map(|v| v.to_le_bytes()).collect();
                    std::fs::write(out.join(format!("chip{n:04}.f32")), bytes)?;
                    n += 1;
                }
            }
            println!("{n} chips written to {}", out.display());
        }
        Command::Doctor { data_dir } => {
            let dir = data_dir
                .clone()
                .unwrap_or_else(|| config.store.resolved_data_dir());
            let findings = facegate_daemon::doctor::run(&config, &dir);
            for f in &findings {
                println!("{f}");
            }
            let to_fix = findings
                .iter()
                .filter(|f| f.level == facegate_daemon::doctor::Level::Fix)
                .count();
            if to_fix > 0 {
                bail!("{to_fix} thing(s) to fix");
            }
        }
        Command::Demo { data_dir, photos } => {
            let keys = gather_api_keys(&config, &[])?;
            let api_key = keys.into_iter().next().context(
                "the demo needs an API key: set FACEGATE_API_KEYS (make run generates one)",
            )?;
            facegate_tools::demo::run(facegate_tools::demo::DemoOptions {
                config,
                data_dir: data_dir.clone(),
                photos: photos.clone(),
                api_key,
            })?;
        }
        Command::EvalLiveness {
            photos,
            attacks,
            bona_fide,
            frames,
            points,
        } => {
            // Faces in the 640×480 frames are 90 px or more: no small-face tiles needed.
            let mut config = config.clone();
            config.detector.min_face_px = config.detector.min_face_px.max(60.0);
            let mut engine = Engine::open(&config)?;
            let mut images = Vec::new();
            for path in facegate_daemon::api::client::photo_files(photos)? {
                images.push(read_frame(&engine, &path)?);
            }
            let progress = |done: usize, total: usize| {
                if done.is_multiple_of(100) || done == total {
                    eprintln!("eval-liveness: {done}/{total} sequences");
                }
            };
            let mut report = facegate_tools::eval_liveness::evaluate(
                &mut engine,
                &images,
                *attacks,
                *bona_fide,
                *frames,
                &facegate_core::pipeline::track_liveness::TrackLimits::default(),
                &progress,
            )?;
            if !*points {
                report.attack_points.clear();
                report.bona_fide_points.clear();
            }
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Liveness { images, pad_always } => {
            let mut engine = Engine::open(&config)?;
            let mut out = Vec::new();
            for image in images {
                let frame = read_frame(&engine, image)?;
                let faces = engine.locate(&frame)?;
                let verdict = engine.liveness(&frame, &faces, &config.liveness)?;
                let mut row = json!({"image": image.display().to_string(), "verdict": verdict});
                let largest = faces
                    .iter()
                    .max_by(|a, b| a.0.bbox.width().total_cmp(&b.0.bbox.width()));
                if let (true, Some((det, _))) = (*pad_always, largest) {
                    row["pad_live_probability"] =
                        json!(engine.pad_live_probability(&frame, &det.bbox)?);
                    row["face_px"] = json!(det.bbox.width().min(det.bbox.height()));
                }
                out.push(row);
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Command::Enroll {
            url,
            api_key,
            collection,
            create,
            storage,
            photos,
        } => {
            let key = match api_key
                .clone()
                .or_else(|| std::env::var("FACEGATE_API_KEY").ok())
            {
                Some(k) => k,
                None => bail!("no API key: pass --api-key or set FACEGATE_API_KEY"),
            };
            let files = facegate_daemon::api::client::photo_files(photos)?;
            if files.is_empty() {
                bail!("no JPEG or PNG photo found in the paths given");
            }
            let results = facegate_daemon::api::client::enroll_photos(
                url, &key, collection, *create, storage, &files,
            )?;
            println!("{}", serde_json::to_string_pretty(&results)?);
            let failed = results.iter().filter(|r| r.code != "OK").count();
            if failed > 0 {
                bail!("{failed} of {} photos were not enrolled", results.len());
            }
        }
        Command::Serve {
            listen,
            data_dir,
            api_key,
            insecure_no_auth,
        } => serve(
            config,
            *listen,
            data_dir.clone(),
            api_key,
            *insecure_no_auth,
        )?,
        Command::Detect { image } => {
            // Detection and landmarks only: no embedding is computed for `detect`.
            let mut engine = Engine::open(&config)?;
            let frame = read_frame(&engine, image)?;
            let out: Vec<_> = engine
                .locate(&frame)?
                .iter()
                .map(|(d, lm)| face_json(d, lm, frame.width(), frame.height()))
                .collect();
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Command::Embed { image } => {
            let mut engine = Engine::open(&config)?;
            let (frame, faces) = analyse(&mut engine, image)?;
            let out: Vec<_> = faces
                .iter()
                .filter_map(|f| {
                    let mut j =
                        face_json(&f.detection, &f.landmarks, frame.width(), frame.height());
                    j["embedding"] = json!(f.embedding.as_ref()?);
                    Some(j)
                })
                .collect();
            println!("{}", serde_json::to_string(&out)?);
        }
        Command::Compare {
            a,
            b,
            min_similarity,
        } => {
            let mut engine = Engine::open(&config)?;
            let ta = central_template(&mut engine, a)?;
            let tb = central_template(&mut engine, b)?;
            let raw = engine.compare(&ta, &tb);
            let score = engine.calibration().score(raw);
            let metric = engine.metric();
            let mut out = json!({
                "similarity_score": round4(score),
                "is_match": score >= *min_similarity,
                "embedder": engine.embedder_kind().name(),
            });
            out[metric.raw_name()] = json!(round4(raw));
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Command::Eval {
            pairs,
            all_pairs,
            threads,
        } => run_eval(&config, pairs, *all_pairs, *threads)?,
        Command::Bench {
            what,
            iterations,
            one,
            six,
            templates,
            dim,
            persons,
            clients,
            requests,
            minutes,
        } => match what.as_str() {
            _ if templates.contains(&0) || dim.contains(&0) || clients.contains(&0) => {
                bail!("--templates, --dim and --clients take numbers of at least 1")
            }
            _ if *requests == 0 || *persons == 0 => {
                bail!("--requests and --persons must be at least 1")
            }
            "search" => {
                let mut rows = Vec::new();
                for &d in dim {
                    for &n in templates {
                        let queries = (20_000_000 / n).clamp(20, 200);
                        let row = facegate_tools::bench::search::bench_search(n, d, queries);
                        eprint!(
                            "{}",
                            facegate_tools::bench::search::format_search_table(
                                std::slice::from_ref(&row)
                            )
                        );
                        rows.push(row);
                    }
                }
                eprint!(
                    "{}",
                    facegate_tools::bench::search::format_search_table(&rows)
                );
                println!("{}", serde_json::to_string_pretty(&rows)?);
            }
            "http" => {
                let report = facegate_tools::bench::http::bench_http(
                    &config, one, *persons, clients, *requests,
                )?;
                eprint!(
                    "{}",
                    facegate_tools::bench::http::format_http_report(&report)
                );
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
            "pipeline" => {
                let enrol = one.with_file_name("obama.jpg");
                let shown = one.with_file_name("obama2.jpg");
                let report = facegate_tools::bench::pipeline::bench_pipeline(
                    &config,
                    &shown,
                    &enrol,
                    *iterations as f64,
                )?;
                eprint!(
                    "{}",
                    facegate_tools::bench::pipeline::format_pipeline_report(&report)
                );
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
            "soak" => {
                let exe = std::env::current_exe()?;
                let photos = one.parent().unwrap_or(Path::new(FIXTURE_DIR));
                let report =
                    facegate_tools::bench::soak::bench_soak(&config, &exe, photos, *minutes)?;
                eprint!(
                    "{}",
                    facegate_tools::bench::soak::format_soak_report(&report)
                );
                println!("{}", serde_json::to_string_pretty(&report)?);
                if !report.failures.is_empty() {
                    bail!("soak failed: {}", report.failures.join("; "));
                }
            }
            "memory" => {
                let exe = std::env::current_exe()?;
                let report =
                    facegate_tools::bench::memory::bench_memory(&config, &exe, one, *persons)?;
                eprintln!(
                    "{} persons ({}-d, NoStorage): RSS {:.1} MiB (peak {:.1}) vs empty store {:.1} \
                     MiB (peak {:.1}); LMDB file {:.0} MiB",
                    report.persons,
                    report.dim,
                    report.rss_mib,
                    report.peak_rss_mib,
                    report.empty_rss_mib,
                    report.empty_peak_rss_mib,
                    report.store_file_mib
                );
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
            _ => bench_engine_command(&config, *iterations, one, six)?,
        },
    }
    Ok(())
}

fn bench_engine_command(config: &Config, iterations: u32, one: &Path, six: &Path) -> Result<()> {
    let mut frames = Vec::new();
    for (label, path) in [("1280x720, 1 face", one), ("1280x720, 6 faces", six)] {
        let photo = image::open(path)
            .with_context(|| {
                format!(
                    "cannot read bench photo {} (run `make models` for the fixtures in {FIXTURE_DIR})",
                    path.display()
                )
            })?
            .to_rgb8();
        let frame = facegate_tools::bench::frame_1280x720(&photo);
        let mut jpeg = Vec::new();
        frame.write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )?;
        frames.push((label.to_string(), jpeg));
    }
    let rows = facegate_tools::bench::bench_engine(config, &frames, iterations as usize)?;
    eprint!(
        "{}",
        facegate_tools::bench::format_table(&rows, iterations as usize)
    );
    println!("{}", serde_json::to_string_pretty(&rows)?);
    Ok(())
}

/// Every configured API key: the config file, `$FACEGATE_API_KEYS`, the key file, the flags.
fn gather_api_keys(config: &Config, flags: &[String]) -> Result<Vec<String>> {
    let mut keys: Vec<String> = config.server.api_keys.clone();
    if let Ok(env) = std::env::var("FACEGATE_API_KEYS") {
        keys.extend(
            env.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(String::from),
        );
    }
    if !config.server.api_key_file.is_empty() {
        let path = &config.server.api_key_file;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read server.api_key_file {path}"))?;
        keys.extend(facegate_daemon::api::auth::parse_key_file(&text));
    }
    keys.extend(flags.iter().cloned());
    keys.retain(|k| !k.trim().is_empty());
    Ok(keys)
}

fn serve(
    mut config: Config,
    listen: Option<std::net::SocketAddr>,
    data_dir: Option<PathBuf>,
    key_flags: &[String],
    insecure_no_auth: bool,
) -> Result<()> {
    use facegate_daemon::api::{server, ApiKeys};
    if let Some(addr) = listen {
        config.server.listen = addr.to_string();
    }
    if let Some(dir) = data_dir {
        config.store.data_dir = dir.display().to_string();
    }
    let keys = gather_api_keys(&config, key_flags)?;
    let keys = match (keys.is_empty(), insecure_no_auth) {
        (_, true) => {
            tracing::warn!(
                "AUTHENTICATION IS OFF (--insecure-no-auth): anyone who can reach {} can \
                 read, enrol and delete persons",
                config.server.listen
            );
            ApiKeys::disabled()
        }
        (false, false) => ApiKeys::new(&keys),
        (true, false) => bail!(
            "no API key is configured. Set server.api_keys or server.api_key_file in the \
             config file, FACEGATE_API_KEYS in the environment, or pass --api-key KEY \
             (--insecure-no-auth serves without keys, for a closed test bench only)"
        ),
    };
    let data_dir = config.store.resolved_data_dir();
    let addr: std::net::SocketAddr = config.server.listen.parse()?;
    check_open_file_limit(config.server.max_connections);
    if !config.server.tls_cert_file.is_empty() {
        // Checked before anything starts: systemd must not see READY for a server that then
        // cannot serve.
        facegate_daemon::api::listener::load_tls(
            &config.server.tls_cert_file,
            &config.server.tls_key_file,
        )?;
    }
    let state = server::open_state(config, &data_dir, keys)
        .with_context(|| format!("cannot start with data directory {}", data_dir.display()))?;
    let (workers, threads) = server::worker_layout(&state.config);
    let (collections, persons) = state.store.counts();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("facegate-io")
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let bound = listener.local_addr()?;
        tracing::info!(
            %bound,
            data_dir = %data_dir.display(),
            collections,
            persons,
            workers,
            threads_per_worker = threads,
            embedder = state.workers.info().fingerprint.as_str(),
            "facegate API ready"
        );
        let daemon = facegate_daemon::daemon::Daemon::start(
            &state.config,
            state.store.clone(),
            state.metrics.daemon.clone(),
            &data_dir,
        )
        .context("cannot start the cameras and the MQTT link")?;
        let _ = state.daemon.set(daemon.status());
        facegate_daemon::daemon::systemd::ready(&format!("serving on {bound}"));
        let watchdog = tokio::spawn(facegate_daemon::daemon::systemd::watchdog(daemon.status()));
        // Scripts and tests wait for this line to learn the port.
        let scheme = if state.config.server.tls_cert_file.is_empty() {
            "http"
        } else {
            "https"
        };
        println!("facegate: listening on {scheme}://{bound}");
        use std::io::Write as _;
        std::io::stdout().flush()?;
        server::serve(listener, std::sync::Arc::new(state), shutdown_signal()).await?;
        // The API has finished its requests; now capture stops, the pipelines finish their
        // frame and the outbox is flushed to the broker.
        daemon.shutdown().await;
        watchdog.abort();
        tracing::info!("stopped");
        Ok(())
    })
}

/// SIGINT or SIGTERM (systemd's stop).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    facegate_daemon::daemon::systemd::stopping();
    tracing::info!("shutting down: finishing requests in progress");
}

fn read_frame(engine: &Engine, path: &Path) -> Result<image::RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    engine
        .decode(&bytes)
        .with_context(|| format!("{}", path.display()))
}

fn analyse(engine: &mut Engine, path: &Path) -> Result<(image::RgbImage, Vec<Face>)> {
    let frame = read_frame(engine, path)?;
    let faces = engine.analyse(&frame)?;
    Ok((frame, faces))
}

fn central_template(engine: &mut Engine, path: &Path) -> Result<Vec<f32>> {
    let (frame, faces) = analyse(engine, path)?;
    let Some(face) = most_central(&faces, frame.width(), frame.height()) else {
        bail!("no face found in {}", path.display());
    };
    match &face.embedding {
        Some(t) => Ok(t.clone()),
        None => bail!("the face in {} could not be aligned", path.display()),
    }
}

fn round1(v: f32) -> f64 {
    (v as f64 * 10.0).round() / 10.0
}

fn round4(v: f32) -> f64 {
    (v as f64 * 10000.0).round() / 10000.0
}

fn face_json(
    detection: &Detection,
    landmarks: &Landmarks,
    width: u32,
    height: u32,
) -> serde_json::Value {
    let b = detection.bbox;
    let clamp = |v: f32, max: u32| v.round().clamp(0.0, max as f32) as i64;
    let p = FivePoints::from_landmarks(landmarks);
    let pt =
        |q: facegate_core::engine::geometry::Point| json!({"x": round1(q.x), "y": round1(q.y)});
    json!({
        "box": {
            "left": clamp(b.left, width),
            "top": clamp(b.top, height),
            "right": clamp(b.right, width),
            "bottom": clamp(b.bottom, height),
        },
        "landmarks": {
            "left_eye": pt(p.left_eye),
            "right_eye": pt(p.right_eye),
            "nose": pt(p.nose),
            "left_mouth": pt(p.left_mouth),
            "right_mouth": pt(p.right_mouth),
        },
        "detection_score": round4(detection.score),
    })
}

fn run_eval(config: &Config, pairs_path: &Path, all: bool, threads: Option<usize>) -> Result<()> {
    let list = eval::read_pairs(pairs_path)?;
    let threads = threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let started = Instant::now();
    let progress = |done: usize, total: usize| {
        if done.is_multiple_of(250) || done == total {
            eprintln!("eval: {done}/{total} images");
        }
    };
    let templates = eval::embed_images(config, &list.images, threads, &progress)?;
    let seconds = started.elapsed().as_secs_f64();
    let cal =
        facegate_core::engine::similarity::Calibration::for_embedder(config.inference.embedder);
    let metric = cal.metric;
    let closeness = |p: &eval::Pair| match (&templates[p.left], &templates[p.right]) {
        (Some(a), Some(b)) => metric.closeness(metric.compare(a, b)),
        _ => f32::NEG_INFINITY, // a failure to enrol is a non-match
    };
    let genuine: Vec<f32> = list
        .pairs
        .iter()
        .filter(|p| p.same)
        .map(closeness)
        .collect();
    let impostor: Vec<f32> = list
        .pairs
        .iter()
        .filter(|p| !p.same)
        .map(closeness)
        .collect();
    let mut impostor_desc = impostor.clone();
    impostor_desc.sort_by(|a, b| b.total_cmp(a));
    let default_threshold = metric.closeness(cal.raw_threshold(0.7));
    let (best, best_threshold) = eval::best_accuracy(&genuine, &impostor);
    let (tar2, _) = eval::tar_at_far(&genuine, &impostor_desc, 1e-2);
    let (tar3, thr3) = eval::tar_at_far(&genuine, &impostor_desc, 1e-3);
    let raw_of = |c: f32| metric.raw_from_closeness(c);
    let failures = templates.iter().filter(|t| t.is_none()).count();
    let mut out = json!({
        "embedder": config.inference.embedder.name(),
        "pairs": list.pairs.len(),
        "images": list.images.len(),
        "failures_to_enrol": failures,
        "accuracy_at_default": eval::accuracy_at(&genuine, &impostor, default_threshold),
        "accuracy_best": best,
        "threshold_best_raw": raw_of(best_threshold),
        "threshold_best_score": cal.score(raw_of(best_threshold)),
        "eer": eval::equal_error_rate(&genuine, &impostor),
        "tar_at_far_1e-2": tar2,
        "tar_at_far_1e-3": tar3,
        "threshold_at_far_1e-3": cal.score(raw_of(thr3)),
        "threshold_at_far_1e-3_raw": raw_of(thr3),
        "images_per_second": list.images.len() as f64 / seconds,
        "threads": threads,
    });
    if all {
        let ap = eval::all_pairs(&list.images, &templates, metric);
        let ap_json = serde_json::to_value(&ap)?;
        for (k, v) in ap_json.as_object().expect("struct serialises to an object") {
            out[k] = v.clone();
        }
        // True-match rate over all genuine pairs at the score levels of docs/accuracy.md.
        let mut levels = serde_json::Map::new();
        for s in [0.5f32, 0.6, 0.67, 0.7, 0.8] {
            let rate = ap.true_match_rate(metric.closeness(cal.raw_threshold(s)));
            levels.insert(format!("{s}"), json!(rate));
        }
        out["all_true_match_rate_at_score"] = serde_json::Value::Object(levels);
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
