//! `facegate bench`: benchmarks, each reported next to a reference measured in the same run
//! (docs/benchmarks.md). A table goes to stderr, the figures as JSON to stdout.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use facegate_core::config::Config;
use facegate_core::engine::precision;
use facegate_tools::bench;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: Bench,
}

/// Refuse a zero among counts that must be at least 1 (exit status 1, as every other bad
/// input of a command).
fn at_least_one(flags: &str, values: &[usize]) -> Result<()> {
    if values.contains(&0) {
        bail!("{flags} take numbers of at least 1");
    }
    Ok(())
}

#[derive(clap::Subcommand)]
enum Bench {
    /// Per-stage latency on 1280×720 frames.
    Engine {
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
        iterations: u32,
        /// Photo with one face, placed on a 1280×720 frame (default: fixture obama.jpg).
        #[arg(long)]
        one: Option<PathBuf>,
        /// Photo with six faces (default: fixture t1.jpg).
        #[arg(long)]
        six: Option<PathBuf>,
    },
    /// Exact 1:N search over random templates next to the memory-bandwidth floor.
    Search {
        /// Collection sizes.
        #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
        templates: Vec<usize>,
        /// Template dimensions.
        #[arg(long, value_delimiter = ',', default_value = "512,128")]
        dim: Vec<usize>,
    },
    /// /face-search under load next to one engine pass.
    Http {
        /// The query photo (default: fixture obama.jpg).
        #[arg(long)]
        one: Option<PathBuf>,
        /// Persons enrolled.
        #[arg(long, default_value_t = 100_000)]
        persons: usize,
        /// Concurrent clients, one load run each.
        #[arg(long, value_delimiter = ',', default_value = "1,2,16")]
        clients: Vec<usize>,
        /// Requests per client per run.
        #[arg(long, default_value_t = 20)]
        requests: usize,
    },
    /// Resident memory of `serve` with N persons enrolled.
    Memory {
        /// The query photo (default: fixture obama.jpg).
        #[arg(long)]
        one: Option<PathBuf>,
        /// Persons enrolled.
        #[arg(long, default_value_t = 100_000)]
        persons: usize,
    },
    /// The main job on a 1280×720 replay (frame rate kept, event latency next to one engine
    /// pass).
    Pipeline {
        /// Seconds per run.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
        iterations: u32,
        /// A photo in the fixture folder; its obama.jpg is enrolled and obama2.jpg shown.
        #[arg(long)]
        one: Option<PathBuf>,
    },
    /// Gallery replication through a loopback mosquitto: a joining appliance's catch-up, the
    /// retained size per person, and commit-on-A → searchable-on-B next to the commit.
    Fleet {
        /// Persons in the gallery the joining appliance catches up with.
        #[arg(long, default_value_t = 10_000)]
        persons: usize,
        /// Enrolments timed one by one for the replication latency.
        #[arg(long, default_value_t = 200)]
        samples: usize,
    },
    /// Mixed API load on a `serve` child with a replay camera while its own loopback
    /// mosquitto is stopped every minute; RSS, outbox, log and events produced against
    /// events received.
    Soak {
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
        minutes: u32,
        /// A photo in the folder of photos to use (default: the fixtures).
        #[arg(long)]
        one: Option<PathBuf>,
    },
}

fn one_or_fixture(one: &Option<PathBuf>) -> PathBuf {
    one.clone().unwrap_or_else(|| super::fixture("obama.jpg"))
}

pub fn run(config: &Config, args: &Args) -> Result<()> {
    match &args.what {
        Bench::Engine {
            iterations,
            one,
            six,
        } => {
            let six = six.clone().unwrap_or_else(|| super::fixture("t1.jpg"));
            engine(config, *iterations, &one_or_fixture(one), &six)?;
        }
        Bench::Search { templates, dim } => {
            at_least_one(
                "--templates and --dim",
                &[templates.as_slice(), dim].concat(),
            )?;
            let mut rows = Vec::new();
            for &d in dim {
                for &n in templates {
                    let queries = (20_000_000 / n).clamp(20, 200);
                    let row = bench::search::bench_search(n, d, queries);
                    eprint!(
                        "{}",
                        bench::search::format_search_table(std::slice::from_ref(&row))
                    );
                    rows.push(row);
                }
            }
            eprint!("{}", bench::search::format_search_table(&rows));
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        Bench::Http {
            one,
            persons,
            clients,
            requests,
        } => {
            at_least_one("--clients", clients)?;
            at_least_one("--persons and --requests", &[*persons, *requests])?;
            let report = bench::http::bench_http(
                config,
                &one_or_fixture(one),
                *persons,
                clients,
                *requests,
            )?;
            eprint!("{}", bench::http::format_http_report(&report));
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Bench::Pipeline { iterations, one } => {
            let one = one_or_fixture(one);
            let enrol = one.with_file_name("obama.jpg");
            let shown = one.with_file_name("obama2.jpg");
            let report =
                bench::pipeline::bench_pipeline(config, &shown, &enrol, *iterations as f64)?;
            eprint!("{}", bench::pipeline::format_pipeline_report(&report));
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Bench::Soak { minutes, one } => {
            let exe = std::env::current_exe()?;
            let photos = match one {
                Some(one) => one.parent().unwrap_or(Path::new(".")).to_owned(),
                None => super::fixture_dir(),
            };
            let report = bench::soak::bench_soak(config, &exe, &photos, *minutes)?;
            eprint!("{}", bench::soak::format_soak_report(&report));
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !report.failures.is_empty() {
                bail!("soak failed: {}", report.failures.join("; "));
            }
        }
        Bench::Fleet { persons, samples } => {
            at_least_one("--persons and --samples", &[*persons, *samples])?;
            let report = bench::fleet::bench_fleet(*persons, *samples)?;
            eprint!("{}", bench::fleet::format_fleet_report(&report));
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Bench::Memory { one, persons } => {
            at_least_one("--persons", &[*persons])?;
            let exe = std::env::current_exe()?;
            let report = bench::memory::bench_memory(config, &exe, &one_or_fixture(one), *persons)?;
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
    }
    Ok(())
}

fn engine(config: &Config, iterations: u32, one: &Path, six: &Path) -> Result<()> {
    let mut frames = Vec::new();
    for (label, path) in [("1280x720, 1 face", one), ("1280x720, 6 faces", six)] {
        let photo = image::open(path)
            .with_context(|| {
                format!(
                    "cannot read bench photo {} (run `make models` for the fixtures in {})",
                    path.display(),
                    super::fixture_dir().display()
                )
            })?
            .to_rgb8();
        let frame = bench::frame_1280x720(&photo);
        let mut jpeg = Vec::new();
        frame.write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )?;
        frames.push((label.to_string(), jpeg));
    }
    let rows = bench::bench_engine(config, &frames, iterations as usize)?;
    eprint!("{}", bench::format_table(&rows, iterations as usize));
    // What `inference.precision = "auto"` would record for a new store on this device.
    let runtime = facegate_core::engine::runtime::Runtime::load(&config.inference)?;
    let kind = config.inference.embedder;
    let timings = precision::time_models(&runtime, kind, config.inference.mirror_average)?;
    let choice = precision::choose(kind, &timings);
    eprintln!(
        "precision auto for a new store of {}: {:?} ({})",
        kind.name(),
        choice.precision,
        choice.reason
    );
    println!("{}", serde_json::to_string_pretty(&rows)?);
    Ok(())
}
