// SPDX-License-Identifier: GPL-2.0-or-later
//! Faults of the pipeline, on fake stages in a temporary cache: every
//! stage interrupted half-way, damaged downloads and binaries; and two
//! checkouts built in turns. (The guest kernel's stage is cargo, which
//! records a build only once it finished, then [`util::install_copy`],
//! tested in `util`; the lock is tested there too.)

use super::*;
use crate::util::{fetch_verified, sha256_hex, Pinned};
use anyhow::bail;
use std::time::SystemTime;

const TARBALL: &[u8] = b"qemu-10.2.2 source tarball";
const BINARY: &[u8] = b"QEMU emulator version 10.2.2";

/// Stages that write a few files each and can be interrupted in the
/// middle of one: what they wrote so far stays, as after a Ctrl-C.
/// The device sync is the real one; the fake ninja, like ninja,
/// compiles when a device source is newer than its binary, which then
/// holds the device's sources after [`BINARY`].
struct FakeStages {
    downloads: PathBuf,
    repo_root: PathBuf,
    interrupt: Option<&'static str>,
    /// The stages that ran, in order.
    ran: Vec<&'static str>,
    downloaded: usize,
    /// How many times the fake ninja compiled the binary.
    compiled: usize,
}

impl FakeStages {
    fn new(scratch: &Path, repo_root: &Path, interrupt: Option<&'static str>) -> FakeStages {
        FakeStages {
            downloads: scratch.join("downloads"),
            repo_root: repo_root.to_path_buf(),
            interrupt,
            ran: Vec::new(),
            downloaded: 0,
            compiled: 0,
        }
    }

    fn enter(&mut self, stage: &'static str) {
        self.ran.push(stage);
    }

    fn maybe_interrupt(&self, stage: &str) -> Result<()> {
        if self.interrupt == Some(stage) {
            bail!("interrupted during {stage}");
        }
        Ok(())
    }
}

fn ensure_empty(dir: &Path) -> Result<()> {
    let leftovers = fs::read_dir(dir).map_or(0, |entries| entries.count());
    if leftovers > 0 {
        bail!(
            "{} holds {leftovers} entries of a half-done run",
            dir.display()
        );
    }
    Ok(())
}

fn modified(path: &Path) -> SystemTime {
    fs::metadata(path).unwrap().modified().unwrap()
}

impl Stages for FakeStages {
    fn fetch(&mut self) -> Result<PathBuf> {
        self.enter("download");
        fs::create_dir_all(&self.downloads)?;
        let path = self.downloads.join("qemu.tar.xz");
        let pinned = [Pinned {
            path: path.clone(),
            sha256: &sha256_hex(TARBALL),
        }];
        let interrupted = self.interrupt == Some("download");
        fetch_verified(&pinned, || {
            self.downloaded += 1;
            if interrupted {
                // Half the file arrived.
                fs::write(&path, &TARBALL[..TARBALL.len() / 2])?;
                bail!("interrupted during download");
            }
            fs::write(&path, TARBALL)?;
            Ok(())
        })?;
        Ok(path)
    }

    fn prepare(&mut self, tarball: &Path, dirs: &QemuDirs) -> Result<()> {
        self.enter("prepare");
        ensure_empty(&dirs.src)?;
        fs::create_dir_all(&dirs.src)?;
        fs::write(dirs.src.join("extracted"), fs::read(tarball)?)?;
        self.maybe_interrupt("prepare")?;
        fs::write(dirs.src.join("patched"), "all patches applied")?;
        Ok(())
    }

    fn clone_source(&mut self, dirs: &QemuDirs, checkout: &CheckoutDirs) -> Result<()> {
        self.enter("clone");
        if !dirs.src.join("patched").is_file() {
            bail!("cloning an unpatched tree");
        }
        ensure_empty(&checkout.src)?;
        fs::create_dir_all(&checkout.src)?;
        fs::copy(dirs.src.join("extracted"), checkout.src.join("extracted"))?;
        self.maybe_interrupt("clone")?;
        fs::copy(dirs.src.join("patched"), checkout.src.join("patched"))?;
        Ok(())
    }

    fn sync_device(&mut self, checkout: &CheckoutDirs) -> Result<MirrorReport> {
        if !checkout.src.join("patched").is_file() {
            bail!("syncing the device into an unpatched tree");
        }
        qemu_source::sync_device(&self.repo_root, &checkout.src)
    }

    fn configure(&mut self, checkout: &CheckoutDirs) -> Result<()> {
        self.enter("configure");
        ensure_empty(&checkout.build)?;
        fs::write(checkout.build.join("meson-private"), "half")?;
        self.maybe_interrupt("configure")?;
        fs::write(checkout.build.join("build.ninja"), "configured")?;
        Ok(())
    }

