//! The door controller's memory of the last sequence accepted from each appliance: a small
//! JSON file replaced atomically (written beside, synced, renamed, folder synced), so that a
//! message acted on is refused after a crash or a restart too.

use std::io::Write;
use std::path::{Path, PathBuf};

use facegate_core::access::guard::Sequences;

#[derive(Debug, thiserror::Error)]
pub enum SequenceFileError {
    #[error("cannot read the door state {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the door state {path} is damaged ({why}); refusing to start, since a lost state would \
         accept old messages again: restore it, or delete it knowingly"
    )]
    Damaged { path: PathBuf, why: String },
    #[error("cannot write the door state {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The sequences in `path`; none when the file does not exist yet.
pub fn load(path: &Path) -> Result<Sequences, SequenceFileError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| SequenceFileError::Damaged {
            path: path.to_owned(),
            why: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Sequences::default()),
        Err(source) => Err(SequenceFileError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Replace `path` with `sequences`, durably.
pub fn save(path: &Path, sequences: &Sequences) -> Result<(), SequenceFileError> {
    let write = |source| SequenceFileError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(write)?;
    let tmp = path.with_extension("sequences.new");
    let mut file = std::fs::File::create(&tmp).map_err(write)?;
    file.write_all(&serde_json::to_vec(sequences).unwrap_or_default())
        .and_then(|()| file.sync_all())
        .map_err(write)?;
    std::fs::rename(&tmp, path).map_err(write)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_survive_a_restart_and_a_damaged_file_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("door-main.sequences");
        assert_eq!(load(&path).unwrap(), Sequences::default());
        let s = Sequences([("gate".to_string(), 42)].into());
        save(&path, &s).unwrap();
        assert_eq!(load(&path).unwrap(), s);
        std::fs::write(&path, "{\"gate\": ").unwrap();
        assert!(matches!(
            load(&path),
            Err(SequenceFileError::Damaged { .. })
        ));
    }
}
