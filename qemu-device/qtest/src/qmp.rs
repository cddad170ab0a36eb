// SPDX-License-Identifier: GPL-2.0-or-later
//! A minimal QMP (QEMU Machine Protocol) client, for what qtest cannot do:
//! migration and system reset.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// How long QEMU may take to open its QMP socket or answer a command.
const QMP_TIMEOUT: Duration = Duration::from_secs(20);

/// A QMP connection in command mode.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// Events that arrived while a command waited for its answer.
    events: Vec<Value>,
}

impl Qmp {
    /// The `-qmp` argument that makes QEMU listen on `socket`.
    pub fn qemu_argument(socket: &Path) -> String {
        format!("unix:{},server=on,wait=off", socket.display())
    }

    /// Connects to the socket QEMU listens on (waiting for it to appear)
    /// and negotiates capabilities.
    pub fn connect(socket: &Path) -> Result<Qmp> {
        let started = Instant::now();
        let stream = loop {
            match UnixStream::connect(socket) {
                Ok(stream) => break stream,
                Err(_) if started.elapsed() < QMP_TIMEOUT => {
                    thread::sleep(Duration::from_millis(20))
                }
                Err(error) => {
                    return Err(error)
                        .with_context(|| format!("connecting to QMP at {}", socket.display()))
                }
            }
        };
        stream.set_read_timeout(Some(QMP_TIMEOUT))?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            events: Vec::new(),
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            bail!("unexpected QMP greeting {greeting}");
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    /// Runs one command; returns its `return` value or fails with its
    /// `error`. Events that arrive meanwhile are kept for
    /// [`Qmp::wait_for_event`].
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value> {
        let request = json!({ "execute": command, "arguments": arguments });
        writeln!(self.writer, "{request}")?;
        loop {
            let message = self.read_message()?;
            if let Some(result) = message.get("return") {
                return Ok(result.clone());
            }
            if let Some(error) = message.get("error") {
                bail!("QMP {command} failed: {error}");
            }
            if message.get("event").is_some() {
                self.events.push(message);
            }
        }
    }

    /// Waits for the event `name` (e.g. `RESET`, which QEMU sends once the
    /// reset is done), also taking one that came during a command.
    pub fn wait_for_event(&mut self, name: &str) -> Result<Value> {
        let is_it = |message: &Value| message.get("event").and_then(Value::as_str) == Some(name);
        if let Some(at) = self.events.iter().position(is_it) {
            return Ok(self.events.remove(at));
        }
        loop {
            let message = self
                .read_message()
                .with_context(|| format!("waiting for QMP event {name}"))?;
            if is_it(&message) {
                return Ok(message);
            }
        }
    }

    /// Loads a migration stream from `file` into a QEMU started with
    /// `-incoming defer`, and waits until it is loaded.
    pub fn migrate_incoming_from_file(&mut self, file: &Path) -> Result<()> {
        let uri = format!("file:{}", file.display());
        self.execute("migrate-incoming", json!({ "uri": uri }))?;
        self.wait_for_incoming()
    }

    /// Migrates the VM into `file` and waits until the stream is complete.
    pub fn migrate_to_file(&mut self, file: &Path) -> Result<()> {
        let uri = format!("file:{}", file.display());
        self.execute("migrate", json!({ "uri": uri }))?;
        let started = Instant::now();
        loop {
            let info = self.execute("query-migrate", json!({}))?;
            match info.get("status").and_then(Value::as_str) {
                Some("completed") => return Ok(()),
                Some("failed") | Some("cancelled") => bail!("migration failed: {info}"),
                _ if started.elapsed() > QMP_TIMEOUT => {
                    bail!("migration did not complete within {QMP_TIMEOUT:?}: {info}")
                }
                _ => thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Waits for an incoming migration to finish loading.
    pub fn wait_for_incoming(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            let status = self.execute("query-status", json!({}))?;
            match status.get("status").and_then(Value::as_str) {
                Some("inmigrate") if started.elapsed() < QMP_TIMEOUT => {
                    thread::sleep(Duration::from_millis(20))
                }
                Some("inmigrate") => bail!("incoming migration still loading: {status}"),
                _ => return Ok(()),
            }
        }
    }

    fn read_message(&mut self) -> Result<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("QMP connection closed");
        }
        serde_json::from_str(&line).with_context(|| format!("bad QMP message {line:?}"))
    }
}
