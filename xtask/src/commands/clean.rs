// SPDX-License-Identifier: GPL-2.0-or-later
//! `cargo xtask clean`: deletes the cache's downloads and QEMU builds and
//! `target/vm/`, or (`--old`) only the QEMU builds of older inputs.

use anyhow::Result;

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

/// Deletes the QEMU directories of other build inputs than the current.
pub fn clean_old(session: &Session) -> Result<()> {
    let current = session.current_qemu_dirs()?;
    for dir in cache::other_qemu_dirs(&session.cache, &current.root) {
        eprintln!("removing {}", dir.display());
        util::remove_dir_all_if_exists(&dir)?;
        let _ = std::fs::remove_file(cache::lock_path_of(&dir));
    }
    Ok(())
}
