// SPDX-License-Identifier: GPL-2.0-or-later
//! `cargo xtask clean`: deletes the cache's downloads and QEMU builds and
//! `target/vm/`, or (`--old`) only the QEMU builds of older inputs and of
//! checkouts that are gone.

use anyhow::Result;
use std::path::PathBuf;

use crate::build::cache;
use crate::build::pipeline::Session;
use crate::util;
use system_tests::repo;

/// Deletes what this tool created in the cache (never the cache root's
/// other contents, in case it points somewhere shared) and `target/vm/`.
pub fn clean(cache: &cache::Cache, repo: &repo::Repo) -> Result<()> {
    for dir in [
        cache.qemu_builds(),
        cache.downloads(),
        cache.apt(),
        cache.tools(),
        repo.vm_dir(),
    ] {
        if dir.exists() {
            eprintln!("removing {}", dir.display());
            util::remove_dir_all_if_exists(&dir)?;
        }
    }
    // Gone if it held nothing else.
    let _ = std::fs::remove_dir(&cache.root);
    Ok(())
}

/// Deletes the QEMU directories of other build inputs than the current,
/// those of checkouts that are gone, and the build directory of the
/// layout before checkouts had their own.
pub fn clean_old(session: &Session) -> Result<()> {
    let current = session.current_qemu_dirs()?;
    let with_own_lock = |dir: PathBuf| (cache::lock_path_of(&dir), dir);
    let old = cache::other_qemu_dirs(&session.cache, &current.root)
        .into_iter()
        .chain(current.stale_checkouts())
        .map(with_own_lock)
        .chain(
            // Built under the key's lock.
            Some(current.shared_build_of_old_layout())
                .filter(|dir| dir.is_dir())
                .map(|dir| (current.lock_path(), dir)),
        );
    for (lock, dir) in old {
        // A build running there holds the lock: leave it alone.
        let busy = std::fs::File::open(&lock).is_ok_and(|file| file.try_lock().is_err());
        if busy {
            eprintln!(
                "skipping {} (in use: {} is locked)",
                dir.display(),
                lock.display()
            );
            continue;
        }
        eprintln!("removing {}", dir.display());
        util::remove_dir_all_if_exists(&dir)?;
        if lock != current.lock_path() {
            let _ = std::fs::remove_file(lock);
        }
    }
    Ok(())
}
