//! `ENCODE PROTOBUF (message = 'pkg.Msg', schema.location = 'file:///...')`:
//! each payload is one protobuf message of type `message`, described by a
//! descriptor set file (`protoc --include_imports --descriptor_set_out`).
//! With `schema.registry = 'http://...'` instead, payloads are in the
//! Confluent wire format (schema id, message indexes, message) and each
//! writer schema (`.proto` text, with the schemas it references) is fetched
//! by id and compiled with protox.
//!
//! Messages are decoded with prost-reflect and their fields appended to
//! Arrow builders of the fields' own types, a batch at a time; the columns
//! are then matched to the declared columns by name and cast to their
//! types, as for Avro. A field that the message does not set reads as its
//! default where protobuf has no presence for it (proto3 scalars), else as
//! NULL. Enums read as their value names, `google.protobuf.Timestamp` as a
//! timestamp. A source that declares no columns takes one per field of a
//! type that maps to a column (of `message` in the file, or in the latest
//! schema of subject `{topic}-value`).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Float32Builder, Float64Builder, Int32Builder,
    Int64Builder, RecordBatch, StringBuilder, TimestampNanosecondBuilder, UInt32Builder,
    UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use std::collections::HashMap;

use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor, Value,
};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use protox::Compiler;

use crate::avro::{conform, schema_id};
use crate::json::Decoded;
use crate::registry::{RegisteredSchema, Registry};
use crate::{Error, Result};

/// Where a source's protobuf message types come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Descriptors {
    /// A descriptor set file; payloads are bare messages.
    File(String),
    /// A schema registry; payloads are in the Confluent wire format.
    Registry(Registry),
}

/// `ENCODE PROTOBUF (...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProtobufSpec {
    pub(crate) descriptors: Descriptors,
    /// The message type, fully qualified.
    pub(crate) message: String,
}

impl ProtobufSpec {
    /// From `ENCODE PROTOBUF (...)` options (taken out of `options`).
    pub(crate) fn parse(options: &mut std::collections::BTreeMap<String, String>) -> Result<Self> {
        let message = options.remove("message").ok_or_else(|| {
            Error::InvalidConfig("ENCODE PROTOBUF needs (message = 'package.Message', ...)".into())
        })?;
        if let Some(url) = options.remove("schema.registry") {
            return Ok(Self {
                descriptors: Descriptors::Registry(Registry::new(&url)?),
                message,
            });
        }
        let location = options.remove("schema.location").ok_or_else(|| {
            Error::InvalidConfig(
                "ENCODE PROTOBUF needs schema.location = 'file:///path/to/descriptor-set' or schema.registry = 'http://...'"
                    .into(),
            )
        })?;
        let path = match location.strip_prefix("file://") {
            Some(path) => path.to_string(),
            None if location.contains("://") => {
                return Err(Error::UnsupportedOption(format!(
                    "schema.location '{location}' (only file:// locations)"
                )))
            }
            None => location,
        };
        Ok(Self {
            descriptors: Descriptors::File(path),
            message,
        })
    }

    /// The message type: from the descriptor set file, or from the latest
    /// schema of subject `{topic}-value`.
    pub(crate) async fn descriptor(&self, topic: &str) -> Result<MessageDescriptor> {
        let pool = match &self.descriptors {
            Descriptors::File(path) => file_pool(path)?,
            Descriptors::Registry(registry) => {
                let latest = registry.latest(&format!("{topic}-value")).await?;
                let (pool, _) = compile(registry, &latest).await?.map_err(Error::Source)?;
                pool
            }
        };
        pool.get_message_by_name(&self.message).ok_or_else(|| {
            Error::invalid_option(
                "message",
                self.message.as_str(),
                "the schema has no such message type",
            )
        })
    }
}

impl ProtobufSpec {
    /// The message type, if it comes from a descriptor set file.
    pub(crate) fn file_message(&self) -> Result<Option<MessageDescriptor>> {
        let Descriptors::File(path) = &self.descriptors else {
            return Ok(None);
        };
        let message = file_pool(path)?
            .get_message_by_name(&self.message)
            .ok_or_else(|| {
                Error::invalid_option(
                    "message",
                    self.message.as_str(),
                    "the descriptor set has no such message type",
                )
            })?;
        Ok(Some(message))
    }
}

