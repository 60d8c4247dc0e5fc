//! The proto3 JSON mapping of the CRI messages (feature `serde`).
//!
//! Every message and enum implements `serde::Serialize` and `serde::Deserialize` with the
//! canonical proto3 JSON form, the one `crictl -o json` prints:
//!
//! - field names in lowerCamelCase (`podSandboxId`); parsing also accepts the original
//!   snake_case names (`pod_sandbox_id`), which crictl's pod and container config files use;
//! - enums by name (`"CONTAINER_RUNNING"`); parsing also accepts numbers;
//! - 64-bit integers as strings (`"createdAt": "1700000000000000000"`);
//! - `bytes` as base64, except `KeyValue.value`, which upstream renders as a plain string;
//! - fields holding their default value are omitted; [`to_value_with_defaults`] emits them.
//!
//! ```
//! use cri_api::v1::{ContainerMetadata, ContainerState, ContainerStatus};
//!
//! let status = ContainerStatus {
//!     id: "c1".into(),
//!     metadata: Some(ContainerMetadata { name: "app".into(), attempt: 0 }),
//!     state: ContainerState::ContainerRunning as i32,
//!     created_at: 1_700_000_000_000_000_000,
//!     ..Default::default()
//! };
//! let json = serde_json::to_value(&status).unwrap();
//! assert_eq!(json["state"], "CONTAINER_RUNNING");
//! assert_eq!(json["createdAt"], "1700000000000000000");
//! assert!(json.get("exitCode").is_none());
//!
//! let parsed: ContainerStatus =
//!     serde_json::from_str(r#"{"id": "c1", "created_at": "1700000000000000000"}"#).unwrap();
//! assert_eq!(parsed.created_at, 1_700_000_000_000_000_000);
//! ```

use std::collections::HashMap;
use std::sync::OnceLock;

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeStruct;
use serde_json::{Map, Value};

use crate::v1::{FILE_DESCRIPTOR_SET, KeyValue};

/// Serialises `message` to a JSON value that also carries every field left at its default,
/// as Go's protojson does with `EmitUnpopulated`: scalars as their zero (`0`, `"0"` for
/// 64-bit integers, `""`, `false`), enums as the name of their zero value, repeated fields as
/// `[]`, maps as `{}` and unset messages as `null`.
///
/// ```
/// use cri_api::v1::VersionResponse;
///
/// let json = cri_api::json::to_value_with_defaults(&VersionResponse::default()).unwrap();
/// assert_eq!(json["runtimeName"], "");
/// assert_eq!(json["runtimeApiVersion"], "");
/// ```
///
/// # Errors
///
/// Fails only when serialisation itself fails (which the generated impls never do).
pub fn to_value_with_defaults<M>(message: &M) -> serde_json::Result<Value>
where
    M: serde::Serialize + prost::Name,
{
    let mut value = serde_json::to_value(message)?;
    fill_defaults(&mut value, &M::full_name());
    Ok(value)
}

/// Message descriptors of `runtime.v1`, by fully-qualified name (`runtime.v1.PodSandbox`).
fn descriptors() -> &'static HashMap<String, DescriptorProto> {
    static DESCRIPTORS: OnceLock<HashMap<String, DescriptorProto>> = OnceLock::new();
    DESCRIPTORS.get_or_init(|| {
        let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET)
            .expect("the embedded descriptor set is generated from the proto and always decodes");
        let mut map = HashMap::new();
        for file in set.file {
            let package = file.package().to_string();
            for message in file.message_type {
                collect(&package, message, &mut map);
            }
        }
        map
    })
}

fn collect(scope: &str, message: DescriptorProto, map: &mut HashMap<String, DescriptorProto>) {
    let name = format!("{scope}.{}", message.name());
    for nested in &message.nested_type {
        collect(&name, nested.clone(), map);
    }
    map.insert(name, message);
}

/// Enum descriptors' zero-value names, by fully-qualified name.
fn enum_zero_names() -> &'static HashMap<String, String> {
    static NAMES: OnceLock<HashMap<String, String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET)
            .expect("the embedded descriptor set is generated from the proto and always decodes");
        let mut names = HashMap::new();
        for file in &set.file {
            let package = file.package();
            for e in &file.enum_type {
                names.insert(format!("{package}.{}", e.name()), zero_name(e));
            }
            for message in &file.message_type {
                nested_enums(
                    &format!("{package}.{}", message.name()),
                    message,
                    &mut names,
                );
            }
        }
        names
    })
}

fn nested_enums(scope: &str, message: &DescriptorProto, names: &mut HashMap<String, String>) {
    for e in &message.enum_type {
        names.insert(format!("{scope}.{}", e.name()), zero_name(e));
    }
    for nested in &message.nested_type {
        nested_enums(&format!("{scope}.{}", nested.name()), nested, names);
    }
}

