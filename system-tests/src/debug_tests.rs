// SPDX-License-Identifier: GPL-2.0-or-later

//! The `debug` stage: what `cargo xtask dtb`, `cargo xtask gdb --batch`
//! and `cargo xtask qemu --kernel --devices` rely on, and the kernel's
//! line tables. (The device's trace events are checked by the qtests.)

use anyhow::{bail, ensure, Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::guest;
use crate::inspect::{self, PausedQemu};
use crate::repo::Repo;
use crate::vm::{Gic, VmConfig};

/// The gdb command file the gdb test runs; users can run it too.
pub const GDB_SCRIPT: &str = "xtask/gdb/stopwatch-interrupt.gdb";
/// The driver source the handler lives in, as the kernel's line tables
/// name it (paths are remapped to repository-relative).
const DRIVER_SOURCE: &str = "guest-kernel/src/drivers/stopwatch/mod.rs";
const HANDLER: &str = "handle_interrupt";

/// The bench's boot floor (`guest-kernel/boot-floor`) boots on the bench's
/// QEMU command line and prints exactly the shell's prompt, from a few
/// instructions (else it would not be a floor).
pub fn boot_floor_kernel_prints_the_prompt(repo: &Repo, timeout: Duration) -> Result<String> {
    let elf = repo.boot_floor_kernel();
    let loadable = crate::elf::loadable_size(&elf)?;
    ensure!(
        loadable <= 256,
        "{}: {loadable} loadable bytes, more than a floor needs",
        elf.display()
    );
    let config = VmConfig {
        kernel: crate::vm::Kernel::Other(repo.relative(&elf).display().to_string()),
        ..VmConfig::default()
    };
    let mut console = crate::serial::SerialConsole::spawn(repo, &config, None)?;
    console.expect(crate::serial::PROMPT, timeout)?;
    // Anything else would have come before the prompt.
    let transcript = console.transcript();
    ensure!(
        transcript == crate::serial::PROMPT,
        "expected exactly {:?}, got {transcript:?}",
        crate::serial::PROMPT
    );
    Ok(format!(
        "{loadable} loadable bytes, printed {:?}",
        crate::serial::PROMPT
    ))
}

/// `cargo xtask dtb --gic 3 --devices 2 -o FILE.dts` and `-o FILE.dtb`: two
/// stopwatch nodes with their two regions and a level-high SPI each.
pub fn dtb_has_the_stopwatch_nodes(repo: &Repo) -> Result<String> {
    let config = VmConfig {
        gic: Some(Gic::V3),
        devices: 2,
        append: Some("hello dtb".into()),
        ..VmConfig::default()
    };
    let scratch = repo.vm_dir();
    let dts_path = scratch.join("test-dtb.dts");
    let dtb_path = scratch.join("test-dtb.dtb");
    inspect::dtb(repo, &config, Some(&dts_path))?;
    inspect::dtb(repo, &config, Some(&dtb_path))?;
    // A string list as "a", "b", whichever form this dtc writes ("a\0b").
    let dts = std::fs::read_to_string(&dts_path)?.replace("\\0", "\", \"");
    let blob = std::fs::read(&dtb_path)?;
    ensure!(
        blob.starts_with(&[0xd0, 0x0d, 0xfe, 0xed]),
        "-o .dtb did not write a flattened device tree"
    );
    let nodes = stopwatch_nodes(&dts);
    ensure!(
        nodes.len() == 2,
        "expected 2 stopwatch nodes for --devices 2, found {}:\n{dts}",
        nodes.len()
    );
    for node in &nodes {
        for property in [
            "compatible = \"qemu,stopwatch\", \"stopwatch\";",
            "reg-names = \"shared\", \"regs\";",
            "interrupts = <0x00 ",
            " 0x04>;",
        ] {
            ensure!(node.contains(property), "no `{property}` in\n{node}");
        }
        let reg = node
            .lines()
            .find_map(|line| line.trim().strip_prefix("reg = <"))
            .context("a stopwatch node without reg")?;
        // Two regions of one address and one size cell each.
        ensure!(
            reg.trim_end_matches(">;").split_whitespace().count() == 4,
            "reg should hold two (address, size) pairs: {reg}"
        );
    }
    ensure!(
        dts.contains("compatible = \"arm,gic-v3\";"),
        "--gic 3 did not reach the board"
    );
    ensure!(
        dts.contains("bootargs = \"hello dtb\";"),
        "--append did not reach /chosen"
    );
    Ok(format!(
        "{} nodes, {} lines of source",
        nodes.len(),
        dts.lines().count()
    ))
}

/// The text of each `stopwatch@...` node of a decompiled tree.
fn stopwatch_nodes(dts: &str) -> Vec<String> {
    let mut nodes = Vec::new();
    let mut lines = dts.lines();
    while let Some(line) = lines.next() {
        if line.trim_start().starts_with("stopwatch@") {
            let mut node = vec![line];
            for line in lines.by_ref() {
                node.push(line);
                if line.trim() == "};" {
                    break;
                }
            }
            nodes.push(node.join("\n"));
        }
    }
    nodes
}

/// The kernel ELF has line tables (`.debug_line`), and no debug section
/// is allocated: they stay out of the loaded image.
pub fn kernel_has_line_tables(elf: &Path) -> Result<String> {
    const SHF_ALLOC: u64 = 0x2;
    let sections = crate::elf::sections(elf)?;
    let line = sections
        .iter()
        .find(|(name, _, _)| name == ".debug_line")
        .with_context(|| {
            format!(
                "{} has no .debug_line: gdb would show no source (the kernel must be \
                 built with line tables, see xtask/src/build/kernel.rs)",
                elf.display()
            )
        })?;
    ensure!(line.2 > 0, ".debug_line is empty");
    for (name, flags, _) in &sections {
        ensure!(
            !(name.starts_with(".debug") && flags & SHF_ALLOC != 0),
            "{name} is allocated: it would grow the loaded image"
        );
    }
    Ok(format!(
        ".debug_line {} bytes, loadable {} bytes",
        line.2,
        crate::elf::loadable_size(elf)?
    ))
}

/// `cargo xtask gdb --batch xtask/gdb/stopwatch-interrupt.gdb`, with
/// `timeout 1` typed into the serial console: the backtrace must name the
/// handler, its file, and a line inside it.
pub fn gdb_breaks_in_the_handler(repo: &Repo, timeout: Duration) -> Result<String> {
    inspect::check_gdb()?;
    let config = VmConfig::default();
    let qemu = PausedQemu::start(repo, &config, inspect::free_port()?, inspect::free_port()?)?;
    let mut gdb = qemu
        .gdb_command(
            repo,
            &inspect::symbol_file(repo, &config),
            Some(&repo.root.join(GDB_SCRIPT)),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (sender, lines) = mpsc::channel();
    for stream in [
        Box::new(gdb.stdout.take().expect("piped")) as Box<dyn Read + Send>,
        Box::new(gdb.stderr.take().expect("piped")),
    ] {
        let sender = sender.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                eprintln!("    [gdb] {line}");
                let _ = sender.send(line);
            }
        });
    }
    drop(sender);

    let deadline = Instant::now() + timeout;
    // The console stays connected until gdb is done: closed with the
    // shell's echo unread, the connection is reset, and QEMU drops what it
    // had not yet taken of the typed line (seen: 2 runs in 17 timed out).
    let typed = type_into_console(qemu.serial_port, "timeout 1", deadline);
    let mut transcript = Vec::new();
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => transcript.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = gdb.kill();
                bail!(
                    "gdb did not finish within {}s (console: {}); its output:\n{}",
                    timeout.as_secs(),
                    typed.map_or_else(|e| format!("{e:#}"), |_| "typed".into()),
                    transcript.join("\n")
                );
            }
        }
    }
    let _ = gdb.wait();
    let console = typed.context("typing `timeout 1` into the guest console")?;
    drop(console);
    drop(qemu);
    check_backtrace(&transcript.join("\n"), &repo.root.join(DRIVER_SOURCE))
}

