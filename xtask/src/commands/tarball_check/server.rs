// SPDX-License-Identifier: GPL-2.0-or-later
//! A minimal HTTP/1.1 server on 127.0.0.1 that serves one file at one
//! path (GET and HEAD, `Range: bytes=N-`), one request per connection,
//! and records every request it answered.

use anyhow::{Context, Result};
use std::fs;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;

/// One answered request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// Body bytes written (all of them reached the client's socket).
    pub body_bytes: u64,
}

/// The running server; it stops with the process.
pub struct FileServer {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Served>>>,
}

impl FileServer {
    /// Serves `file` at `/<url_name>` on a free port of 127.0.0.1.
    pub fn start(file: &Path, url_name: &str) -> Result<FileServer> {
        let listener = TcpListener::bind("127.0.0.1:0").context("could not bind 127.0.0.1")?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            file: file.to_path_buf(),
            path: format!("/{url_name}"),
            log: Arc::clone(&log),
        };
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = shared.clone();
                thread::spawn(move || {
                    // A client that hangs up mid-answer is its own business.
                    let _ = shared.answer(stream);
                });
            }
        });
        Ok(FileServer { addr, log })
    }

    pub fn url(&self, url_name: &str) -> String {
        format!("http://{}/{url_name}", self.addr)
    }

    /// Every request answered so far.
    pub fn served(&self) -> Vec<Served> {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }
}

#[derive(Clone)]
struct Shared {
    file: PathBuf,
    path: String,
    log: Arc<Mutex<Vec<Served>>>,
}

/// What the request asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The start of `Range: bytes=N-`.
    pub range_start: Option<u64>,
}

/// Parses a request head (the lines before the blank one).
pub fn parse_request(head: &str) -> Option<Request> {
    let mut lines = head.lines();
    let mut words = lines.next()?.split_whitespace();
    let (method, target) = (words.next()?, words.next()?);
    let range_start = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("range") {
            return None;
        }
        let start = value.trim().strip_prefix("bytes=")?.strip_suffix('-')?;
        start.trim().parse().ok()
    });
    // An absolute-form target (`http://host/path`) names the same path.
    let path = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    Some(Request {
        method: method.to_string(),
        path: path.split('?').next().unwrap_or(path).to_string(),
        range_start,
    })
}

impl Shared {
    fn answer(&self, stream: TcpStream) -> Result<()> {
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                break;
            }
            head.push_str(&line);
        }
        let mut stream = stream;
        let Some(request) = parse_request(&head) else {
            return Ok(());
        };
        let size = fs::metadata(&self.file)?.len();
        let found = request.path == self.path && matches!(request.method.as_str(), "GET" | "HEAD");
        let (status, start) = match request.range_start {
            _ if !found => (404, 0),
            Some(start) if start >= size => (416, 0),
            Some(start) => (206, start),
            None => (200, 0),
        };
        let mut header = format!(
            "HTTP/1.1 {status} {}\r\nConnection: close\r\nAccept-Ranges: bytes\r\n",
            reason(status)
        );
        let body_len = if matches!(status, 200 | 206) {
            size - start
        } else {
            0
        };
        if status == 206 {
            header.push_str(&format!(
                "Content-Range: bytes {start}-{}/{size}\r\n",
                size - 1
            ));
        }
        if status == 416 {
            header.push_str(&format!("Content-Range: bytes */{size}\r\n"));
        }
        header.push_str(&format!(
            "Content-Type: application/x-xz\r\nContent-Length: {body_len}\r\n\r\n"
        ));
        stream.write_all(header.as_bytes())?;
        let mut sent = 0;
        if request.method == "GET" && body_len > 0 {
            let mut file = fs::File::open(&self.file)?;
            file.seek(SeekFrom::Start(start))?;
            let mut buffer = vec![0; 1 << 16];
            loop {
                let n = file.read(&mut buffer)?;
                if n == 0 {
                    break;
                }
                stream.write_all(&buffer[..n])?;
                sent += n as u64;
            }
        }
        stream.flush()?;
        if let Ok(mut log) = self.log.lock() {
            log.push(Served {
                method: request.method,
                path: request.path,
                status,
                body_bytes: sent,
            });
        }
        Ok(())
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        404 => "Not Found",
        _ => "Range Not Satisfiable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        let get = parse_request("GET /q.tar.xz HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
        assert_eq!(
            (get.method.as_str(), get.path.as_str()),
            ("GET", "/q.tar.xz")
        );
        assert_eq!(get.range_start, None);
        let resumed =
            parse_request("GET /q.tar.xz?x=1 HTTP/1.1\r\nrange: bytes=4096-\r\n").unwrap();
        assert_eq!(resumed.path, "/q.tar.xz");
        assert_eq!(resumed.range_start, Some(4096));
        let absolute = parse_request("HEAD http://127.0.0.1:9/q.tar.xz HTTP/1.1\r\n").unwrap();
        assert_eq!(absolute.path, "/q.tar.xz");
        assert!(parse_request("").is_none());
    }

    /// A raw request over TCP; returns the status line and the body.
    fn fetch(addr: SocketAddr, request: &str) -> (String, Vec<u8>) {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&answer[..split]).into_owned();
        let status = head.lines().next().unwrap().to_string();
        (status, answer[split + 4..].to_vec())
    }

    #[test]
    fn serves_the_file_its_tail_and_nothing_else() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-serve-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let file = dir.join("q.tar.xz");
        let contents: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(&file, &contents)?;
        let server = FileServer::start(&file, "q.tar.xz")?;
        let (status, body) = fetch(server.addr, "GET /q.tar.xz HTTP/1.1\r\n\r\n");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, contents);
        let (status, body) = fetch(
            server.addr,
            "GET /q.tar.xz HTTP/1.1\r\nRange: bytes=99990-\r\n\r\n",
        );
        assert_eq!(status, "HTTP/1.1 206 Partial Content");
        assert_eq!(body, &contents[99_990..]);
        let (status, body) = fetch(server.addr, "GET /other HTTP/1.1\r\n\r\n");
        assert_eq!((status.as_str(), body.len()), ("HTTP/1.1 404 Not Found", 0));
        let (status, _) = fetch(
            server.addr,
            "GET /q.tar.xz HTTP/1.1\r\nRange: bytes=100000-\r\n\r\n",
        );
        assert_eq!(status, "HTTP/1.1 416 Range Not Satisfiable");
        fs::remove_dir_all(&dir)?;
        // Each answer is logged before its connection closes.
        let statuses: Vec<(u16, u64)> = server
            .served()
            .iter()
            .map(|s| (s.status, s.body_bytes))
            .collect();
        assert_eq!(statuses, [(200, 100_000), (206, 10), (404, 0), (416, 0)]);
        Ok(())
    }
}