    fn ninja(&mut self, checkout: &CheckoutDirs) -> Result<String> {
        self.enter("ninja");
        if !checkout.build.join("build.ninja").is_file() {
            bail!("ninja: build.ninja missing");
        }
        let device = checkout.src.join(qemu_source::DEVICE_DIR_IN_QEMU);
        let sources = util::list_files(&device, &|_| false)?;
        // Like ninja, trust an existing output (even a damaged one)
        // unless an input is newer.
        let binary = checkout.build.join(NINJA_TARGET);
        let up_to_date = binary.exists()
            && sources
                .iter()
                .all(|source| modified(&device.join(source)) <= modified(&binary));
        if up_to_date {
            return Ok("up to date".into());
        }
        self.compiled += 1;
        if self.interrupt == Some("ninja") {
            fs::write(&binary, &BINARY[..4])?;
            bail!("interrupted during ninja");
        }
        let mut contents = BINARY.to_vec();
        for source in sources {
            contents.extend(fs::read(device.join(source))?);
        }
        fs::write(&binary, contents)?;
        Ok("compiled".into())
    }

    fn check(&mut self, _checkout: &CheckoutDirs, binary: &Path) -> Result<()> {
        self.enter("check");
        if !fs::read(binary)?.starts_with(BINARY) {
            bail!("{} does not run", binary.display());
        }
        Ok(())
    }
}

