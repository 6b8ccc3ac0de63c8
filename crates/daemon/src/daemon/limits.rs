//! The process's open-file limit: `server.max_connections` client connections plus the
//! store, models and cameras must fit under it (the systemd unit sets `LimitNOFILE`; a shell
//! often starts with a soft limit of 1024).

/// Descriptors kept for everything but client connections: the store, the outbox, models,
/// cameras, the broker, log and refusals in progress.
const RESERVED_FILES: u64 = 256;

/// Raise the soft limit of open files to the hard limit.
pub fn raise_open_file_limit() {
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

/// Warn when `server.max_connections` client connections would not fit under the open-file
/// limit: the cap would then not protect the descriptors it is there to protect.
// rlim_t is 64-bit here but 32-bit on armhf: the casts are needed there.
#[allow(clippy::unnecessary_cast)]
pub fn check_open_file_limit(max_connections: usize) {
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
