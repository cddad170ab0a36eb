// SPDX-License-Identifier: GPL-2.0-or-later
//! The prerequisites step (`cargo xtask prereqs`, the first step of every
//! build) run for real by a user who is not root, on this host's real
//! package manager: with everything installed it must pass without asking
//! for root; with a package missing (a name that exists nowhere, required
//! through the test-only STOPWATCH_PREREQS_EXTRA_PACKAGE) it must print
//! the command to run and stop.
//!
//! Run as root, the test creates (once) the user `stopwatch-rootless` and
//! runs the already-built xtask binary as that user. Root's Rust toolchain
//! is out of that user's reach (root's home is private), so the test gives
//! the user hard links to the pinned toolchain's files (no copy, read-only
//! to them) and a copy of rustup. Run as any other user, the test runs the
//! binary as that user. In both cases a stand-in `sudo` comes first on
//! PATH: it records each call and refuses, as sudo does where a password
//! would be needed.
//!
//! Where root cannot create the user (no useradd, a read-only passwd
//! file) or hard-link the toolchain, the test says why in its output and
//! passes, unless STOPWATCH_REQUIRE_ROOTLESS_TEST is set: then it fails.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const USER: &str = "stopwatch-rootless";
const REQUIRE_ENV: &str = "STOPWATCH_REQUIRE_ROOTLESS_TEST";
const EXTRA_PACKAGE_ENV: &str = "STOPWATCH_PREREQS_EXTRA_PACKAGE";
const NO_SUCH_PACKAGE: &str = "stopwatch-no-such-package";

fn stdout_of(cmd: &mut Command) -> Result<String, String> {
    let output = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Who runs the binary, with which environment.
struct Runner {
    /// uid and gid to switch to (when we are root).
    ids: Option<(u32, u32)>,
    home: PathBuf,
    /// PATH after the stand-in sudo's directory.
    path_rest: String,
    rustup_home: Option<PathBuf>,
    scratch: PathBuf,
}

impl Runner {
    fn new() -> Result<Runner, String> {
        let scratch = std::env::temp_dir().join(format!("xtask-rootless-{}", std::process::id()));
        let _ = fs::remove_dir_all(&scratch);
        fs::create_dir_all(scratch.join("bin")).map_err(|e| e.to_string())?;
        let sudo = scratch.join("bin/sudo");
        fs::write(
            &sudo,
            format!(
                "#!/bin/sh\necho \"sudo $*\" >> {}\nexit 1\n",
                scratch.join("sudo.log").display()
            ),
        )
        .map_err(|e| e.to_string())?;
        fs::write(scratch.join("sudo.log"), "").map_err(|e| e.to_string())?;
        for (path, mode) in [
            (&scratch, 0o755),
            (&scratch.join("bin"), 0o755),
            (&sudo, 0o755),
            (&scratch.join("sudo.log"), 0o666),
        ] {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(|e| e.to_string())?;
        }
        let uid = stdout_of(Command::new("id").arg("-u"))?;
        if uid != "0" {
            return Ok(Runner {
                ids: None,
                home: std::env::var_os("HOME").unwrap_or_default().into(),
                path_rest: std::env::var("PATH").unwrap_or_default(),
                rustup_home: None,
                scratch,
            });
        }
        let exists = Command::new("id")
            .arg(USER)
            .output()
            .is_ok_and(|o| o.status.success());
        if !exists {
            stdout_of(Command::new("useradd").args(["--create-home", "--shell", "/bin/sh", USER]))
                .map_err(|e| format!("could not create the user {USER}: {e}"))?;
        }
        let uid: u32 = stdout_of(Command::new("id").args(["-u", USER]))?
            .parse()
            .unwrap();
        let gid: u32 = stdout_of(Command::new("id").args(["-g", USER]))?
            .parse()
            .unwrap();
        let passwd = stdout_of(Command::new("getent").args(["passwd", USER]))?;
        let home = PathBuf::from(passwd.split(':').nth(5).unwrap_or_default());
        let cargo_bin = give_toolchain(&home, uid, gid)?;
        Ok(Runner {
            ids: Some((uid, gid)),
            path_rest: format!(
                "{}:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
                cargo_bin.display()
            ),
            rustup_home: Some(home.join(".rustup")),
            home,
            scratch,
        })
    }

    /// `xtask prereqs` as the user, with `extra` in its environment.
    fn prereqs(&self, extra: Option<&str>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
        cmd.arg("prereqs").env_remove(EXTRA_PACKAGE_ENV);
        if let Some((uid, gid)) = self.ids {
            // A login's environment, nothing of root's.
            cmd.env_clear()
                .env("HOME", &self.home)
                .env("USER", USER)
                .env("LOGNAME", USER)
                .env("CARGO_HOME", self.home.join(".cargo"))
                .env("RUSTUP_HOME", self.rustup_home.as_ref().unwrap())
                .current_dir(&self.home)
                .uid(uid)
                .gid(gid);
        }
        let path = format!("{}:{}", self.scratch.join("bin").display(), self.path_rest);
        cmd.env("PATH", path);
        if let Some(package) = extra {
            cmd.env(EXTRA_PACKAGE_ENV, package);
        }
        cmd.output().expect("could not run xtask prereqs")
    }

    fn sudo_calls(&self) -> String {
        fs::read_to_string(self.scratch.join("sudo.log")).unwrap()
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.scratch);
    }
}

