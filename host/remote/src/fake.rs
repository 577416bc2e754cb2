//! A scripted OpenAI-compatible server on 127.0.0.1 for the unit tests: it answers each
//! request with what `answer` returns for it and records what it was sent.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub body: serde_json::Value,
    pub authorization: Option<String>,
}

pub struct FakeServer {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

/// Start a server whose answer to the n-th request (from 0) is `answer(n, &request)`:
/// an HTTP status and a JSON body.
pub fn serve(answer: impl Fn(usize, &Seen) -> (u16, serde_json::Value) + Send + Sync + 'static) -> FakeServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(vec![]));
    let log = seen.clone();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (log, answer) = (log.clone(), answer.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or_default().to_owned();
                let (mut length, mut authorization) = (0, None);
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    let header = header.trim_end();
                    if header.is_empty() {
                        break;
                    }
                    let (name, value) = header.split_once(':').unwrap();
                    match name.to_ascii_lowercase().as_str() {
                        "content-length" => length = value.trim().parse().unwrap(),
                        "authorization" => authorization = Some(value.trim().to_owned()),
                        _ => {}
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                // A GET has no body.
                let body =
                    if body.is_empty() { serde_json::Value::Null } else { serde_json::from_slice(&body).unwrap() };
                let request = Seen { path, body, authorization };
                let n = {
                    let mut log = log.lock().unwrap();
                    log.push(request.clone());
                    log.len() - 1
                };
                let (status, body) = answer(n, &request);
                let body = body.to_string();
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body.as_bytes()));
            });
        }
    });
    FakeServer { url, seen }
}

/// A chat completion whose answers are a function of the request alone: choice i says
/// the seed, the last message and i, in `words` tokens.
pub fn echo_chat(request: &Seen) -> (u16, serde_json::Value) {
    let b = &request.body;
    let last = b["messages"].as_array().and_then(|m| m.last()).map(|m| m["content"].clone()).unwrap_or_default();
    let choices: Vec<serde_json::Value> = (0..b["n"].as_u64().unwrap_or(1))
        .map(|i| {
            let text = format!("seed {} to {last} #{i}", b["seed"]);
            let tokens: Vec<serde_json::Value> =
                text.split(' ').map(|t| serde_json::json!({"token": t, "logprob": -0.5})).collect();
            serde_json::json!({"index": i, "message": {"role": "assistant", "content": text}, "logprobs": {"content": tokens}})
        })
        .collect();
    (200, serde_json::json!({"choices": choices, "usage": {"completion_tokens": 0}}))
}
