//! The appliance's Ed25519 key pair, which signs its access messages. The private key is
//! created on first start in the state directory, readable by the service user only (0600);
//! door controllers trust the public key (`<prefix>/<device_id>/pubkey`, `/health`,
//! `facegate doctor`).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ed25519_dalek::{SigningKey, VerifyingKey};

/// The key's file name in the state directory.
pub const KEY_FILE: &str = "access-signing.key";

/// The first line of the key file; the second is the base64 of the 32-byte secret seed.
const KEY_FILE_HEADER: &str = "facegate ed25519 signing key v1";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the signing key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the signing key {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the signing key {path} is readable by other users (mode {mode:o}): anyone who can \
         read it can open the doors; run chmod 600 on it"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("the signing key {path} is not a facegate key file ({why})")]
    Malformed { path: PathBuf, why: &'static str },
    #[error("no randomness for a new signing key: {0}")]
    Random(String),
    #[error("{0:?} is not a base64 Ed25519 public key (44 characters)")]
    PublicKey(String),
}

/// The path of the signing key in `state_dir`.
pub fn key_path(state_dir: &Path) -> PathBuf {
    state_dir.join(KEY_FILE)
}

/// The key pair of `state_dir`, created there on first use.
pub fn load_or_create(state_dir: &Path) -> Result<SigningKey, KeyError> {
    let path = key_path(state_dir);
    match load(&path) {
        Err(KeyError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            create(&path)
        }
        other => other,
    }
}

/// The existing key pair at `path`.
pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
    let read = |source| KeyError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Exposed {
            path: path.to_owned(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    let malformed = |why| KeyError::Malformed {
        path: path.to_owned(),
        why,
    };
    let mut lines = text.lines();
    if lines.next() != Some(KEY_FILE_HEADER) {
        return Err(malformed("its first line is not the header"));
    }
    let seed = base64::engine::general_purpose::STANDARD
        .decode(lines.next().unwrap_or("").trim())
        .map_err(|_| malformed("the seed is not base64"))?;
    let seed: [u8; 32] = seed
        .try_into()
        .map_err(|_| malformed("the seed is not 32 bytes"))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Create a new key at `path` (never replacing one): written to a temporary file of mode
/// 0600, synced, then renamed into place.
fn create(path: &Path) -> Result<SigningKey, KeyError> {
    let write = |source| KeyError::Write {
        path: path.to_owned(),
        source,
    };
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(write)?;
    // A name of its own, so that two first starts at once never link each other's file.
    let tmp = path.with_extension(format!(
        "key.{}.{}.new",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(write)?;
    writeln!(
        file,
        "{KEY_FILE_HEADER}\n{}",
        base64::engine::general_purpose::STANDARD.encode(seed)
    )
    .and_then(|()| file.sync_all())
    .map_err(write)?;
    // A key another process created meanwhile wins: never replace a key in use.
    std::fs::hard_link(&tmp, path)
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Ok(())
            } else {
                Err(e)
            }
        })
        .map_err(write)?;
    let _ = std::fs::remove_file(&tmp);
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    let key = load(path)?;
    tracing::info!(path = %path.display(), public_key = %public_key_text(&key.verifying_key()),
        "created the appliance's access signing key");
    Ok(key)
}

/// The public key as published and configured: base64 (standard, padded) of its 32 bytes.
pub fn public_key_text(key: &VerifyingKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
}

/// A public key written as [`public_key_text`] writes it.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, KeyError> {
    let bad = || KeyError::PublicKey(text.to_owned());
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| bad())?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_readable_by_its_owner_only_and_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(key_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = load_or_create(dir.path()).unwrap();
        assert_eq!(first.to_bytes(), again.to_bytes());
        let other = tempfile::tempdir().unwrap();
        assert_ne!(
            load_or_create(other.path()).unwrap().to_bytes(),
            first.to_bytes(),
            "each appliance has its own key"
        );
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path()).unwrap();
        let path = key_path(dir.path());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create(dir.path()),
            Err(KeyError::Exposed { mode: 0o644, .. })
        ));
    }

    #[test]
    fn a_damaged_key_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_path(dir.path());
        std::fs::write(&path, "something else\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load_or_create(dir.path()),
            Err(KeyError::Malformed { .. })
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "something else\n");
    }

    #[test]
    fn a_public_key_reads_back_from_its_text() {
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
        let text = public_key_text(&key);
        assert_eq!(text.len(), 44);
        assert_eq!(parse_public_key(&text).unwrap(), key);
        assert!(parse_public_key("AAAA").is_err());
        assert!(parse_public_key("not base64").is_err());
    }
}
