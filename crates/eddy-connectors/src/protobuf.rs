//! `ENCODE PROTOBUF (message = 'pkg.Msg', schema.location = 'file:///...')`:
//! each payload is one protobuf message of type `message`, described by a
//! descriptor set file (`protoc --include_imports --descriptor_set_out`).
//!
//! Messages are decoded with prost-reflect and their fields appended to
//! Arrow builders of the fields' own types, a batch at a time; the columns
//! are then matched to the declared columns by name and cast to their
//! types, as for Avro. A field that the message does not set reads as its
//! default where protobuf has no presence for it (proto3 scalars), else as
//! NULL. Enums read as their value names, `google.protobuf.Timestamp` as a
//! timestamp. A source that declares no columns takes one per field of a
//! type that maps to a column.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Float32Builder, Float64Builder,
    Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampNanosecondBuilder,
    UInt32Builder, UInt64Builder,
};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value,
};

use crate::avro::conform;
use crate::json::Decoded;
use crate::{Error, Result};

/// Where a source's protobuf messages are described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProtobufSpec {
    /// The descriptor set file.
    pub(crate) path: String,
    /// The message type, fully qualified.
    pub(crate) message: String,
}

impl ProtobufSpec {
    /// From `ENCODE PROTOBUF (...)` options (taken out of `options`).
    pub(crate) fn parse(options: &mut std::collections::BTreeMap<String, String>) -> Result<Self> {
        if options.contains_key("schema.registry") {
            return Err(Error::UnsupportedOption(
                "schema.registry with ENCODE PROTOBUF (give the descriptor set file: schema.location = 'file:///...')".into(),
            ));
        }
        let message = options.remove("message").ok_or_else(|| {
            Error::InvalidConfig("ENCODE PROTOBUF needs (message = 'package.Message', ...)".into())
        })?;
        let location = options.remove("schema.location").ok_or_else(|| {
            Error::InvalidConfig(
                "ENCODE PROTOBUF needs (schema.location = 'file:///path/to/descriptor-set')".into(),
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
        Ok(Self { path, message })
    }

    /// The message type, read from the descriptor set file.
    pub(crate) fn descriptor(&self) -> Result<MessageDescriptor> {
        let bytes = std::fs::read(&self.path).map_err(|e| {
            Error::invalid_option("schema.location", self.path.as_str(), e.to_string())
        })?;
        let pool = DescriptorPool::decode(bytes.as_slice()).map_err(|e| {
            Error::invalid_option(
                "schema.location",
                self.path.as_str(),
                format!("not a protobuf descriptor set: {e}"),
            )
        })?;
        pool.get_message_by_name(&self.message).ok_or_else(|| {
            Error::invalid_option(
                "message",
                self.message.as_str(),
                "the descriptor set has no such message type",
            )
        })
    }
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

    fn len(&self) -> usize {
        match self {
            Builder::Bool(b) => b.len(),
            Builder::I32(b) => b.len(),
            Builder::I64(b) => b.len(),
            Builder::U32(b) => b.len(),
            Builder::U64(b) => b.len(),
            Builder::F32(b) => b.len(),
            Builder::F64(b) => b.len(),
            Builder::Text(b) => b.len(),
            Builder::Bytes(b) => b.len(),
            Builder::Timestamp(b) => b.len(),
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
    pub(crate) fn new(schema: SchemaRef, spec: &ProtobufSpec) -> Result<Self> {
        let message = spec.descriptor()?;
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
        let rows = if batches.is_empty() {
            None
        } else {
            Some(concat_batches(&self.schema, &batches)?)
        };
        Ok(Decoded { rows, outcomes })
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
        debug_assert!(builders.iter().all(|(_, b)| b.len() == 0));
        let decoded = RecordBatch::try_new_with_options(
            self.decoded.clone(),
            columns,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .map_err(|e| e.to_string())?;
        conform(&decoded, &self.schema)
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
        let derived = derived_schema(&spec.descriptor()?)?;
        let names: Vec<&str> = derived.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["auction", "bidder", "channel", "price"]);

        let declared = Arc::new(Schema::new(vec![
            Field::new("auction", DataType::Int64, true),
            Field::new("channel", DataType::Utf8, true),
            Field::new("missing", DataType::Int32, true),
        ]));
        let mut decoder = ProtobufDecoder::new(declared, &spec)?;
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
