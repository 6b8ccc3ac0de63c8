//! `facegate enroll`: photos enrolled through a running server's API, so that the server's
//! index sees them (writing to its LMDB directly would bypass it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use super::extract::encode_base64;

/// Photos per `PUT /persons` request.
const BATCH: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{url}: {message}")]
    Http { url: String, message: String },
}

/// One photo's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Enrolled {
    pub photo: String,
    pub person_id: String,
    pub code: String,
    pub message: String,
}

/// JPEG, PNG and WebP files: the paths given, and the photos directly inside any folder given.
pub fn photo_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ClientError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let entries = std::fs::read_dir(p).map_err(|source| ClientError::Read {
                path: p.clone(),
                source,
            })?;
            let mut inside: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| facegate_core::engine::frame::is_photo_file(f))
                .collect();
            inside.sort();
            out.extend(inside);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn call(method: &str, url: &str, key: &str, body: &Value) -> Result<(u16, Value), ClientError> {
    let response = ureq::request(method, url)
        .set("x-api-key", key)
        .timeout(Duration::from_secs(300))
        .send_json(body.clone());
    let response = match response {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => {
            return Err(ClientError::Http {
                url: url.to_owned(),
                message: e.to_string(),
            })
        }
    };
    let status = response.status();
    let value = response.into_json().unwrap_or(Value::Null);
    Ok((status, value))
}

fn http_error(url: &str, status: u16, body: &Value) -> ClientError {
    ClientError::Http {
        url: url.to_owned(),
        message: format!(
            "{status} {} {}",
            body["code"].as_str().unwrap_or(""),
            body["message"].as_str().unwrap_or("")
        ),
    }
}

/// Enrol every photo into `collection` (person id and name: the file stem), creating the
/// collection first when `create` is set.
pub fn enroll_photos(
    base_url: &str,
    key: &str,
    collection: &str,
    create: bool,
    storage: &str,
    photos: &[PathBuf],
) -> Result<Vec<Enrolled>, ClientError> {
    let base = base_url.trim_end_matches('/');
    if create {
        let url = format!("{base}/collection");
        let (status, body) = call("POST", &url, key, &json!({"name": collection}))?;
        if status != 200 && body["code"] != "ERR_ALREADY_EXISTS" {
            return Err(http_error(&url, status, &body));
        }
    }
    let mut out = Vec::with_capacity(photos.len());
    for chunk in photos.chunks(BATCH) {
        let mut persons = Vec::with_capacity(chunk.len());
        for path in chunk {
            persons.push(json!({
                "person_id": stem(path),
                "person_name": stem(path),
                "face_base_64": encode_base64(&std::fs::read(path).map_err(|source| {
                    ClientError::Read { path: path.clone(), source }
                })?),
            }));
        }
        let url = format!("{base}/persons");
        let body = json!({"collection_name": collection, "face_storage_type": storage,
                          "persons": persons});
        let (status, results) = call("PUT", &url, key, &body)?;
        let Some(items) = results.as_array().filter(|_| status == 200) else {
            return Err(http_error(&url, status, &results));
        };
        for (path, item) in chunk.iter().zip(items) {
            out.push(Enrolled {
                photo: path.display().to_string(),
                person_id: stem(path),
                code: item["code"].as_str().unwrap_or("").to_owned(),
                message: item["message"].as_str().unwrap_or("").to_owned(),
            });
        }
    }
    Ok(out)
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}
