// SPDX-License-Identifier: GPL-2.0-or-later

//! Looking inside a guest: the device tree the board generates (`cargo
//! xtask dtb`), and QEMU paused with its gdbstub for gdb-multiarch on the
//! kernel ELF (`cargo xtask gdb`); the debug tests check both.

use anyhow::{anyhow, bail, Context, Result};
use std::io::{ErrorKind, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::repo::{Flavor, Repo};
use crate::vm::{Kernel, VmConfig};

/// The aarch64-capable debuggers by program name, in order of preference:
/// Debian's and Ubuntu's gdb-multiarch, Arch's cross gdb, and plain gdb
/// (Fedora's and openSUSE's debug other architectures too).
const GDB_PROGRAMS: &[&str] = &["gdb-multiarch", "aarch64-linux-gnu-gdb", "gdb"];

/// The debugger to run: the first aarch64-capable gdb on PATH
/// (gdb-multiarch when none is, for the message that names it).
pub fn gdb_program() -> &'static str {
    let path = std::env::var_os("PATH").unwrap_or_default();
    GDB_PROGRAMS
        .iter()
        .copied()
        .find(|program| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        .unwrap_or(GDB_PROGRAMS[0])
}
/// The device-tree compiler, from Debian's device-tree-compiler.
const DTC: &str = "dtc";

/// What `cargo xtask dtb -o FILE` writes, from FILE's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtbFormat {
    /// Decompiled source text.
    Source,
    /// The flattened blob, as the guest receives it.
    Blob,
}

impl DtbFormat {
    pub fn of_path(path: &Path) -> Result<DtbFormat> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("dts") => Ok(DtbFormat::Source),
            Some("dtb") => Ok(DtbFormat::Blob),
            _ => bail!(
                "-o {}: the file name must end in .dts (decompiled text) or .dtb (the blob)",
                path.display()
            ),
        }
    }
}