fn zero_name(e: &prost_types::EnumDescriptorProto) -> String {
    e.value
        .iter()
        .find(|v| v.number() == 0)
        .map(|v| v.name().to_string())
        .unwrap_or_default()
}

fn fill_defaults(value: &mut Value, full_name: &str) {
    let (Some(object), Some(descriptor)) = (value.as_object_mut(), descriptors().get(full_name))
    else {
        return;
    };
    for field in &descriptor.field {
        let key = field.json_name().to_string();
        match object.get_mut(&key) {
            None => {
                object.insert(key, default_for(field));
            }
            Some(present) => fill_present(present, field),
        }
    }
}

/// The fully-qualified name a field's `type_name` points at, without the leading dot.
fn target(field: &FieldDescriptorProto) -> &str {
    field.type_name().trim_start_matches('.')
}

fn map_entry(field: &FieldDescriptorProto) -> Option<&'static DescriptorProto> {
    if field.label() != Label::Repeated || field.r#type() != Type::Message {
        return None;
    }
    descriptors()
        .get(target(field))
        .filter(|d| d.options.as_ref().is_some_and(|o| o.map_entry()))
}

fn fill_present(value: &mut Value, field: &FieldDescriptorProto) {
    if let Some(entry) = map_entry(field) {
        let value_field = entry.field.iter().find(|f| f.number() == 2);
        if let (Some(value_field), Some(map)) = (value_field, value.as_object_mut())
            && value_field.r#type() == Type::Message
        {
            for item in map.values_mut() {
                fill_defaults(item, target(value_field));
            }
        }
        return;
    }
    if field.r#type() != Type::Message {
        return;
    }
    match value {
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| fill_defaults(item, target(field))),
        other => fill_defaults(other, target(field)),
    }
}

fn default_for(field: &FieldDescriptorProto) -> Value {
    if map_entry(field).is_some() {
        return Value::Object(Map::new());
    }
    if field.label() == Label::Repeated {
        return Value::Array(Vec::new());
    }
    match field.r#type() {
        Type::Message | Type::Group => Value::Null,
        Type::Enum => Value::String(
            enum_zero_names()
                .get(target(field))
                .cloned()
                .unwrap_or_default(),
        ),
        Type::String | Type::Bytes => Value::String(String::new()),
        Type::Bool => Value::Bool(false),
        Type::Int64 | Type::Uint64 | Type::Sint64 | Type::Fixed64 | Type::Sfixed64 => {
            Value::String("0".to_string())
        }
        Type::Double | Type::Float => Value::from(0.0),
        Type::Int32 | Type::Uint32 | Type::Sint32 | Type::Fixed32 | Type::Sfixed32 => {
            Value::from(0)
        }
    }
}

// `KeyValue.value` is `bytes` on the wire, but upstream renders it in JSON as a plain string
// (its content is text: checkpoint and runtime-handler options). The generator is told to
// skip this message and the impls below keep that shape. Bytes that are not UTF-8 cannot be a
// JSON string; they are rendered with U+FFFD replacement characters.

impl serde::Serialize for KeyValue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let len = usize::from(!self.key.is_empty()) + usize::from(!self.value.is_empty());
        let mut s = serializer.serialize_struct("runtime.v1.KeyValue", len)?;
        if !self.key.is_empty() {
            s.serialize_field("key", &self.key)?;
        }
        if !self.value.is_empty() {
            s.serialize_field("value", &String::from_utf8_lossy(&self.value))?;
        }
        s.end()
    }
}

impl<'de> serde::Deserialize<'de> for KeyValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyValueVisitor;

        impl<'de> Visitor<'de> for KeyValueVisitor {
            type Value = KeyValue;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("struct runtime.v1.KeyValue")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyValue, A::Error> {
                let mut out = KeyValue::default();
                let (mut seen_key, mut seen_value) = (false, false);
                while let Some(name) = map.next_key::<String>()? {
                    match name.as_str() {
                        "key" => {
                            if std::mem::replace(&mut seen_key, true) {
                                return Err(de::Error::duplicate_field("key"));
                            }
                            out.key = map.next_value::<Option<String>>()?.unwrap_or_default();
                        }
                        "value" => {
                            if std::mem::replace(&mut seen_value, true) {
                                return Err(de::Error::duplicate_field("value"));
                            }
                            out.value = map
                                .next_value::<Option<String>>()?
                                .unwrap_or_default()
                                .into_bytes();
                        }
                        other => return Err(de::Error::unknown_field(other, &["key", "value"])),
                    }
                }
                Ok(out)
            }
        }

        deserializer.deserialize_struct("runtime.v1.KeyValue", &["key", "value"], KeyValueVisitor)
    }
}