/// Connects to the console, waits for the shell's prompt, types `line`;
/// returns the connection, to be kept open until the line has been run.
fn type_into_console(port: u16, line: &str, deadline: Instant) -> Result<TcpStream> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut seen = Vec::new();
    let mut buffer = [0; 1024];
    let mut last_nudge = Instant::now() - Duration::from_secs(1);
    // The console was not connected while the banner went out: an empty
    // line makes the shell print its prompt again.
    while !String::from_utf8_lossy(&seen).contains(crate::serial::PROMPT) {
        ensure!(
            Instant::now() < deadline,
            "no shell prompt on the console; it printed:\n{}",
            String::from_utf8_lossy(&seen)
        );
        if last_nudge.elapsed() > Duration::from_millis(500) {
            stream.write_all(b"\r")?;
            last_nudge = Instant::now();
        }
        match stream.read(&mut buffer) {
            Ok(0) => bail!("QEMU closed the console"),
            Ok(n) => seen.extend_from_slice(&buffer[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.into()),
        }
    }
    stream.write_all(format!("{line}\r").as_bytes())?;
    Ok(stream)
}

/// The backtrace's first frame is the handler, at a line of the driver
/// file that lies inside the handler's body.
fn check_backtrace(transcript: &str, source: &Path) -> Result<String> {
    // Frames above the handler may be code inlined into it (an atomic
    // store): the first frame in the driver file must be the handler.
    let frames: Vec<&str> = transcript.lines().filter(|l| l.starts_with('#')).collect();
    ensure!(
        !frames.is_empty(),
        "no backtrace in gdb's output:\n{transcript}"
    );
    let frame = frames
        .iter()
        .find(|line| line.contains(HANDLER))
        .with_context(|| format!("no frame of the stopwatch's {HANDLER}:\n{transcript}"))?;
    let location = frame
        .rsplit_once(" at ")
        .map(|(_, at)| at.trim())
        .with_context(|| format!("the handler's frame has no source location: {frame}"))?;
    let (file, line) = location
        .rsplit_once(':')
        .with_context(|| format!("no line number in {location}"))?;
    ensure!(
        file.ends_with(DRIVER_SOURCE),
        "the handler's frame is in {file}, not {DRIVER_SOURCE}"
    );
    let line: usize = line
        .parse()
        .with_context(|| format!("bad line in {location}"))?;
    let body = function_lines(source, HANDLER)?;
    ensure!(
        body.contains(&line),
        "line {line} is not inside {HANDLER} (lines {body:?} of {DRIVER_SOURCE})"
    );
    ensure!(
        transcript.contains("Breakpoint 1,"),
        "the breakpoint was not hit:\n{transcript}"
    );
    Ok(format!("{HANDLER} at {DRIVER_SOURCE}:{line}"))
}