/// Gives `home`'s user the pinned toolchain (hard links to root's files)
/// and rustup (a copy); returns the user's cargo bin directory.
fn give_toolchain(home: &Path, uid: u32, gid: u32) -> Result<PathBuf, String> {
    let repo = repo_root();
    let sysroot = stdout_of(
        Command::new("rustc")
            .args(["--print", "sysroot"])
            .current_dir(&repo),
    )?;
    let sysroot = fs::canonicalize(&sysroot).map_err(|e| format!("{sysroot}: {e}"))?;
    let version = stdout_of(Command::new("rustc").arg("-vV").current_dir(&repo))?;
    let host = version
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .ok_or("no host in rustc -vV")?;
    let toolchain_file = fs::read_to_string(repo.join("rust-toolchain.toml")).unwrap();
    let channel = toolchain_file
        .lines()
        .find_map(|line| line.trim().strip_prefix("channel = "))
        .ok_or("no channel in rust-toolchain.toml")?
        .trim_matches('"');
    let rustup_home = home.join(".rustup");
    let toolchains = rustup_home.join("toolchains");
    let cargo_bin = home.join(".cargo/bin");
    for dir in [&rustup_home, &toolchains, &home.join(".cargo"), &cargo_bin] {
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    }
    let toolchain = toolchains.join(format!("{channel}-{host}"));
    if !toolchain.join("bin/rustc").is_file() {
        let _ = fs::remove_dir_all(&toolchain);
        stdout_of(Command::new("cp").arg("-al").arg(&sysroot).arg(&toolchain))
            .map_err(|e| format!("could not hard-link the toolchain for {USER}: {e}"))?;
    }
    let rustup = cargo_bin.join("rustup");
    if !rustup.is_file() {
        let ours = which("rustup").ok_or("rustup not found on PATH")?;
        fs::copy(&ours, &rustup).map_err(|e| e.to_string())?;
        std::os::unix::fs::chown(&rustup, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    }
    for proxy in ["cargo", "rustc", "rustdoc"] {
        let link = cargo_bin.join(proxy);
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("rustup", &link).map_err(|e| e.to_string())?;
        }
    }
    Ok(cargo_bin)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn prereqs_as_a_user_who_is_not_root() {
    let runner = match Runner::new() {
        Ok(runner) => runner,
        Err(why) => {
            let message = format!("rootless prerequisites test not run: {why}");
            if std::env::var_os(REQUIRE_ENV).is_some() {
                panic!("{message} ({REQUIRE_ENV} is set)");
            }
            println!("{message} (set {REQUIRE_ENV} to make this a failure)");
            return;
        }
    };
    let who = match runner.ids {
        Some((uid, _)) => format!("{USER} (uid {uid})"),
        None => "this user".to_string(),
    };

    let everything = runner.prereqs(None);
    assert!(
        everything.status.success(),
        "as {who}, with everything installed, `xtask prereqs` failed:\n{}",
        text(&everything)
    );
    assert_eq!(
        runner.sudo_calls(),
        "",
        "as {who}, with everything installed, `xtask prereqs` asked for sudo:\n{}",
        text(&everything)
    );

    let missing = runner.prereqs(Some(NO_SUCH_PACKAGE));
    let said = text(&missing);
    assert!(
        !missing.status.success(),
        "as {who}, with {NO_SUCH_PACKAGE} missing, `xtask prereqs` passed:\n{said}"
    );
    let command = said
        .lines()
        .find(|line| line.starts_with("  sudo ") && line.ends_with(&format!(" {NO_SUCH_PACKAGE}")));
    assert!(
        said.contains("neither root nor password-less sudo") && command.is_some(),
        "as {who}, with {NO_SUCH_PACKAGE} missing, `xtask prereqs` did not print the command \
         to run:\n{said}"
    );
    assert_eq!(
        runner.sudo_calls(),
        "sudo -n true\n",
        "as {who}, only the password-less check may call sudo:\n{said}"
    );
    println!(
        "as {who}: everything installed: passed, sudo never called; {NO_SUCH_PACKAGE} missing: \
         stopped with `{}`",
        command.unwrap().trim()
    );
}