/// Runs QEMU with `config` until its board has built the device tree, and
/// returns the blob (`-M ...,dumpdtb=FILE` makes QEMU write it and exit).
pub fn dump_dtb(repo: &Repo, config: &VmConfig) -> Result<Vec<u8>> {
    // Named apart from the dumps of the tests running beside it.
    static DUMPS: AtomicUsize = AtomicUsize::new(0);
    let dtb = repo.vm_dir().join(format!(
        "dump-{}-{}.dtb",
        std::process::id(),
        DUMPS.fetch_add(1, Ordering::Relaxed)
    ));
    let mut args = config.args(repo);
    let machine = args.iter().position(|a| a == "-M").context("no -M")? + 1;
    args[machine] = format!("{},dumpdtb={}", args[machine], dtb.display());
    let output = Command::new(repo.qemu_binary())
        .args(&args)
        .current_dir(&repo.root)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not run {}", repo.qemu_binary().display()))?;
    let blob = std::fs::read(&dtb);
    let _ = std::fs::remove_file(&dtb);
    if !output.status.success() {
        bail!(
            "QEMU could not build the machine ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    blob.with_context(|| format!("QEMU exited without writing {}", dtb.display()))
}

/// The blob as device-tree source, through `dtc`.
pub fn decompile(blob: &[u8]) -> Result<String> {
    let mut child = Command::new(DTC)
        .args(["-q", "-I", "dtb", "-O", "dts", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| missing_tool(DTC, "device-tree-compiler", error))?;
    let mut stdin = child.stdin.take().expect("piped");
    let blob = blob.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&blob));
    let output = child.wait_with_output()?;
    let _ = writer.join();
    if !output.status.success() {
        bail!(
            "dtc could not decompile the blob: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).context("dtc printed something that is not UTF-8")
}

/// `cargo xtask dtb`: prints the decompiled tree, or writes it to `output`.
pub fn dtb(repo: &Repo, config: &VmConfig, output: Option<&Path>) -> Result<()> {
    let blob = dump_dtb(repo, config)?;
    match output.map(|path| (path, DtbFormat::of_path(path))) {
        None => print!("{}", decompile(&blob)?),
        Some((path, format)) => {
            let contents = match format? {
                DtbFormat::Source => decompile(&blob)?.into_bytes(),
                DtbFormat::Blob => blob,
            };
            std::fs::write(path, contents)
                .with_context(|| format!("could not write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

/// The error for a tool that is not installed, naming the package.
pub fn missing_tool(tool: &str, package: &str, error: std::io::Error) -> anyhow::Error {
    if error.kind() == ErrorKind::NotFound {
        anyhow!(
            "{tool} not found: install Debian's {package} (other distributions: docs/hosts.md; \
             `cargo xtask build` installs it with the other prerequisites)"
        )
    } else {
        anyhow!("could not run {tool}: {error}")
    }
}

/// Fails with the fix when gdb-multiarch is not installed.
pub fn check_gdb() -> Result<()> {
    Command::new(gdb_program())
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .map_err(|error| missing_tool(gdb_program(), "gdb-multiarch", error))?;
    Ok(())
}

/// A port nobody listens on now, for tests that run in parallel.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// QEMU stopped at its first instruction, waiting for gdb on `gdb_port`,
/// with the guest's serial console on the TCP port `serial_port`. Killed
/// when dropped.
pub struct PausedQemu {
    child: Child,
    pub gdb_port: u16,
    pub serial_port: u16,
    /// QEMU's own output (errors, semihosting), away from gdb's terminal.
    pub log: PathBuf,
}

impl PausedQemu {
    pub fn start(repo: &Repo, config: &VmConfig, gdb_port: u16, serial_port: u16) -> Result<Self> {
        let log = repo.vm_dir().join("gdb-qemu.log");
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut config = config.clone();
        config.extra.splice(
            0..0,
            [
                // The console on a socket: gdb owns the terminal. wait=off:
                // the guest runs whether or not someone is connected.
                "-chardev".to_string(),
                format!("socket,id=console,host=127.0.0.1,port={serial_port},server=on,wait=off"),
                "-serial".to_string(),
                "chardev:console".to_string(),
                "-monitor".to_string(),
                "none".to_string(),
                "-gdb".to_string(),
                format!("tcp:127.0.0.1:{gdb_port}"),
                "-S".to_string(),
            ],
        );
        eprintln!("    {}", config.command_line(repo));
        let mut child = config
            .command(repo)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            // Its own process group: Ctrl-C in gdb interrupts the guest
            // (through gdb), it must not kill QEMU.
            .process_group(0)
            .spawn()
            .with_context(|| format!("could not start {}", repo.qemu_binary().display()))?;
        // Ready once the gdbstub listens (or QEMU gave up).
        let started = Instant::now();
        while TcpStream::connect((Ipv4Addr::LOCALHOST, serial_port)).is_err() {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "QEMU exited ({status}) before it was ready:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default().trim()
                );
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                bail!("QEMU did not open its serial port {serial_port} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(PausedQemu {
            child,
            gdb_port,
            serial_port,
            log,
        })
    }

    /// gdb-multiarch on `elf`, attached to this QEMU; with `batch`, runs
    /// that command file and exits.
    pub fn gdb_command(&self, repo: &Repo, elf: &Path, batch: Option<&Path>) -> Command {
        let mut cmd = Command::new(gdb_program());
        cmd.current_dir(&repo.root).arg("-q");
        if batch.is_some() {
            // Reproducible: no ~/.gdbinit.
            cmd.args(["-nx", "-batch"]);
        }
        cmd.args([
            "-ex",
            "set pagination off",
            "-ex",
            "set confirm off",
            // The kernel's paths are remapped to repository-relative.
            "-ex",
            &format!("directory {}", repo.root.display()),
            "-ex",
            &format!("target remote 127.0.0.1:{}", self.gdb_port),
        ]);
        if let Some(file) = batch {
            cmd.arg("-x").arg(file);
        }
        cmd.arg(elf);
        cmd
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PausedQemu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The kernel gdb loads symbols from: `--kernel`'s, else the project's
/// ELF (whose Image has the same code at the same addresses).
pub fn symbol_file(repo: &Repo, config: &VmConfig) -> PathBuf {
    let flavor = if config.tests {
        Flavor::WithTests
    } else {
        Flavor::Shipped
    };
    match &config.kernel {
        Kernel::Other(path) => repo.root.join(path),
        Kernel::Elf | Kernel::Image => repo.kernel_elf(flavor),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_format_follows_the_extension() {
        assert_eq!(
            DtbFormat::of_path(Path::new("virt.dts")).unwrap(),
            DtbFormat::Source
        );
        assert_eq!(
            DtbFormat::of_path(Path::new("out/virt.dtb")).unwrap(),
            DtbFormat::Blob
        );
        let error = DtbFormat::of_path(Path::new("virt.txt")).unwrap_err();
        assert!(error.to_string().contains(".dts"), "{error}");
    }
}
