//! `facegate serve`: the HTTP API and, with a camera configured, the recognition pipeline,
//! until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use facegate_core::config::Config;
use facegate_daemon::api::{listener, server, ApiKeys};
use facegate_daemon::daemon::{self, shutdown, systemd, Daemon};

#[derive(clap::Args)]
pub struct Args {
    /// Address and port to listen on (overrides server.listen); port 0 picks a free one.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Folder of the LMDB store (overrides store.data_dir).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// An accepted API key (repeatable); adds to the configured keys.
    #[arg(long, value_name = "KEY")]
    pub api_key: Vec<String>,
    /// Serve without any API key check. Only for a closed test bench: every client on the
    /// network gets full access, and /health and the log say so.
    #[arg(long)]
    pub insecure_no_auth: bool,
}

/// Serve with a configuration whose flags and API keys are resolved
/// ([`Config::resolve`]).
pub fn run(mut config: Config, args: &Args) -> Result<()> {
    // Only their digests are kept (ApiKeys): the plain keys do not stay in the state's config.
    let plain_keys = std::mem::take(&mut config.server.api_keys);
    let keys = match (plain_keys.is_empty(), args.insecure_no_auth) {
        (_, true) => {
            tracing::warn!(
                "AUTHENTICATION IS OFF (--insecure-no-auth): anyone who can reach {} can \
                 read, enrol and delete persons",
                config.server.listen
            );
            ApiKeys::disabled()
        }
        (false, false) => ApiKeys::new(&plain_keys),
        (true, false) => bail!(
            "no API key is configured. Set server.api_keys or server.api_key_file in the \
             config file, FACEGATE_API_KEYS in the environment, or pass --api-key KEY \
             (--insecure-no-auth serves without keys, for a closed test bench only)"
        ),
    };
    let data_dir = config.store.resolved_data_dir();
    let addr = config.server.listen;
    daemon::limits::check_open_file_limit(config.server.max_connections);
    // Checked before anything starts: systemd must not see READY for a server that then
    // cannot serve.
    listener::load_tls(&config.server)?;
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
        let daemon = Daemon::start(
            &state.config,
            state.store.clone(),
            state.metrics.daemon.clone(),
            &data_dir,
            state.outputs(),
        )
        .context("cannot start the cameras and the MQTT link")?;
        let _ = state.daemon.set(daemon.status());
        systemd::ready(&format!("serving on {bound}"));
        let watchdog = tokio::spawn(systemd::watchdog(daemon.status()));
        // Scripts and tests wait for this line to learn the port.
        let scheme = match state.config.server.tls_cert_file {
            None => "http",
            Some(_) => "https",
        };
        println!("facegate: listening on {scheme}://{bound}");
        use std::io::Write as _;
        std::io::stdout().flush()?;
        let live = state.live.clone();
        let stop = async move {
            shutdown::signals().await;
            // Live event streams never end by themselves: end them, or they would hold the
            // listener's graceful shutdown for its whole grace period.
            live.close();
        };
        server::serve(listener, Arc::new(state), stop).await?;
        // The API has finished its requests; now capture stops, the pipelines finish their
        // frame and the outbox is flushed to the broker.
        daemon.shutdown().await;
        watchdog.abort();
        tracing::info!("stopped");
        Ok(())
    })
}
