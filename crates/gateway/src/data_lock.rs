//! The embedded data directory's lock: one gateway process per SQLite file.
//!
//! In embedded mode the hot layer (leases, event streams, the task cache) lives in the process,
//! so two processes on one data directory would each grant the same lease to different agents
//! and each run the sync loops over one SQLite file. At start the gateway takes an exclusive,
//! non-blocking lock (`flock`, through `std::fs::File::try_lock`) on `mcp-gateway.lock` beside
//! the SQLite file (`DATA_DIR/mcp-gateway.lock` by default) and writes its pid into it; a second
//! process finds it taken and stops at once, naming the holder. The operating system releases
//! the lock when the holder exits, however it exits (a crash or `kill -9` leaves no stale lock).

use crate::config::{DurableBackend, GatewayConfig};
use anyhow::Context;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct DataDirLock {
    /// Kept open: the lock lives as long as this descriptor.
    _file: File,
    /// The lock file ([`lock_path`]), to name in messages.
    pub path: PathBuf,
}

/// The lock file of an embedded store, `None` when the durable store is not a local file.
pub fn lock_path(cfg: &GatewayConfig) -> Option<PathBuf> {
    match cfg.durable_backend() {
        DurableBackend::Sqlite(db) => Some(db.with_extension("lock")),
        DurableBackend::Postgres(_) => None,
    }
}

/// Takes the embedded data directory's lock, or fails naming the process that holds it.
/// `Ok(None)` when the durable store is shared (Postgres), which needs no lock.
pub fn lock_data_dir(cfg: &GatewayConfig) -> anyhow::Result<Option<DataDirLock>> {
    let Some(path) = lock_path(cfg) else {
        return Ok(None);
    };
    lock_file(&path).map(Some)
}

/// Takes the exclusive lock on `path` (created if missing) and writes this process's pid in it.
pub fn lock_file(path: &Path) -> anyhow::Result<DataDirLock> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "pid unknown".to_owned(),
                pid => format!("pid {pid}"),
            };
            let dir = dir.unwrap_or(Path::new("."));
            anyhow::bail!(
                "the data directory {} is in use by another mcp-gateway ({holder}, lock file {}): \
                 an embedded gateway is a single instance; stop that one, or give this one \
                 another DATA_DIR (or set DATABASE_URL and REDIS_URL to run several gateways)",
                dir.display(),
                path.display()
            );
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| writeln!(file, "{}", std::process::id()))
        .and_then(|()| file.flush())
        .with_context(|| format!("writing the pid into {}", path.display()))?;
    Ok(DataDirLock {
        _file: file,
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_file_is_refused_naming_the_holder_until_released() {
        let dir = std::env::temp_dir().join(format!("mcp-lock-{}", uuid::Uuid::new_v4()));
        let path = dir.join("mcp-gateway.lock");
        let held = lock_file(&path).unwrap();
        let pid = std::fs::read_to_string(&path).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        // flock locks belong to the open file: a second open in this process is refused too.
        let err = lock_file(&path).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())) && err.contains("in use"),
            "{err}"
        );
        drop(held);
        let again = lock_file(&path).unwrap();
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