/// The lines (1-based) from `fn name` to its closing brace.
fn function_lines(source: &Path, name: &str) -> Result<std::ops::RangeInclusive<usize>> {
    let text = std::fs::read_to_string(source)?;
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.contains(&format!("fn {name}(")))
        .with_context(|| format!("no fn {name} in {}", source.display()))?;
    let indent = lines[start].len() - lines[start].trim_start().len();
    let closing = format!("{}}}", " ".repeat(indent));
    let end = (start + 1..lines.len())
        .find(|&i| lines[i] == closing)
        .with_context(|| format!("fn {name} does not end"))?;
    Ok(start + 1..=end + 1)
}

/// `cargo xtask qemu --kernel PATH --devices 2`: the project's kernel,
/// copied elsewhere, passes its in-guest tests with two stopwatches.
pub fn another_kernel_with_two_devices(repo: &Repo, timeout: Duration) -> Result<String> {
    let copy = repo.vm_dir().join("test-other-kernel.elf");
    std::fs::copy(repo.kernel_elf(crate::repo::Flavor::WithTests), &copy)?;
    crate::vm::check_kernel_file(&copy)?;
    let config = VmConfig {
        kernel: crate::vm::Kernel::Other(repo.relative(&copy).display().to_string()),
        devices: 2,
        append: Some("test".into()),
        virtual_time: true,
        ..VmConfig::default()
    };
    let summary = guest::run_guest_tests(repo, &config, timeout)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backtrace_check_wants_the_handler_file_and_a_line_inside_it() {
        let source = std::env::temp_dir().join(format!("xtask-bt-{}.rs", std::process::id()));
        std::fs::write(
            &source,
            "struct S;\nimpl S {\n    pub fn handle_interrupt(&self) {\n        work();\n    }\n}\n",
        )
        .unwrap();
        let good = "Breakpoint 1, ...\n#0  guest_kernel::drivers::stopwatch::Stopwatch::\
                    handle_interrupt (...) at guest-kernel/src/drivers/stopwatch/mod.rs:4\n#1  ...";
        assert!(check_backtrace(good, &source).is_ok());
        let outside = good.replace(".rs:4", ".rs:6");
        assert!(check_backtrace(&outside, &source).is_err());
        let other_file = good.replace("drivers/stopwatch/mod.rs", "interrupts.rs");
        assert!(check_backtrace(&other_file, &source).is_err());
        let no_line = good.replace(" at guest-kernel/src/drivers/stopwatch/mod.rs:4", "");
        assert!(check_backtrace(&no_line, &source).is_err());
        std::fs::remove_file(source).unwrap();
    }

    #[test]
    fn finds_stopwatch_nodes_in_source() {
        let dts =
            "/ {\n\tplatform-bus@c000000 {\n\t\tstopwatch@0 {\n\t\t\treg = <0 1 2 3>;\n\t\t};\n\
                   \t\tstopwatch@2000 {\n\t\t};\n\t};\n};\n";
        let nodes = stopwatch_nodes(dts);
        assert_eq!(nodes.len(), 2);
        assert!(nodes[0].contains("reg = <0 1 2 3>;"));
    }
}
