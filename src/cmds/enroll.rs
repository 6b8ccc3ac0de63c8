//! `facegate enroll`: enrol photos through a running server (PUT /persons).

use std::path::PathBuf;

use anyhow::{bail, Result};

use facegate_daemon::api::client;

#[derive(clap::Args)]
pub struct Args {
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
    /// JPEG/PNG/WebP files, or folders of them.
    #[arg(required = true)]
    photos: Vec<PathBuf>,
}

pub fn run(args: &Args) -> Result<()> {
    let Some(key) = args
        .api_key
        .clone()
        .or_else(|| std::env::var("FACEGATE_API_KEY").ok())
    else {
        bail!("no API key: pass --api-key or set FACEGATE_API_KEY");
    };
    let files = client::photo_files(&args.photos)?;
    if files.is_empty() {
        bail!("no JPEG, PNG or WebP photo found in the paths given");
    }
    let results = client::enroll_photos(
        &args.url,
        &key,
        &args.collection,
        args.create,
        &args.storage,
        &files,
    )?;
    println!("{}", serde_json::to_string_pretty(&results)?);
    let failed = results.iter().filter(|r| r.code != "OK").count();
    if failed > 0 {
        bail!("{failed} of {} photos were not enrolled", results.len());
    }
    Ok(())
}
