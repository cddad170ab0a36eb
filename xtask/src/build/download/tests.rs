// SPDX-License-Identifier: GPL-2.0-or-later
//! The downloader against a small HTTP/1.1 server on 127.0.0.1 whose every
//! answer a test scripts: a whole file, a connection cut half-way, a
//! corrupted file, a short body, a 404, a server that stalls. Each fault
//! must give its message and leave no bad file in the download directory.

use super::*;
use crate::commands::tarball_check::server::{parse_request, Request};
use crate::util::sha256_hex;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

/// The timeout of the stall tests: a stalled server fails them within it.
const TEST_TIMEOUT: Duration = Duration::from_secs(1);
/// The timeout of the others: ample, so that a loaded machine cannot make
/// them fail.
const AMPLE_TIMEOUT: Duration = Duration::from_secs(20);

/// What the server does with one request.
#[derive(Clone)]
struct Reply {
    status: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Close the connection after this many body bytes.
    cut_after: Option<usize>,
    /// Stop sending (the connection stays open) after this many body bytes.
    stall_after: Option<usize>,
    /// Stall before even the status line.
    stall_at_once: bool,
}

impl Reply {
    fn new(status: &'static str, body: &[u8]) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Length".into(), body.len().to_string())],
            body: body.to_vec(),
            cut_after: None,
            stall_after: None,
            stall_at_once: false,
        }
    }

    /// The whole file.
    fn ok(data: &[u8]) -> Reply {
        Reply::new("200 OK", data)
    }

    /// `data` from byte `from` on, as a 206.
    fn partial(data: &[u8], from: usize) -> Reply {
        let mut reply = Reply::new("206 Partial Content", &data[from..]);
        reply.headers.push((
            "Content-Range".into(),
            format!("bytes {from}-{}/{}", data.len() - 1, data.len()),
        ));
        reply
    }

    /// A range request answered as asked, any other with the whole file.
    fn as_asked(data: &[u8], request: &Request) -> Reply {
        match request.range_start {
            Some(from) => Reply::partial(data, from as usize),
            None => Reply::ok(data),
        }
    }

    fn cut_after(self, bytes: usize) -> Reply {
        Reply {
            cut_after: Some(bytes),
            ..self
        }
    }
}

/// A server on 127.0.0.1 answering each request as `script` says (given
/// the request's index and what it asked).
struct Server {
    base: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    fn start(script: impl Fn(usize, &Request) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        let script = Arc::new(script);
        // Serves until the test process ends; a stalled connection gets a
        // thread of its own so that the next request is still answered.
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let Some(request) = read_request(&stream) else {
                    continue;
                };
                let index = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(request.clone());
                    seen.len() - 1
                };
                let reply = script(index, &request);
                thread::spawn(move || send(stream, &reply));
            }
        });
        Server { base, requests }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

/// The request's head (up to the blank line), as the tarball check's
/// server reads it.
fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line.trim().is_empty() {
            break;
        }
        head.push_str(&line);
    }
    parse_request(&head)
}

fn send(mut stream: TcpStream, reply: &Reply) {
    let stall = || thread::sleep(TEST_TIMEOUT * 4);
    if reply.stall_at_once {
        stall();
        return;
    }
    let mut head = format!("HTTP/1.1 {}\r\nConnection: close\r\n", reply.status);
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let limit = reply
        .cut_after
        .or(reply.stall_after)
        .unwrap_or(reply.body.len());
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&reply.body[..limit.min(reply.body.len())]);
    let _ = stream.flush();
    if reply.stall_after.is_some() {
        stall();
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Bytes that look like a file: no two 64 KiB blocks alike.
fn file_data() -> Vec<u8> {
    let mut random = stopwatch_test_rng::TestRng::new(0x2545_f491_4f6c_dd1d);
    (0..300_000).map(|_| random.next_u64() as u8).collect()
}

/// A fresh download directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xtask-download-{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn fetch_into(dir: &Path, url: &str, sha256: &str) -> Result<Fetched> {
    fetch_with_timeout(dir, url, sha256, AMPLE_TIMEOUT)
}

fn fetch_with_timeout(dir: &Path, url: &str, sha256: &str, timeout: Duration) -> Result<Fetched> {
    fetch(&Download {
        url,
        sha256,
        dest: &dir.join("file.tar.xz"),
        timeout,
    })
}

/// The names in `dir`, sorted.
/// The files in `dir`, but the download's (empty) lock file.
fn left_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "file.tar.xz.lock")
        .collect();
    names.sort();
    names
}

