//! A client of a Confluent-compatible schema registry: the REST calls Eddy
//! makes, over plain HTTP/1.1.
//!
//! * `GET /schemas/ids/{id}`: a writer schema, by the id a message carries.
//! * `GET /subjects/{subject}/versions/latest`: the schema a source's
//!   columns are derived from when it declares none.
//! * `GET /subjects/{subject}/versions/{n}`: a schema another references
//!   (a protobuf import).
//! * `POST /subjects/{subject}/versions`: registers a sink's schema (the
//!   registry answers with the id of an identical schema if it has one).
//!
//! Subjects follow Confluent's default `TopicNameStrategy`:
//! `{topic}-value` and `{topic}-key`. Only `http://` registries are
//! reached; `https://` is refused when the source or sink is created.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::{Error, Result};

/// Timeout of one request, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses larger than this are refused (schemas are small).
const MAX_RESPONSE: usize = 16 << 20;

/// Where a registry is: `http://host:port[/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registry {
    /// `host:port`.
    authority: String,
    /// The path the REST API lives under, without a trailing `/`.
    prefix: String,
}

/// A schema as the registry stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RegisteredSchema {
    pub(crate) id: u32,
    /// The schema's text (Avro JSON, or a `.proto` file).
    pub(crate) schema: String,
    /// `AVRO` (the registry's default), `PROTOBUF` or `JSON`.
    pub(crate) kind: String,
    /// Other schemas this one imports.
    pub(crate) references: Vec<Reference>,
}

/// A schema's reference to another: the name it imports it by, and where
/// the registry has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    pub(crate) name: String,
    pub(crate) subject: String,
    pub(crate) version: i64,
}

impl Registry {
    /// The registry at `url` (the `schema.registry` option).
    pub(crate) fn new(url: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::invalid_option("schema.registry", url, reason);
        let url = url.trim();
        if url.starts_with("https://") {
            return Err(Error::UnsupportedOption(
                "schema.registry over https (only http:// registries are supported)".into(),
            ));
        }
        // Several registries may be listed; the first one is used.
        let first = url.split(',').next().unwrap_or_default().trim();
        let rest = first
            .strip_prefix("http://")
            .ok_or_else(|| invalid("expected http://host:port"))?;
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(invalid(
                "expected http://host:port (credentials are not supported)",
            ));
        }
        let authority = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(Self {
            authority,
            prefix: path.trim_end_matches('/').to_string(),
        })
    }

    /// The registry `ENCODE AVRO (schema.registry = '...')` names (the
    /// option is taken out of `options`).
    pub(crate) fn for_avro(
        options: &mut std::collections::BTreeMap<String, String>,
    ) -> Result<Self> {
        let url = options.remove("schema.registry").ok_or_else(|| {
            Error::InvalidConfig("ENCODE AVRO needs (schema.registry = 'http://...')".into())
        })?;
        Self::new(&url)
    }

    /// The schema with id `id`; `None` if the registry has none.
    pub(crate) async fn schema_by_id(&self, id: u32) -> Result<Option<RegisteredSchema>> {
        let (status, body) = self
            .request("GET", &format!("/schemas/ids/{id}"), None)
            .await?;
        if status == 404 {
            return Ok(None);
        }
        let body = expect_ok(status, body, &format!("schema id {id}"))?;
        Ok(Some(registered(id, &body)?))
    }

    /// Version `version` of `subject`.
    pub(crate) async fn version(&self, subject: &str, version: i64) -> Result<RegisteredSchema> {
        let path = format!("/subjects/{}/versions/{version}", encode_path(subject));
        let (status, body) = self.request("GET", &path, None).await?;
        let what = format!("subject \"{subject}\" version {version}");
        let body = expect_ok(status, body, &what)?;
        registered(id_field(&body)?, &body)
    }

    /// The latest schema of `subject`.
    pub(crate) async fn latest(&self, subject: &str) -> Result<RegisteredSchema> {
        let path = format!("/subjects/{}/versions/latest", encode_path(subject));
        let (status, body) = self.request("GET", &path, None).await?;
        if status == 404 {
            return Err(Error::Source(format!(
                "schema registry: subject \"{subject}\" has no schema"
            )));
        }
        let body = expect_ok(status, body, &format!("subject \"{subject}\""))?;
        registered(id_field(&body)?, &body)
    }

    /// Register `schema` (Avro JSON) under `subject`; its id.
    pub(crate) async fn register(&self, subject: &str, schema: &str) -> Result<u32> {
        let path = format!("/subjects/{}/versions", encode_path(subject));
        let body = serde_json::json!({ "schema": schema }).to_string();
        let (status, body) = self.request("POST", &path, Some(&body)).await?;
        let body = expect_ok(status, body, &format!("registering under \"{subject}\""))?;
        id_field(&body)
    }

    /// One request on a connection of its own; the status and JSON body.
    async fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, Value)> {
        let exchange = async {
            let stream = TcpStream::connect(&self.authority).await?;
            let mut stream = BufReader::new(stream);
            let body = body.unwrap_or_default();
            let request = format!(
                "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nAccept: application/vnd.schemaregistry.v1+json, application/json\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                self.prefix,
                self.authority,
                body.len(),
            );
            stream.get_mut().write_all(request.as_bytes()).await?;
            read_response(&mut stream).await
        };
        let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| self.error(format!("no answer within {REQUEST_TIMEOUT:?}")))?
            .map_err(|e| self.error(e.to_string()))?;
        let value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .map_err(|e| self.error(format!("the answer is not JSON: {e}")))?
        };
        Ok((status, value))
    }

    fn error(&self, reason: String) -> Error {
        Error::Source(format!("schema registry at {}: {reason}", self.authority))
    }
}

