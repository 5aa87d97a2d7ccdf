//! Panics in the Lambda. The release profile aborts on panic (no unwinding tables: a smaller
//! binary), so `lambda_runtime` cannot catch a panic and return it as the invocation's error.
//! This hook does that instead: after the usual message on stderr it posts the error to the
//! Runtime API (`errorType` `Panic`, the message and where it happened), then the process
//! aborts and Lambda starts a fresh runtime for the next event.
//!
//! The code returns errors rather than panicking; this is the net under a bug.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::panic::PanicHookInfo;
use std::sync::Mutex;
use std::time::Duration;

static CURRENT_REQUEST: Mutex<Option<String>> = Mutex::new(None);

/// Remembers the invocation being handled (Lambda runs one at a time per process).
pub fn invocation_started(request_id: &str) {
    if let Ok(mut current) = CURRENT_REQUEST.lock() {
        *current = Some(request_id.to_owned());
    }
}

/// Installs the hook. Outside Lambda (no `AWS_LAMBDA_RUNTIME_API`) it only prints.
pub fn install() {
    let print = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        print(info);
        let request = CURRENT_REQUEST.try_lock().ok().and_then(|r| r.clone());
        let api = std::env::var("AWS_LAMBDA_RUNTIME_API").ok();
        if let (Some(api), Some(request)) = (api, request)
            && let Err(error) = report(&api, &request, &panic_message(info))
        {
            eprintln!("could not report the panic to the Runtime API: {error}");
        }
    }));
}

fn panic_message(info: &PanicHookInfo<'_>) -> String {
    let payload = info
        .payload()
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned());
    match info.location() {
        Some(at) => format!("{payload} (at {}:{})", at.file(), at.line()),
        None => payload,
    }
}

/// Posts `message` as the error of invocation `request_id` to the Runtime API at `api`
/// (`host:port`), over plain blocking HTTP/1.1: a panicking process has no runtime to trust.
pub fn report(api: &str, request_id: &str, message: &str) -> std::io::Result<()> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_owned());
    if request_id.is_empty()
        || !request_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(invalid("the request id is not a Lambda request id"));
    }
    let address = api
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| invalid("AWS_LAMBDA_RUNTIME_API has no address"))?;
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_read_timeout(Some(timeout))?;
    let body = serde_json::json!({ "errorType": "Panic", "errorMessage": message }).to_string();
    write!(
        stream,
        "POST /2018-06-01/runtime/invocation/{request_id}/error HTTP/1.1\r\nHost: {api}\r\n\
         Content-Type: application/json\r\nLambda-Runtime-Function-Error-Type: Panic\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut status = [0u8; 12];
    stream.read_exact(&mut status)?;
    if status.starts_with(b"HTTP/1.") && status[9] == b'2' {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "the Runtime API answered {}",
            String::from_utf8_lossy(&status)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot Runtime API: answers `status` and hands back the request it read.
    fn runtime_api(status: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let api = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = conn.read(&mut buf).unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .unwrap()
                        .parse()
                        .unwrap();
                    if body.len() >= length {
                        break;
                    }
                }
            }
            conn.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                .unwrap();
            String::from_utf8(request).unwrap()
        });
        (api, server)
    }

    #[test]
    fn reports_the_panic_as_the_invocations_error() {
        let (api, server) = runtime_api("202 Accepted");
        report(
            &api,
            "8476a536-e9f4-11e8-9739-2dfe598c3fcd",
            "index out of bounds (at src/x.rs:1)",
        )
        .unwrap();
        let request = server.join().unwrap();
        assert!(
            request.starts_with(
                "POST /2018-06-01/runtime/invocation/8476a536-e9f4-11e8-9739-2dfe598c3fcd/error HTTP/1.1\r\n"
            ),
            "{request}"
        );
        assert!(request.contains("Lambda-Runtime-Function-Error-Type: Panic\r\n"));
        let body: serde_json::Value =
            serde_json::from_str(request.split_once("\r\n\r\n").unwrap().1).unwrap();
        assert_eq!(body["errorType"], "Panic");
        assert_eq!(body["errorMessage"], "index out of bounds (at src/x.rs:1)");
    }

    #[test]
    fn a_refusal_or_a_strange_request_id_is_an_error() {
        let (api, server) = runtime_api("400 Bad Request");
        assert!(report(&api, "abc", "boom").is_err());
        server.join().unwrap();
        assert!(report("127.0.0.1:9", "abc\r\nX-Injected: 1", "boom").is_err());
    }
}