#[test]
fn downloads_checks_and_then_keeps_the_file() {
    let data = file_data();
    let served = data.clone();
    let server = Server::start(move |_, request| Reply::as_asked(&served, request));
    let dir = scratch("whole");
    let sha = sha256_hex(&data);
    let url = server.url("qemu.tar.xz");
    assert_eq!(fetch_into(&dir, &url, &sha).unwrap(), Fetched::Downloaded);
    assert_eq!(fs::read(dir.join("file.tar.xz")).unwrap(), data);
    assert_eq!(left_in(&dir), ["file.tar.xz"]);
    assert_eq!(server.requests()[0].path, "/qemu.tar.xz");
    // The second time, the checked file is used without asking the server.
    assert_eq!(fetch_into(&dir, &url, &sha).unwrap(), Fetched::Cached);
    assert_eq!(server.requests().len(), 1);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resumes_after_a_cut_connection() {
    let data = file_data();
    let half = data.len() / 2;
    let served = data.clone();
    let server = Server::start(move |index, request| match index {
        0 => Reply::ok(&served).cut_after(half),
        _ => Reply::as_asked(&served, request),
    });
    let dir = scratch("resume");
    let fetched = fetch_into(&dir, &server.url("f"), &sha256_hex(&data));
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].range_start, None);
    assert_eq!(
        requests[1].range_start,
        Some(half as u64),
        "the second request must ask for the rest only"
    );
    assert_eq!(fetched.unwrap(), Fetched::Downloaded);
    assert_eq!(fs::read(dir.join("file.tar.xz")).unwrap(), data);
    assert_eq!(left_in(&dir), ["file.tar.xz"]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resumes_a_part_left_by_an_earlier_run_and_starts_over_where_the_server_cannot() {
    let data = file_data();
    let sha = sha256_hex(&data);
    let third = data.len() / 3;
    for resumes in [true, false] {
        let served = data.clone();
        let server = Server::start(move |_, request| match resumes {
            true => Reply::as_asked(&served, request),
            false => Reply::ok(&served),
        });
        let dir = scratch(&format!("earlier-{resumes}"));
        fs::write(part_path(&dir.join("file.tar.xz"), &sha), &data[..third]).unwrap();
        fetch_into(&dir, &server.url("f"), &sha).unwrap();
        assert_eq!(server.requests()[0].range_start, Some(third as u64));
        assert_eq!(fs::read(dir.join("file.tar.xz")).unwrap(), data);
        assert_eq!(left_in(&dir), ["file.tar.xz"]);
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn bytes_gathered_for_another_file_are_never_resumed() {
    let data = file_data();
    let sha = sha256_hex(&data);
    let served = data.clone();
    let server = Server::start(move |_, request| Reply::as_asked(&served, request));
    let dir = scratch("another-file");
    // Left by a run that expected another file (another hash, another URL).
    let other = part_path(&dir.join("file.tar.xz"), &"ab".repeat(32));
    fs::write(&other, b"bytes of some other file").unwrap();
    fetch_into(&dir, &server.url("f"), &sha).unwrap();
    assert_eq!(server.requests()[0].range_start, None);
    assert_eq!(fs::read(dir.join("file.tar.xz")).unwrap(), data);
    assert_eq!(left_in(&dir), ["file.tar.xz"]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn what_a_failed_run_received_is_resumed_by_the_next() {
    let data = file_data();
    let sha = sha256_hex(&data);
    let half = data.len() / 2;
    let served = data.clone();
    // Cut half-way, then unavailable for the retry; back for the next run.
    let server = Server::start(move |index, request| match index {
        0 => Reply::ok(&served).cut_after(half),
        1 => Reply::new("503 Service Unavailable", b"busy"),
        _ => Reply::as_asked(&served, request),
    });
    let dir = scratch("next-run");
    let url = server.url("f");
    let message = format!(
        "{:#}",
        fetch_into(&dir, &url, &sha256_hex(&data)).unwrap_err()
    );
    assert!(
        message.contains(&format!("{url} answered HTTP 503 Service Unavailable"))
            && message.contains(&format!("{half} bytes are kept in")),
        "{message}"
    );
    // Only bytes the server sent, to be checked with the rest.
    assert_eq!(
        fs::read(part_path(&dir.join("file.tar.xz"), &sha)).unwrap(),
        data[..half]
    );
    fetch_into(&dir, &url, &sha256_hex(&data)).unwrap();
    assert_eq!(server.requests()[2].range_start, Some(half as u64));
    assert_eq!(fs::read(dir.join("file.tar.xz")).unwrap(), data);
    assert_eq!(left_in(&dir), ["file.tar.xz"]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_corrupted_file_is_refused_and_deleted() {
    let data = file_data();
    let mut corrupted = data.clone();
    corrupted[data.len() / 2] ^= 0x40;
    let served_sha = sha256_hex(&corrupted);
    let server = Server::start(move |_, request| Reply::as_asked(&corrupted, request));
    let dir = scratch("corrupted");
    let error = fetch_into(&dir, &server.url("f"), &sha256_hex(&data)).unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("does not have the expected SHA-256, so it was deleted")
            && message.contains(&format!("expected sha256 {}", sha256_hex(&data)))
            && message.contains(&format!("got      sha256 {served_sha}")),
        "{message}"
    );
    assert_eq!(left_in(&dir), Vec::<String>::new(), "{message}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_damaged_file_in_the_cache_is_replaced() {
    let data = file_data();
    let served = data.clone();
    let server = Server::start(move |_, request| Reply::as_asked(&served, request));
    let dir = scratch("damaged");
    fs::write(dir.join("file.tar.xz"), &data[..1000]).unwrap();
    let fetched = fetch_into(&dir, &server.url("f"), &sha256_hex(&data)).unwrap();
    assert_eq!(fetched, Fetched::Downloaded);
    assert_eq!(fs::read(dir.join("file.tar.xz")).unwrap(), data);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_body_shorter_than_announced_is_not_taken_for_the_file() {
    let data = file_data();
    let short = data.len() - 1000;
    let served = data.clone();
    // Every answer announces the whole file and ends 1000 bytes early;
    // and the server does not resume.
    let server = Server::start(move |_, _| Reply::ok(&served).cut_after(short));
    let dir = scratch("short");
    let error = fetch_into(&dir, &server.url("f"), &sha256_hex(&data)).unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains(&format!(
            "closed the connection after {short} of the {} bytes it announced",
            data.len()
        )),
        "{message}"
    );
    // Retried (starting over each time), then given up; no bytes kept.
    assert_eq!(server.requests().len(), MAX_ATTEMPTS);
    assert_eq!(left_in(&dir), Vec::<String>::new(), "{message}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_size_that_changes_between_answers_is_refused() {
    let data = file_data();
    let half = data.len() / 2;
    let served = data.clone();
    let server = Server::start(move |index, _| match index {
        0 => Reply::ok(&served).cut_after(half),
        // The resumed answer says the file is 10 bytes longer.
        _ => {
            let mut reply = Reply::new("206 Partial Content", &served[half..]);
            reply.headers.push((
                "Content-Range".into(),
                format!("bytes {half}-{}/{}", served.len() + 9, served.len() + 10),
            ));
            reply
        }
    });
    let dir = scratch("resized");
    let error = fetch_into(&dir, &server.url("f"), &sha256_hex(&data)).unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains(&format!(
            "changed size during the download: {} bytes announced first, now {}",
            data.len(),
            data.len() + 10
        )),
        "{message}"
    );
    assert_eq!(left_in(&dir), Vec::<String>::new(), "{message}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_404_names_the_url_and_the_status() {
    let server = Server::start(|_, _| Reply::new("404 Not Found", b"no such file"));
    let dir = scratch("404");
    let url = server.url("qemu-10.2.2.tar.xz");
    let error = fetch_into(&dir, &url, &sha256_hex(b"")).unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains(&format!("{url} answered HTTP 404 Not Found")),
        "{message}"
    );
    assert_eq!(left_in(&dir), Vec::<String>::new(), "{message}");
    fs::remove_dir_all(&dir).unwrap();
}

/// Fetches from a server that stalls: the fetch must fail within the
/// timeout, say so, and leave nothing behind.
fn assert_times_out(server: Server, name: &str) {
    let dir = scratch(&format!("stall-{name}"));
    let started = Instant::now();
    let error =
        fetch_with_timeout(&dir, &server.url("f"), &sha256_hex(b""), TEST_TIMEOUT).unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("timed out: the server sent nothing for 1.0s"),
        "{message}"
    );
    assert!(started.elapsed() < TEST_TIMEOUT * 3, "{message}");
    assert_eq!(server.requests().len(), 1, "{message}");
    assert_eq!(left_in(&dir), Vec::<String>::new(), "{message}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_server_that_stalls_in_the_body_times_out() {
    // The status line and headers, then nothing.
    let data = file_data();
    let server = Server::start(move |_, _| Reply {
        stall_after: Some(0),
        ..Reply::ok(&data)
    });
    assert_times_out(server, "body");
}

#[test]
fn a_server_that_never_answers_times_out() {
    let server = Server::start(|_, _| Reply {
        stall_at_once: true,
        ..Reply::ok(b"")
    });
    assert_times_out(server, "at-once");
}

#[test]
fn a_server_that_is_not_there_fails_at_once() {
    // A port that was free a moment ago: nothing listens there now.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = scratch("refused");
    let url = format!("http://127.0.0.1:{port}/qemu.tar.xz");
    let error = fetch_into(&dir, &url, &sha256_hex(b"")).unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains(&format!("could not download {url}")),
        "{message}"
    );
    assert_eq!(left_in(&dir), Vec::<String>::new(), "{message}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn loopback_urls_are_recognised() {
    for url in [
        "http://127.0.0.1:8000/q.tar.xz",
        "http://localhost/q",
        "http://[::1]:80/q",
        "https://user@127.0.0.2/q",
    ] {
        assert!(is_loopback(url), "{url}");
    }
    for url in [
        "https://download.example/q",
        "http://10.0.0.1/q",
        "http://127.example/",
    ] {
        assert!(!is_loopback(url), "{url}");
    }
}

#[test]
fn content_range_parses() {
    assert_eq!(
        parse_content_range("bytes 100-199/200"),
        Some((100, 199, Some(200)))
    );
    assert_eq!(parse_content_range("bytes 0-9/*"), Some((0, 9, None)));
    assert_eq!(parse_content_range("bytes */200"), None);
    assert_eq!(parse_content_range("bytes 9-0/200"), None);
    assert_eq!(
        part_path(Path::new("/c/qemu.tar.xz"), &"0123456789abcdef".repeat(4)),
        Path::new("/c/qemu.tar.xz.0123456789abcdef.part")
    );
}