/// Status and body of an HTTP/1.1 response (`Content-Length`, chunked, or
/// up to the end of the connection).
async fn read_response(stream: &mut BufReader<TcpStream>) -> std::io::Result<(u16, Vec<u8>)> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("not an HTTP response"))?;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            return Err(bad("the response ended in its headers"));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse().map_err(|_| bad("bad Content-Length"))?);
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                && value.eq_ignore_ascii_case("chunked")
            {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            stream.read_line(&mut line).await?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                break;
            }
            if body.len() + size > MAX_RESPONSE {
                return Err(bad("the response is too large"));
            }
            let start = body.len();
            body.resize(start + size, 0);
            stream.read_exact(&mut body[start..]).await?;
            line.clear();
            stream.read_line(&mut line).await?;
        }
    } else if let Some(length) = length {
        if length > MAX_RESPONSE {
            return Err(bad("the response is too large"));
        }
        body.resize(length, 0);
        stream.read_exact(&mut body).await?;
    } else {
        stream
            .take(MAX_RESPONSE as u64)
            .read_to_end(&mut body)
            .await?;
    }
    Ok((status, body))
}

fn expect_ok(status: u16, body: Value, what: &str) -> Result<Value> {
    if (200..300).contains(&status) {
        return Ok(body);
    }
    let message = body
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| body.to_string());
    Err(Error::Source(format!(
        "schema registry: {what}: HTTP {status}: {message}"
    )))
}

fn registered(id: u32, body: &Value) -> Result<RegisteredSchema> {
    let mut references = Vec::new();
    for reference in body
        .get("references")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        references.push(Reference {
            name: string_field(reference, "name")?,
            subject: string_field(reference, "subject")?,
            version: reference
                .get("version")
                .and_then(Value::as_i64)
                .ok_or_else(|| {
                    Error::Source("schema registry: a reference has no version".into())
                })?,
        });
    }
    Ok(RegisteredSchema {
        id,
        schema: string_field(body, "schema")?,
        kind: body
            .get("schemaType")
            .and_then(Value::as_str)
            .unwrap_or("AVRO")
            .to_ascii_uppercase(),
        references,
    })
}

fn string_field(body: &Value, name: &str) -> Result<String> {
    body.get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Error::Source(format!("schema registry: the answer has no \"{name}\"")))
}

fn id_field(body: &Value) -> Result<u32> {
    body.get("id")
        .and_then(Value::as_u64)
        .and_then(|id| u32::try_from(id).ok())
        .ok_or_else(|| Error::Source("schema registry: the answer has no \"id\"".into()))
}

/// Percent-encode a subject for a URL path.
fn encode_path(subject: &str) -> String {
    let mut out = String::with_capacity(subject.len());
    for byte in subject.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() -> Result<()> {
        let registry = Registry::new("http://localhost:8081/api/")?;
        assert_eq!(registry.authority, "localhost:8081");
        assert_eq!(registry.prefix, "/api");
        assert_eq!(Registry::new("http://registry")?.authority, "registry:80");
        assert!(Registry::new("localhost:8081").is_err());
        assert!(Registry::new("https://r:443").is_err());
        assert_eq!(encode_path("my topic-value"), "my%20topic-value");
        Ok(())
    }

    #[tokio::test]
    async fn answers_are_read_with_any_framing() -> Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::Source(e.to_string()))?;
        let address = listener
            .local_addr()
            .map_err(|e| Error::Source(e.to_string()))?;
        let schema = r#"{"schema": "\"string\""}"#;
        let first = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{schema}",
            schema.len()
        );
        let answers = [
            first.as_str(),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"id\"\r\n4\r\n: 7}\r\n0\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}",
        ];
        let answers: Vec<String> = answers.iter().map(|a| a.to_string()).collect();
        tokio::spawn(async move {
            for answer in answers {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let mut buffer = [0u8; 4096];
                let _ = socket.read(&mut buffer).await;
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        let registry = Registry::new(&format!("http://{address}"))?;
        let found = registry.schema_by_id(1).await?.expect("schema 1");
        assert_eq!(
            (found.schema.as_str(), found.kind.as_str()),
            ("\"string\"", "AVRO")
        );
        assert_eq!(registry.register("t-value", "\"string\"").await?, 7);
        assert_eq!(registry.schema_by_id(2).await?, None);
        Ok(())
    }
}