/// A temporary cache, and checkouts (a `qemu-device/` each).
struct Scratch {
    root: PathBuf,
    dirs: QemuDirs,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let root = std::env::temp_dir()
            .join(format!("xtask-faults-{}", std::process::id()))
            .join(name);
        let _ = fs::remove_dir_all(&root);
        let cache = Cache {
            root: root.join("cache"),
        };
        let scratch = Scratch {
            dirs: QemuDirs::new(&cache, "10.2.2", "0123456789abcdef"),
            root,
        };
        scratch.edit_device("a", "the device of checkout a");
        scratch
    }

    /// Checkout `name`'s root.
    fn repo(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn device_source(&self, name: &str) -> PathBuf {
        self.repo(name).join("qemu-device/src/lib.rs")
    }

    /// Writes checkout `name`'s device source (making the checkout).
    fn edit_device(&self, name: &str, text: &str) {
        let source = self.device_source(name);
        fs::create_dir_all(source.parent().unwrap()).unwrap();
        fs::create_dir_all(self.repo(name).join("xtask")).unwrap();
        fs::write(source, text).unwrap();
    }

    fn checkout(&self, name: &str) -> CheckoutDirs {
        self.dirs.checkout(&self.repo(name))
    }

    fn installed(&self, name: &str) -> PathBuf {
        self.repo(name).join("target/vm/qemu-system-aarch64")
    }

    fn stages(&self, name: &str, interrupt: Option<&'static str>) -> FakeStages {
        FakeStages::new(&self.root, &self.repo(name), interrupt)
    }

    /// Builds checkout `name`.
    fn build_checkout(&self, name: &str, stages: &mut FakeStages) -> Result<BuildOutcome> {
        run_stages(
            &self.dirs,
            &self.repo(name),
            stages,
            &self.installed(name),
            &mut Vec::new(),
        )
    }

    /// Builds checkout `a`.
    fn build(&self, stages: &mut FakeStages) -> Result<BuildOutcome> {
        self.build_checkout("a", stages)
    }

    fn assert_complete(&self) {
        let checkout = self.checkout("a");
        assert_eq!(fs::read(self.dirs.src.join("extracted")).unwrap(), TARBALL);
        assert!(self.dirs.src.join("patched").is_file());
        assert!(checkout.src.join("patched").is_file());
        assert!(checkout.build.join("build.ninja").is_file());
        let installed = fs::read(self.installed("a")).unwrap();
        assert_eq!(installed, [BINARY, b"the device of checkout a"].concat());
        assert!(Stage::SHARED.iter().all(|stage| self.dirs.is_done(*stage)));
        assert!(Stage::CHECKOUT.iter().all(|stage| checkout.is_done(*stage)));
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

#[test]
fn a_build_interrupted_at_any_stage_recovers_on_the_next_run() {
    let cases: [(&str, &[&str]); 5] = [
        (
            "download",
            &[
                "download",
                "prepare",
                "clone",
                "configure",
                "ninja",
                "check",
            ],
        ),
        (
            "prepare",
            &[
                "download",
                "prepare",
                "clone",
                "configure",
                "ninja",
                "check",
            ],
        ),
        ("clone", &["clone", "configure", "ninja", "check"]),
        ("configure", &["configure", "ninja", "check"]),
        // ninja trusts the half-written binary; the check catches it
        // and the build directory is redone from configure on.
        ("ninja", &["ninja", "check", "configure", "ninja", "check"]),
    ];
    for (stage, redone) in cases {
        let scratch = Scratch::new(stage);
        let error = scratch
            .build(&mut scratch.stages("a", Some(stage)))
            .unwrap_err();
        assert!(format!("{error:#}").contains("interrupted"), "{error:#}");
        assert!(
            !scratch.installed("a").exists(),
            "{stage}: nothing installed"
        );

        let mut second = scratch.stages("a", None);
        scratch
            .build(&mut second)
            .unwrap_or_else(|e| panic!("after an interrupted {stage}: {e:#}"));
        assert_eq!(second.ran, redone, "after an interrupted {stage}");
        scratch.assert_complete();

        let mut third = scratch.stages("a", None);
        scratch.build(&mut third).unwrap();
        assert_eq!(third.ran, ["ninja", "check"], "then all is done");
    }
}

#[test]
fn a_damaged_download_is_fetched_again() {
    let scratch = Scratch::new("damaged-download");
    let mut stages = scratch.stages("a", None);
    fs::create_dir_all(&stages.downloads).unwrap();
    let tarball = stages.downloads.join("qemu.tar.xz");
    fs::write(&tarball, b"qemu-10.2.2 source tarbalX").unwrap();
    scratch.build(&mut stages).unwrap();
    assert_eq!(stages.downloaded, 1, "downloaded again");
    scratch.assert_complete();

    // A good download is not fetched again.
    let fresh = Scratch::new("good-download");
    let mut stages = scratch.stages("a", None);
    fresh.build(&mut stages).unwrap();
    assert_eq!(stages.downloaded, 0);
}

#[test]
fn a_damaged_built_binary_is_rebuilt() {
    let scratch = Scratch::new("damaged-binary");
    scratch.build(&mut scratch.stages("a", None)).unwrap();
    let built = scratch.checkout("a").build.join(NINJA_TARGET);
    fs::write(&built, b"garbage of another length").unwrap();
    let mut stages = scratch.stages("a", None);
    scratch.build(&mut stages).unwrap();
    assert_eq!(
        stages.ran,
        ["ninja", "check", "configure", "ninja", "check"]
    );
    scratch.assert_complete();
}

#[test]
fn a_damaged_installed_binary_is_installed_again() {
    let scratch = Scratch::new("damaged-install");
    scratch.build(&mut scratch.stages("a", None)).unwrap();
    // Same size, written in place (as a bad copy or a stray write),
    // later than the build (file times tick in milliseconds).
    std::thread::sleep(Duration::from_millis(20));
    let mut damaged = fs::read(scratch.installed("a")).unwrap();
    damaged[0] ^= 0xff;
    fs::write(scratch.installed("a"), &damaged).unwrap();
    let outcome = scratch.build(&mut scratch.stages("a", None)).unwrap();
    assert!(outcome.installed);
    scratch.assert_complete();
}

#[test]
fn two_checkouts_built_in_turns_do_not_undo_each_others_builds() {
    let scratch = Scratch::new("two-checkouts");
    scratch.edit_device("b", "the device of checkout b");
    let build = |name: &str| {
        let mut stages = scratch.stages(name, None);
        let outcome = scratch.build_checkout(name, &mut stages).unwrap();
        (stages, outcome)
    };

    let (first_a, _) = build("a");
    assert_eq!(
        first_a.ran,
        [
            "download",
            "prepare",
            "clone",
            "configure",
            "ninja",
            "check"
        ]
    );
    // The second checkout clones the shared source: no download, no
    // preparation; then a build of its own.
    let (first_b, _) = build("b");
    assert_eq!(first_b.ran, ["clone", "configure", "ninja", "check"]);
    assert_eq!(first_b.compiled, 1);

    let a = scratch.checkout("a");
    let a_binary = a.build.join(NINJA_TARGET);
    let a_device = a
        .src
        .join(qemu_source::DEVICE_DIR_IN_QEMU)
        .join("src/lib.rs");
    let a_before = (modified(&a_binary), modified(&a_device));

    // A again: nothing to do, nothing copied.
    let (third_a, outcome) = build("a");
    assert_eq!(third_a.ran, ["ninja", "check"], "no stamped stage runs");
    assert_eq!(third_a.compiled, 0, "ninja compiles nothing");
    assert_eq!(
        outcome,
        BuildOutcome {
            device_files_synced: 0,
            installed: false
        },
        "no device file synced, no binary installed"
    );

    // B's device edit is built in B's directory only.
    std::thread::sleep(Duration::from_millis(20));
    scratch.edit_device("b", "the device of checkout b, edited");
    let (edited_b, outcome) = build("b");
    assert_eq!(edited_b.compiled, 1);
    assert_eq!(outcome.device_files_synced, 1);
    assert_eq!(
        fs::read(scratch.installed("b")).unwrap(),
        [BINARY, b"the device of checkout b, edited"].concat()
    );
    assert_eq!((modified(&a_binary), modified(&a_device)), a_before);
    assert_eq!(
        fs::read_to_string(&a_device).unwrap(),
        "the device of checkout a"
    );
    assert!(
        !scratch
            .dirs
            .src
            .join(qemu_source::DEVICE_DIR_IN_QEMU)
            .exists(),
        "the shared source has no device"
    );

    let (fourth_a, outcome) = build("a");
    assert_eq!(
        (fourth_a.ran.as_slice(), fourth_a.compiled),
        (&["ninja", "check"][..], 0)
    );
    assert!(!outcome.installed && outcome.device_files_synced == 0);
    scratch.assert_complete();
}
