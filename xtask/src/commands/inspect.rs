// SPDX-License-Identifier: GPL-2.0-or-later

//! `cargo xtask gdb` (QEMU paused with its gdbstub, gdb-multiarch in the
//! foreground) and `cargo xtask serial` (the guest's console while gdb
//! owns the terminal). The pieces the debug tests share live in
//! `system_tests::inspect`.

use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use crate::util::stdout_of;
use system_tests::inspect::{check_gdb, gdb_program, missing_tool, symbol_file, PausedQemu};
use system_tests::repo::Repo;
use system_tests::vm::VmConfig;

/// Default ports of `cargo xtask gdb`: QEMU's usual gdbstub port (`-s`)
/// and the serial console's.
pub const DEFAULT_GDB_PORT: u16 = 1234;
pub const DEFAULT_SERIAL_PORT: u16 = 5555;

/// `cargo xtask gdb`: QEMU paused, gdb in the foreground.
pub fn gdb(
    repo: &Repo,
    config: &VmConfig,
    batch: Option<&Path>,
    gdb_port: u16,
    serial_port: u16,
) -> Result<ExitStatus> {
    check_gdb()?;
    let qemu = PausedQemu::start(repo, config, gdb_port, serial_port)?;
    eprintln!(
        "QEMU is paused at the first instruction, gdbstub on 127.0.0.1:{gdb_port}.\n\
         Serial console: in another terminal, `cargo xtask serial --port {serial_port}` \
         (quit it with Ctrl-]).\nQEMU's own output: {}\n",
        repo.relative(&qemu.log).display()
    );
    let mut gdb = qemu
        .gdb_command(repo, &symbol_file(repo, config), batch)
        .spawn()
        .map_err(|error| missing_tool(gdb_program(), "gdb-multiarch", error))?;
    ignore_interrupts();
    let status = gdb.wait()?;
    drop(qemu);
    Ok(status)
}

/// Lets Ctrl-C reach gdb (which interrupts the guest) without ending this
/// process, which must stay to stop QEMU when gdb exits.
fn ignore_interrupts() {
    extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    const SIGINT: i32 = 2;
    const SIG_IGN: usize = 1;
    // SAFETY: signal(2) with SIG_IGN installs no handler code; the
    // children already started keep their own dispositions.
    unsafe {
        signal(SIGINT, SIG_IGN);
    }
}

/// `cargo xtask serial`: the guest console on `port`, in raw mode, until
/// Ctrl-] or until QEMU closes it.
pub fn serial(port: u16) -> Result<()> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).with_context(|| {
        format!(
            "nothing listens on 127.0.0.1:{port}: start `cargo xtask gdb` first (it prints the \
             serial port), or pass --port"
        )
    })?;
    eprintln!("connected to the guest console on port {port} (quit: Ctrl-])\r");
    let saved = stdout_of(Command::new("stty").arg("-g").stdin(Stdio::inherit())).ok();
    let raw = Command::new("stty")
        .args(["raw", "-echo"])
        .stdin(Stdio::inherit())
        .status();
    let mut reader = stream.try_clone()?;
    let saved_for_reader = saved.clone();
    std::thread::spawn(move || {
        let mut buffer = [0; 1024];
        let mut stdout = std::io::stdout();
        while let Ok(n @ 1..) = reader.read(&mut buffer) {
            let _ = stdout.write_all(&buffer[..n]);
            let _ = stdout.flush();
        }
        // QEMU closed the console: end like Ctrl-] would.
        restore_terminal(saved_for_reader.as_deref());
        std::process::exit(0);
    });
    let mut stdin = std::io::stdin();
    let mut byte = [0u8; 1];
    while stdin.read(&mut byte)? == 1 && byte[0] != 0x1d {
        stream.write_all(&byte)?;
    }
    if raw.is_ok() {
        restore_terminal(saved.as_deref());
    }
    eprintln!();
    Ok(())
}

fn restore_terminal(saved: Option<&str>) {
    let _ = Command::new("stty")
        .arg(saved.map_or("sane", str::trim))
        .stdin(Stdio::inherit())
        .status();
}