fn file_pool(path: &str) -> Result<DescriptorPool> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::invalid_option("schema.location", path, e.to_string()))?;
    DescriptorPool::decode(bytes.as_slice()).map_err(|e| {
        Error::invalid_option(
            "schema.location",
            path,
            format!("not a protobuf descriptor set: {e}"),
        )
    })
}

/// `.proto` sources by file name, for protox.
struct Sources(HashMap<String, String>);

impl FileResolver for Sources {
    fn open_file(&self, name: &str) -> std::result::Result<File, protox::Error> {
        match self.0.get(name) {
            Some(source) => File::from_source(name, source),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// Compile a registered `.proto` schema with the schemas it references
/// (fetched from the registry) and Google's well-known types: the pool and
/// the schema's own file name. The outer error means the registry did not
/// answer; the inner one that the schema cannot be used.
async fn compile(
    registry: &Registry,
    schema: &RegisteredSchema,
) -> Result<std::result::Result<(DescriptorPool, String), String>> {
    if schema.kind != "PROTOBUF" {
        return Ok(Err(format!(
            "schema id {} is a {} schema, not PROTOBUF",
            schema.id, schema.kind
        )));
    }
    let root = format!("eddy-registry-schema-{}.proto", schema.id);
    let mut sources = HashMap::new();
    sources.insert(root.clone(), schema.schema.clone());
    let mut wanted = schema.references.clone();
    while let Some(reference) = wanted.pop() {
        if sources.contains_key(&reference.name) {
            continue;
        }
        let found = registry
            .version(&reference.subject, reference.version)
            .await?;
        sources.insert(reference.name, found.schema);
        wanted.extend(found.references);
    }
    let mut resolver = ChainFileResolver::new();
    resolver.add(Sources(sources));
    resolver.add(GoogleFileResolver::new());
    let mut compiler = Compiler::with_file_resolver(resolver);
    compiler.include_imports(true);
    Ok(match compiler.open_file(&root) {
        Ok(_) => Ok((compiler.descriptor_pool(), root)),
        Err(error) => Err(format!("schema id {} does not compile: {error}", schema.id)),
    })
}

/// The columns of a source that declares none: one per field that maps to
/// a column.
pub(crate) fn derived_schema(message: &MessageDescriptor) -> Result<SchemaRef> {
    let fields: Vec<Field> = message
        .fields()
        .map(|field| {
            let data_type = natural_type(&field).ok_or_else(|| {
                Error::UnsupportedFormat(format!(
                    "protobuf field \"{}\" ({}) as a column (declare the columns, leaving it out)",
                    field.name(),
                    describe(&field)
                ))
            })?;
            Ok(Field::new(field.name(), data_type, true))
        })
        .collect::<Result<_>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

fn describe(field: &FieldDescriptor) -> String {
    let kind = match field.kind() {
        Kind::Message(m) => m.full_name().to_string(),
        Kind::Enum(e) => e.full_name().to_string(),
        other => format!("{other:?}").to_lowercase(),
    };
    if field.is_map() {
        "map".into()
    } else if field.is_list() {
        format!("repeated {kind}")
    } else {
        kind
    }
}

/// The Arrow type a field decodes into, if it maps to a column.
fn natural_type(field: &FieldDescriptor) -> Option<DataType> {
    if field.is_list() || field.is_map() {
        return None;
    }
    Some(match field.kind() {
        Kind::Bool => DataType::Boolean,
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => DataType::Int32,
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => DataType::Int64,
        Kind::Uint32 | Kind::Fixed32 => DataType::UInt32,
        Kind::Uint64 | Kind::Fixed64 => DataType::UInt64,
        Kind::Float => DataType::Float32,
        Kind::Double => DataType::Float64,
        Kind::String | Kind::Enum(_) => DataType::Utf8,
        Kind::Bytes => DataType::Binary,
        Kind::Message(m) if m.full_name() == "google.protobuf.Timestamp" => {
            DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into()))
        }
        Kind::Message(_) => return None,
    })
}

/// One column being built from one message field.
enum Builder {
    Bool(BooleanBuilder),
    I32(Int32Builder),
    I64(Int64Builder),
    U32(UInt32Builder),
    U64(UInt64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Text(StringBuilder),
    Bytes(BinaryBuilder),
    Timestamp(TimestampNanosecondBuilder),
}

impl Builder {
    fn new(data_type: &DataType) -> Option<Self> {
        Some(match data_type {
            DataType::Boolean => Builder::Bool(BooleanBuilder::new()),
            DataType::Int32 => Builder::I32(Int32Builder::new()),
            DataType::Int64 => Builder::I64(Int64Builder::new()),
            DataType::UInt32 => Builder::U32(UInt32Builder::new()),
            DataType::UInt64 => Builder::U64(UInt64Builder::new()),
            DataType::Float32 => Builder::F32(Float32Builder::new()),
            DataType::Float64 => Builder::F64(Float64Builder::new()),
            DataType::Utf8 => Builder::Text(StringBuilder::new()),
            DataType::Binary => Builder::Bytes(BinaryBuilder::new()),
            DataType::Timestamp(..) => {
                Builder::Timestamp(TimestampNanosecondBuilder::new().with_timezone("+00:00"))
            }
            _ => return None,
        })
    }

    /// Append `value` of `field` (`None`: NULL).
    fn append(
        &mut self,
        field: &FieldDescriptor,
        value: Option<&Value>,
    ) -> std::result::Result<(), String> {
        let mismatch = || format!("field \"{}\" holds a value of another type", field.name());
        match (self, value) {
            (Builder::Bool(b), None) => b.append_null(),
            (Builder::I32(b), None) => b.append_null(),
            (Builder::I64(b), None) => b.append_null(),
            (Builder::U32(b), None) => b.append_null(),
            (Builder::U64(b), None) => b.append_null(),
            (Builder::F32(b), None) => b.append_null(),
            (Builder::F64(b), None) => b.append_null(),
            (Builder::Text(b), None) => b.append_null(),
            (Builder::Bytes(b), None) => b.append_null(),
            (Builder::Timestamp(b), None) => b.append_null(),
            (Builder::Bool(b), Some(Value::Bool(v))) => b.append_value(*v),
            (Builder::I32(b), Some(Value::I32(v))) => b.append_value(*v),
            (Builder::I64(b), Some(Value::I64(v))) => b.append_value(*v),
            (Builder::U32(b), Some(Value::U32(v))) => b.append_value(*v),
            (Builder::U64(b), Some(Value::U64(v))) => b.append_value(*v),
            (Builder::F32(b), Some(Value::F32(v))) => b.append_value(*v),
            (Builder::F64(b), Some(Value::F64(v))) => b.append_value(*v),
            (Builder::Text(b), Some(Value::String(v))) => b.append_value(v),
            (Builder::Text(b), Some(Value::EnumNumber(n))) => {
                let Kind::Enum(values) = field.kind() else {
                    return Err(mismatch());
                };
                match values.get_value(*n) {
                    Some(value) => b.append_value(value.name()),
                    // An enum number the descriptor does not name.
                    None => b.append_value(n.to_string()),
                }
            }
            (Builder::Bytes(b), Some(Value::Bytes(v))) => b.append_value(v),
            (Builder::Timestamp(b), Some(Value::Message(m))) => {
                let seconds = match m.get_field_by_name("seconds").as_deref() {
                    Some(Value::I64(s)) => *s,
                    _ => 0,
                };
                let nanos = match m.get_field_by_name("nanos").as_deref() {
                    Some(Value::I32(n)) => *n,
                    _ => 0,
                };
                let at = seconds
                    .checked_mul(1_000_000_000)
                    .and_then(|s| s.checked_add(i64::from(nanos)))
                    .ok_or_else(|| {
                        format!("field \"{}\": the timestamp is out of range", field.name())
                    })?;
                b.append_value(at)
            }
            _ => return Err(mismatch()),
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::I32(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::U32(b) => Arc::new(b.finish()),
            Builder::U64(b) => Arc::new(b.finish()),
            Builder::F32(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Bytes(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
        }
    }
}

/// Decodes protobuf payloads into batches of one schema.
pub(crate) struct ProtobufDecoder {
    schema: SchemaRef,
    message: MessageDescriptor,
    /// Per declared column: the field it reads, if the message has one of
    /// that name (else the column is NULL).
    fields: Vec<Option<FieldDescriptor>>,
    /// The fields' own columns (the declared ones that have a field).
    decoded: SchemaRef,
}

impl ProtobufDecoder {
    pub(crate) fn new(schema: SchemaRef, message: MessageDescriptor) -> Result<Self> {
        let mut fields = Vec::new();
        let mut decoded = Vec::new();
        for column in schema.fields() {
            let field = message.get_field_by_name(column.name()).or_else(|| {
                message
                    .fields()
                    .find(|f| f.name().eq_ignore_ascii_case(column.name()))
            });
            if let Some(field) = &field {
                let Some(data_type) = natural_type(field) else {
                    return Err(Error::UnsupportedFormat(format!(
                        "protobuf field \"{}\" ({}) as column \"{}\"",
                        field.name(),
                        describe(field),
                        column.name()
                    )));
                };
                decoded.push(Field::new(column.name(), data_type, true));
            }
            fields.push(field);
        }
        Ok(Self {
            schema,
            message,
            fields,
            decoded: Arc::new(Schema::new(decoded)),
        })
    }

    /// The schema payloads are decoded into.
    pub(crate) fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Decode `payloads`: in one pass, or, if some are bad, one by one.
    pub(crate) fn decode(&mut self, payloads: &[Option<&[u8]>]) -> Result<Decoded> {
        if payloads.iter().all(Option::is_some) {
            if let Ok(rows) = self.decode_all(payloads) {
                return Ok(Decoded {
                    rows: Some(rows),
                    outcomes: vec![Ok(()); payloads.len()],
                });
            }
        }
        let mut batches = Vec::new();
        let mut outcomes = Vec::with_capacity(payloads.len());
        for payload in payloads {
            outcomes.push(match payload {
                None => Err("message has no payload".to_string()),
                Some(payload) => self
                    .decode_all(&[Some(payload)])
                    .map(|rows| batches.push(rows)),
            });
        }
        Decoded::new(&self.schema, &batches, outcomes)
    }

    fn decode_all(&self, payloads: &[Option<&[u8]>]) -> std::result::Result<RecordBatch, String> {
        let mut builders: Vec<(FieldDescriptor, Builder)> = Vec::new();
        for (field, column) in self.fields.iter().flatten().zip(self.decoded.fields()) {
            let builder = Builder::new(column.data_type())
                .ok_or_else(|| format!("no builder for {}", column.data_type()))?;
            builders.push((field.clone(), builder));
        }
        for payload in payloads.iter().flatten() {
            let message = DynamicMessage::decode(self.message.clone(), *payload)
                .map_err(|e| format!("not a protobuf {}: {e}", self.message.full_name()))?;
            for (field, builder) in &mut builders {
                let set = !field.supports_presence() || message.has_field(field);
                let value = set.then(|| message.get_field(field));
                builder.append(field, value.as_deref())?;
            }
        }
        let rows = payloads.len();
        let columns: Vec<ArrayRef> = builders.iter_mut().map(|(_, b)| b.finish()).collect();
        let decoded = RecordBatch::try_new_with_options(
            self.decoded.clone(),
            columns,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .map_err(|e| e.to_string())?;
        conform(&decoded, &self.schema)
    }
}

/// The schema id and message indexes of a Confluent-framed protobuf
/// payload, and where the message starts.
fn confluent_header(payload: &[u8]) -> std::result::Result<(u32, Vec<i32>, usize), String> {
    let id = schema_id(payload)?;
    let mut at = 5;
    let mut varint = || -> std::result::Result<i64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *payload
                .get(at)
                .ok_or_else(|| "the message indexes are truncated".to_string())?;
            at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err("a message index is too long".into())
    };
    let count = varint()?;
    let indexes = if count == 0 {
        vec![0]
    } else if (1..=16).contains(&count) {
        (0..count)
            .map(|_| varint().and_then(|i| i32::try_from(i).map_err(|e| e.to_string())))
            .collect::<std::result::Result<_, _>>()?
    } else {
        return Err(format!("{count} message indexes"));
    };
    Ok((id, indexes, at))
}

/// The message type at `indexes` in `file` (top-level, then nested).
fn message_at(file: &FileDescriptor, indexes: &[i32]) -> Option<MessageDescriptor> {
    let (first, rest) = indexes.split_first()?;
    let mut message = file.messages().nth(usize::try_from(*first).ok()?)?;
    for index in rest {
        let child = message
            .child_messages()
            .nth(usize::try_from(*index).ok()?)?;
        message = child;
    }
    Some(message)
}

/// Decodes Confluent-framed protobuf payloads whose schemas are in a
/// registry: one [`ProtobufDecoder`] per writer schema and message type.
pub(crate) struct RegistryProtobufDecoder {
    schema: SchemaRef,
    registry: Registry,
    /// The message type expected, fully qualified.
    message: String,
    /// Per schema id: its file, compiled, or why it cannot be used.
    writers: HashMap<u32, std::result::Result<FileDescriptor, String>>,
    decoders: HashMap<(u32, Vec<i32>), std::result::Result<ProtobufDecoder, String>>,
}

impl RegistryProtobufDecoder {
    pub(crate) fn new(schema: SchemaRef, registry: Registry, message: String) -> Self {
        Self {
            schema,
            registry,
            message,
            writers: HashMap::new(),
            decoders: HashMap::new(),
        }
    }

    pub(crate) fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Ask the registry again for the schemas it did not have.
    pub(crate) fn forget_missing(&mut self) {
        self.writers.retain(|_, found| found.is_ok());
        self.decoders.retain(|_, made| made.is_ok());
    }

    /// Fetch and compile the writer schemas `payloads` name that are not
    /// known yet. An error means the registry did not answer.
    pub(crate) async fn resolve(&mut self, payloads: &[Option<&[u8]>]) -> Result<()> {
        let mut wanted: Vec<u32> = payloads
            .iter()
            .flatten()
            .filter_map(|p| schema_id(p).ok())
            .filter(|id| !self.writers.contains_key(id))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        for id in wanted {
            let found = match self.registry.schema_by_id(id).await? {
                None => Err(format!("schema id {id} is not in the schema registry")),
                Some(schema) => compile(&self.registry, &schema)
                    .await?
                    .and_then(|(pool, root)| {
                        pool.get_file_by_name(&root)
                            .ok_or_else(|| format!("schema id {id} compiled to no file"))
                    }),
            };
            self.decoders.retain(|(writer, _), _| *writer != id);
            self.writers.insert(id, found);
        }
        Ok(())
    }

    /// Decode `payloads`, after [`Self::resolve`].
    pub(crate) fn decode(&mut self, payloads: &[Option<&[u8]>]) -> Result<Decoded> {
        let mut outcomes: Vec<std::result::Result<(), String>> = Vec::with_capacity(payloads.len());
        let mut batches = Vec::new();
        let mut index = 0;
        while index < payloads.len() {
            let header = match payloads[index] {
                None => Err("message has no payload".to_string()),
                Some(payload) => confluent_header(payload),
            };
            let (id, indexes, _) = match header {
                Ok(header) => header,
                Err(reason) => {
                    outcomes.push(Err(reason));
                    index += 1;
                    continue;
                }
            };
            // The run of messages of this writer schema and message type.
            let mut bodies: Vec<Option<&[u8]>> = Vec::new();
            while let Some(Some(payload)) = payloads.get(index) {
                match confluent_header(payload) {
                    Ok((i, m, at)) if i == id && m == indexes => bodies.push(Some(&payload[at..])),
                    _ => break,
                }
                index += 1;
            }
            match self.decoder(id, &indexes) {
                Ok(decoder) => {
                    let decoded = decoder.decode(&bodies)?;
                    outcomes.extend(decoded.outcomes);
                    batches.extend(decoded.rows);
                }
                Err(reason) => outcomes.extend(bodies.iter().map(|_| Err(reason.clone()))),
            }
        }
        Decoded::new(&self.schema, &batches, outcomes)
    }

    fn decoder(
        &mut self,
        id: u32,
        indexes: &[i32],
    ) -> std::result::Result<&mut ProtobufDecoder, String> {
        let key = (id, indexes.to_vec());
        if !self.decoders.contains_key(&key) {
            let made = match self.writers.get(&id) {
                None => Err(format!("schema id {id} is not in the schema registry")),
                Some(Err(reason)) => Err(reason.clone()),
                Some(Ok(file)) => match message_at(file, indexes) {
                    None => Err(format!(
                        "schema id {id} has no message type at indexes {indexes:?}"
                    )),
                    Some(message) if message.full_name() != self.message => Err(format!(
                        "a {} message, not {}",
                        message.full_name(),
                        self.message
                    )),
                    Some(message) => ProtobufDecoder::new(self.schema.clone(), message)
                        .map_err(|e| e.to_string()),
                },
            };
            self.decoders.insert(key.clone(), made);
        }
        match self.decoders.get_mut(&key) {
            Some(Ok(decoder)) => Ok(decoder),
            Some(Err(reason)) => Err(reason.clone()),
            None => Err("no decoder".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int64Type;
    use prost_reflect::prost;
    use prost_reflect::prost::Message as _;
    use prost_reflect::prost_types::{
        field_descriptor_proto::{Label, Type},
        DescriptorProto, EnumDescriptorProto, EnumValueDescriptorProto, FieldDescriptorProto,
        FileDescriptorProto, FileDescriptorSet,
    };

    use super::*;

    fn field(name: &str, number: i32, kind: Type, type_name: Option<&str>) -> FieldDescriptorProto {
        FieldDescriptorProto {
            name: Some(name.into()),
            number: Some(number),
            label: Some(Label::Optional as i32),
            r#type: Some(kind as i32),
            type_name: type_name.map(str::to_string),
            ..Default::default()
        }
    }

    fn descriptor_file() -> std::path::PathBuf {
        let file = FileDescriptorProto {
            name: Some("bid.proto".into()),
            package: Some("shop".into()),
            syntax: Some("proto3".into()),
            message_type: vec![DescriptorProto {
                name: Some("Bid".into()),
                field: vec![
                    field("auction", 1, Type::Int64, None),
                    field("bidder", 2, Type::String, None),
                    field("channel", 3, Type::Enum, Some(".shop.Channel")),
                    field("price", 4, Type::Double, None),
                ],
                ..Default::default()
            }],
            enum_type: vec![EnumDescriptorProto {
                name: Some("Channel".into()),
                value: vec![
                    EnumValueDescriptorProto {
                        name: Some("WEB".into()),
                        number: Some(0),
                        ..Default::default()
                    },
                    EnumValueDescriptorProto {
                        name: Some("APP".into()),
                        number: Some(1),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let set = FileDescriptorSet { file: vec![file] };
        let path = std::env::temp_dir().join(format!("eddy-proto-{}.pb", std::process::id()));
        std::fs::write(&path, set.encode_to_vec()).expect("write descriptor set");
        path
    }

    /// A `shop.Bid`, encoded by hand: tag, then value.
    fn bid(auction: i64, bidder: &str, channel: u8) -> Vec<u8> {
        let mut out = vec![0x08];
        prost::encoding::encode_varint(auction as u64, &mut out);
        out.push(0x12);
        out.push(bidder.len() as u8);
        out.extend_from_slice(bidder.as_bytes());
        if channel != 0 {
            out.extend_from_slice(&[0x18, channel]);
        }
        out
    }

    #[test]
    fn messages_decode_into_declared_and_derived_columns() -> Result<()> {
        let path = descriptor_file();
        let mut options = std::collections::BTreeMap::new();
        options.insert("message".to_string(), "shop.Bid".to_string());
        options.insert(
            "schema.location".to_string(),
            format!("file://{}", path.display()),
        );
        let spec = ProtobufSpec::parse(&mut options)?;
        let Descriptors::File(path_text) = &spec.descriptors else {
            panic!("a file");
        };
        let message = file_pool(path_text)?
            .get_message_by_name("shop.Bid")
            .expect("shop.Bid");
        let derived = derived_schema(&message)?;
        let names: Vec<&str> = derived.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["auction", "bidder", "channel", "price"]);

        let declared = Arc::new(Schema::new(vec![
            Field::new("auction", DataType::Int64, true),
            Field::new("channel", DataType::Utf8, true),
            Field::new("missing", DataType::Int32, true),
        ]));
        let mut decoder = ProtobufDecoder::new(declared, message)?;
        let (a, b) = (bid(7, "x", 1), bid(-3, "yy", 0));
        let payloads: Vec<Option<&[u8]>> = vec![Some(&a), Some(b"\xff\xff\xff"), None, Some(&b)];
        let decoded = decoder.decode(&payloads)?;
        let ok: Vec<bool> = decoded.outcomes.iter().map(|o| o.is_ok()).collect();
        assert_eq!(ok, [true, false, false, true]);
        let rows = decoded.rows.expect("rows");
        assert_eq!(
            rows.column(0).as_primitive::<Int64Type>().values(),
            &[7, -3]
        );
        let channel = rows.column(1).as_string::<i32>();
        assert_eq!((channel.value(0), channel.value(1)), ("APP", "WEB"));
        assert_eq!(rows.column(2).null_count(), 2);
        let _ = std::fs::remove_file(path);
        Ok(())
    }
}
