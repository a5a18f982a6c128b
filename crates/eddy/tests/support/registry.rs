//! A test fixture standing in for a Confluent schema registry: no real
//! registry (a JVM service) can be installed on the test machines, so this
//! implements the REST endpoints Eddy calls, over HTTP/1.1 on
//! loopback, with the registry's semantics for them:
//!
//! * `GET /schemas/ids/{id}` → `{"schema": "..."}`, 404 for an unknown id;
//! * `GET /subjects/{subject}/versions/{latest | n}` → `{"subject",
//!   "version", "id", "schema"}`, 404 for an unknown subject or version;
//! * `POST /subjects/{subject}/versions` with `{"schema": "..."}` → `{"id"}`;
//!   a schema already registered (under any subject) keeps its id.
//!
//! Schemas have a type, as in the registry: `schemaType` is left out for
//! Avro and is `PROTOBUF` for `.proto` schemas.
//!
//! `set_available(false)` makes every request fail with 503, as a registry
//! that is down would.

#![allow(dead_code)]
#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct State {
    /// Schema text and type (`AVRO`, `PROTOBUF`) by id (ids from 1).
    schemas: Vec<(String, String)>,
    /// Per subject, the ids of its versions in order.
    subjects: BTreeMap<String, Vec<u32>>,
}

impl State {
    fn register(&mut self, subject: &str, schema: &str, kind: &str) -> u32 {
        let entry = (schema.to_string(), kind.to_string());
        let id = match self.schemas.iter().position(|s| *s == entry) {
            Some(index) => index as u32 + 1,
            None => {
                self.schemas.push(entry);
                self.schemas.len() as u32
            }
        };
        let versions = self.subjects.entry(subject.to_string()).or_default();
        if !versions.contains(&id) {
            versions.push(id);
        }
        id
    }
}

/// The registry fixture; serves until dropped.
pub struct TestRegistry {
    url: String,
    state: Arc<Mutex<State>>,
    available: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl TestRegistry {
    pub async fn start() -> TestRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let state = Arc::new(Mutex::new(State::default()));
        let available = Arc::new(AtomicBool::new(true));
        let (served, up) = (state.clone(), available.clone());
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, served.clone(), up.clone()));
            }
        });
        TestRegistry {
            url,
            state,
            available,
            task,
        }
    }

    /// `http://127.0.0.1:port`, for `schema.registry = '...'`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Register Avro `schema` under `subject`, as a producer would; its id.
    pub fn register(&self, subject: &str, schema: &str) -> u32 {
        self.register_typed(subject, schema, "AVRO")
    }

    /// Register `schema` of type `kind` (`AVRO`, `PROTOBUF`) under `subject`.
    pub fn register_typed(&self, subject: &str, schema: &str, kind: &str) -> u32 {
        self.state
            .lock()
            .expect("state")
            .register(subject, schema, kind)
    }

    /// The schema with id `id`.
    pub fn schema(&self, id: u32) -> Option<String> {
        let state = self.state.lock().expect("state");
        state.schemas.get(id as usize - 1).map(|(s, _)| s.clone())
    }

    /// The ids registered under `subject`, oldest first.
    pub fn versions(&self, subject: &str) -> Vec<u32> {
        let state = self.state.lock().expect("state");
        state.subjects.get(subject).cloned().unwrap_or_default()
    }

    /// Answer requests (true) or fail them all with 503 (false).
    pub fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::SeqCst);
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut socket: TcpStream, state: Arc<Mutex<State>>, available: Arc<AtomicBool>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_end, length) = loop {
        let Ok(read) = socket.read(&mut chunk).await else {
            return;
        };
        if read == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_string();
            let length = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (end + 4, length);
        }
    };
    while buffer.len() < head_end + length {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    }
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let body = &buffer[head_end..head_end + length];
    let mut request_line = head.lines().next().unwrap_or_default().split_whitespace();
    let method = request_line.next().unwrap_or_default().to_string();
    let path = request_line.next().unwrap_or_default().to_string();
    let (status, answer) = if available.load(Ordering::SeqCst) {
        let mut state = state.lock().expect("state");
        route(&mut state, &method, &path, body)
    } else {
        (503, json!({"error_code": 50301, "message": "unavailable"}))
    };
    let answer = answer.to_string();
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

fn route(state: &mut State, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let parts: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let not_found = |what: &str| (404, json!({"error_code": 40401, "message": what}));
    match (method, parts.as_slice()) {
        ("GET", ["schemas", "ids", id]) => match id.parse::<usize>() {
            Ok(id) if id >= 1 && id <= state.schemas.len() => {
                let (schema, kind) = &state.schemas[id - 1];
                let mut answer = json!({"schema": schema});
                // The registry leaves schemaType out for Avro.
                if kind != "AVRO" {
                    answer["schemaType"] = json!(kind);
                }
                (200, answer)
            }
            _ => not_found("Schema not found"),
        },
        ("GET", ["subjects", subject, "versions", version]) => {
            let versions = state.subjects.get(*subject).cloned().unwrap_or_default();
            let number = match *version {
                "latest" => Some(versions.len()),
                other => other.parse::<usize>().ok(),
            };
            match number {
                Some(n) if n >= 1 && n <= versions.len() => {
                    let id = versions[n - 1];
                    let (schema, kind) = &state.schemas[id as usize - 1];
                    let mut answer = json!({
                        "subject": subject,
                        "version": n,
                        "id": id,
                        "schema": schema,
                    });
                    if kind != "AVRO" {
                        answer["schemaType"] = json!(kind);
                    }
                    (200, answer)
                }
                _ => not_found("Subject or version not found"),
            }
        }
        ("POST", ["subjects", subject, "versions"]) => {
            let request = serde_json::from_slice::<Value>(body).unwrap_or_default();
            let schema = request.get("schema").and_then(Value::as_str);
            let kind = request
                .get("schemaType")
                .and_then(Value::as_str)
                .unwrap_or("AVRO");
            match schema {
                Some(schema) if kind != "AVRO" || serde_json::from_str::<Value>(schema).is_ok() => {
                    (200, json!({"id": state.register(subject, schema, kind)}))
                }
                _ => (
                    422,
                    json!({"error_code": 42201, "message": "Invalid schema"}),
                ),
            }
        }
        _ => not_found("Not found"),
    }
}

fn percent_decode(part: &str) -> String {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&part[i + 1..i + 3], 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}
