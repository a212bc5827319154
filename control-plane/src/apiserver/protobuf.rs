//! Kubernetes' protobuf encoding, read for the few kinds skiff takes in it: the access
//! reviews (see [`super::reviews`]), which kubectl's `auth can-i` and `auth whoami` send
//! only as protobuf and never retry as JSON.
//!
//! A body is the 4 bytes `k8s\0` and a `runtime.Unknown` message: `typeMeta` (1: its
//! `apiVersion` 1 and `kind` 2), `raw` (2: the object's own message), `contentEncoding`
//! (3) and `contentType` (4). The object is decoded by a [`Message`] table of the field
//! numbers skiff reads, into the JSON value the same object sent as JSON decodes to, so
//! one code path serves both. Fields the tables do not name are skipped, as protobuf
//! readers do; the tables' numbers are those of Kubernetes' `generated.proto` files
//! (`k8s.io/apimachinery/pkg/runtime`, `k8s.io/api/authorization/v1`,
//! `k8s.io/api/authentication/v1`).
//!
//! A hand-written reader rather than generated code: five small messages do not pay for
//! a code generator and `protoc` in every build.

use serde_json::{Map, Value};

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// What every Kubernetes protobuf body starts with.
const MAGIC: &[u8] = b"k8s\0";

/// Why a protobuf body could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtobufError {
    #[error("it does not start with the Kubernetes protobuf prefix \"k8s\\x00\"")]
    Prefix,
    #[error("it ends inside a field")]
    Truncated,
    #[error("a varint is longer than 10 bytes")]
    LongVarint,
    #[error("wire type {0} is not a protobuf wire type")]
    WireType(u8),
    #[error("field {field}: wire type {wire} where {expected} was expected")]
    Mismatch {
        field: String,
        wire: u8,
        expected: &'static str,
    },
    #[error("field {0}: not UTF-8")]
    Utf8(String),
    #[error("content encoding {0:?} is not supported")]
    Encoding(String),
    #[error("{api_version}, Kind={kind} is not read from protobuf")]
    Kind { api_version: String, kind: String },
}

/// One field as it came off the wire.
enum Wire<'a> {
    Varint,
    Fixed,
    Bytes(&'a [u8]),
}

impl Wire<'_> {
    fn number(&self) -> u8 {
        match self {
            Wire::Varint => 0,
            Wire::Fixed => 1,
            Wire::Bytes(_) => 2,
        }
    }
}

/// Reads a message's fields in order.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let (&byte, rest) = self.rest.split_first().ok_or(ProtobufError::Truncated)?;
            self.rest = rest;
            value |= u64::from(byte & 0x7f) << shift.min(63);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtobufError::LongVarint)
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], ProtobufError> {
        let len = usize::try_from(len).map_err(|_| ProtobufError::Truncated)?;
        if len > self.rest.len() {
            return Err(ProtobufError::Truncated);
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    /// The next field's number and value; `None` at the end of the message.
    fn field(&mut self) -> Result<Option<(u64, Wire<'a>)>, ProtobufError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let wire = match key & 7 {
            0 => {
                self.varint()?;
                Wire::Varint
            }
            1 => {
                self.take(8)?;
                Wire::Fixed
            }
            2 => {
                let len = self.varint()?;
                Wire::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed
            }
            // Groups (3, 4) are proto1's; no Kubernetes message has them.
            other => return Err(ProtobufError::WireType(other as u8)),
        };
        Ok(Some((key >> 3, wire)))
    }
}

/// How a field read into JSON is shaped.
#[derive(Clone, Copy)]
enum Shape {
    String,
    /// `repeated string`.
    Strings,
    Message(Message),
}

/// A message's fields that skiff reads: number, JSON name, shape.
type Message = &'static [(u64, &'static str, Shape)];

/// `k8s.io/apimachinery/pkg/apis/meta/v1.ObjectMeta`: the fields a review may carry and
/// its answer echoes.
const OBJECT_META: Message = &[
    (1, "name", Shape::String),
    (2, "generateName", Shape::String),
    (3, "namespace", Shape::String),
];

/// `authorization/v1.ResourceAttributes`. `fieldSelector` (8) and `labelSelector` (9) are
/// not read: they could only narrow a request, and RBAC does not look at them.
const RESOURCE_ATTRIBUTES: Message = &[
    (1, "namespace", Shape::String),
    (2, "verb", Shape::String),
    (3, "group", Shape::String),
    (4, "version", Shape::String),
    (5, "resource", Shape::String),
    (6, "subresource", Shape::String),
    (7, "name", Shape::String),
];

/// `authorization/v1.NonResourceAttributes`.
const NON_RESOURCE_ATTRIBUTES: Message = &[(1, "path", Shape::String), (2, "verb", Shape::String)];

/// `authorization/v1.SelfSubjectAccessReviewSpec`.
const SELF_ACCESS_SPEC: Message = &[
    (1, "resourceAttributes", Shape::Message(RESOURCE_ATTRIBUTES)),
    (
        2,
        "nonResourceAttributes",
        Shape::Message(NON_RESOURCE_ATTRIBUTES),
    ),
];

/// `authorization/v1.SubjectAccessReviewSpec`. `extra` (5) is not read: RBAC does not
/// look at it.
const ACCESS_SPEC: Message = &[
    (1, "resourceAttributes", Shape::Message(RESOURCE_ATTRIBUTES)),
    (
        2,
        "nonResourceAttributes",
        Shape::Message(NON_RESOURCE_ATTRIBUTES),
    ),
    (3, "user", Shape::String),
    (4, "groups", Shape::Strings),
    (6, "uid", Shape::String),
];

/// `authorization/v1.SelfSubjectRulesReviewSpec`.
const SELF_RULES_SPEC: Message = &[(1, "namespace", Shape::String)];

/// The objects read from protobuf, by API version and kind: `metadata` is 1 and `spec`
/// 2 in each; `status` (3, or 2 in SelfSubjectReview) is the server's to fill.
const OBJECTS: &[(&str, &str, Message)] = &[
    (
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        &[
            (1, "metadata", Shape::Message(OBJECT_META)),
            (2, "spec", Shape::Message(SELF_ACCESS_SPEC)),
        ],
    ),
    (
        "authorization.k8s.io/v1",
        "SubjectAccessReview",
        &[
            (1, "metadata", Shape::Message(OBJECT_META)),
            (2, "spec", Shape::Message(ACCESS_SPEC)),
        ],
    ),
    (
        "authorization.k8s.io/v1",
        "SelfSubjectRulesReview",
        &[
            (1, "metadata", Shape::Message(OBJECT_META)),
            (2, "spec", Shape::Message(SELF_RULES_SPEC)),
        ],
    ),
    (
        "authentication.k8s.io/v1",
        "SelfSubjectReview",
        &[(1, "metadata", Shape::Message(OBJECT_META))],
    ),
];

/// Whether a `Content-Type` is Kubernetes protobuf.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(CONTENT_TYPE))
}

/// Decodes a protobuf body of one of the kinds skiff reads in protobuf into the JSON
/// value it would be as JSON, `apiVersion` and `kind` included.
pub fn decode_object(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = body.strip_prefix(MAGIC).ok_or(ProtobufError::Prefix)?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    let mut reader = Reader { rest: envelope };
    while let Some((number, wire)) = reader.field()? {
        match number {
            1 => {
                let mut type_meta = Reader {
                    rest: bytes_of(&wire, "typeMeta")?,
                };
                while let Some((number, wire)) = type_meta.field()? {
                    match number {
                        1 => api_version = string(&wire, "typeMeta.apiVersion")?,
                        2 => kind = string(&wire, "typeMeta.kind")?,
                        _ => {}
                    }
                }
            }
            2 => raw = bytes_of(&wire, "raw")?,
            3 => {
                let encoding = string(&wire, "contentEncoding")?;
                if !encoding.is_empty() {
                    return Err(ProtobufError::Encoding(encoding));
                }
            }
            _ => {}
        }
    }
    let Some((_, _, message)) = OBJECTS
        .iter()
        .find(|(v, k, _)| *v == api_version && *k == kind)
    else {
        return Err(ProtobufError::Kind { api_version, kind });
    };
    let mut object = decode_message(raw, message, "")?;
    object.insert("apiVersion".into(), Value::String(api_version));
    object.insert("kind".into(), Value::String(kind));
    Ok(Value::Object(object))
}

/// Reads `message`'s fields from `bytes`; `path` names the message in errors. A field
/// given twice keeps its last value (a repeated one collects them), as protobuf says.
fn decode_message(
    bytes: &[u8],
    message: Message,
    path: &str,
) -> Result<Map<String, Value>, ProtobufError> {
    let mut out = Map::new();
    let mut reader = Reader { rest: bytes };
    while let Some((number, wire)) = reader.field()? {
        let Some(&(_, name, shape)) = message.iter().find(|(n, _, _)| *n == number) else {
            continue;
        };
        let field = format!("{path}{name}");
        match shape {
            Shape::String => {
                out.insert(name.into(), Value::String(string(&wire, &field)?));
            }
            Shape::Strings => {
                let item = Value::String(string(&wire, &field)?);
                match out.entry(name).or_insert_with(|| Value::Array(Vec::new())) {
                    Value::Array(items) => items.push(item),
                    _ => unreachable!("a repeated field is always an array"),
                }
            }
            Shape::Message(inner) => {
                let value = decode_message(bytes_of(&wire, &field)?, inner, &format!("{field}."))?;
                out.insert(name.into(), Value::Object(value));
            }
        }
    }
    Ok(out)
}

fn bytes_of<'a>(wire: &Wire<'a>, field: &str) -> Result<&'a [u8], ProtobufError> {
    match wire {
        Wire::Bytes(bytes) => Ok(bytes),
        other => Err(ProtobufError::Mismatch {
            field: field.to_string(),
            wire: other.number(),
            expected: "a length-delimited field",
        }),
    }
}

fn string(wire: &Wire<'_>, field: &str) -> Result<String, ProtobufError> {
    let bytes = bytes_of(wire, field)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtobufError::Utf8(field.to_string()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Bytes as written in a test: hex, spaces ignored.
    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    /// `kubectl auth can-i get pods -n team --subresource log`, as kubectl 1.37 sent it
    /// (captured from a listener): the envelope, typeMeta, then the object with every
    /// ObjectMeta and ResourceAttributes string written even when empty.
    const CAN_I_GET_POD_LOGS: &str = "6b387300
        0a32 0a17 617574686f72697a6174696f6e2e6b38732e696f2f7631
             1217 53656c665375626a656374416363657373526576696577
        123c 0a10 0a00 1200 1a00 2200 2a00 3200 3800 4200
             121e 0a1c 0a04 7465616d 1203 676574 1a00 2200 2a04 706f6473 3203 6c6f67 3a00
             1a08 0800 1200 1a00 2000
        1a00 2200";

    /// `kubectl auth can-i delete pods/foo` (in namespace default).
    const CAN_I_DELETE_POD_FOO: &str = "6b3873000a320a17617574686f72697a6174696f6e2e6b38732e696f2f7631121753656c665375626a65637441636365737352657669657712420a100a0012001a0022002a0032003800420012240a220a0764656661756c74120664656c6574651a0022002a04706f647332003a03666f6f1a08080012001a0020001a002200";

    /// `kubectl auth can-i get /metrics`.
    const CAN_I_GET_METRICS: &str = "6b3873000a320a17617574686f72697a6174696f6e2e6b38732e696f2f7631121753656c665375626a656374416363657373526576696577122f0a100a0012001a0022002a003200380042001211120f0a082f6d65747269637312036765741a08080012001a0020001a002200";

    /// `kubectl auth can-i --list -n team`.
    const CAN_I_LIST: &str = "6b3873000a310a17617574686f72697a6174696f6e2e6b38732e696f2f7631121653656c665375626a65637452756c657352657669657712200a100a0012001a0022002a0032003800420012060a047465616d1a04180022001a002200";

    /// `kubectl auth whoami`.
    const WHOAMI: &str = "6b3873000a2d0a1861757468656e7469636174696f6e2e6b38732e696f2f7631121153656c665375626a656374526576696577121a0a100a0012001a0022002a0032003800420012060a040a0012001a002200";

    fn empty_meta() -> Value {
        json!({ "name": "", "generateName": "", "namespace": "" })
    }

    #[test]
    fn reads_what_kubectl_sends() {
        assert_eq!(
            decode_object(&hex(CAN_I_GET_POD_LOGS)).unwrap(),
            json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "metadata": empty_meta(),
                "spec": { "resourceAttributes": {
                    "namespace": "team", "verb": "get", "group": "", "version": "",
                    "resource": "pods", "subresource": "log", "name": "",
                } },
            })
        );
        let delete = decode_object(&hex(CAN_I_DELETE_POD_FOO)).unwrap();
        assert_eq!(
            delete["spec"]["resourceAttributes"],
            json!({ "namespace": "default", "verb": "delete", "group": "", "version": "",
                    "resource": "pods", "subresource": "", "name": "foo" })
        );
        let metrics = decode_object(&hex(CAN_I_GET_METRICS)).unwrap();
        assert_eq!(
            metrics["spec"],
            json!({ "nonResourceAttributes": { "path": "/metrics", "verb": "get" } })
        );
        assert_eq!(
            decode_object(&hex(CAN_I_LIST)).unwrap(),
            json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectRulesReview",
                "metadata": empty_meta(),
                "spec": { "namespace": "team" },
            })
        );
        assert_eq!(
            decode_object(&hex(WHOAMI)).unwrap(),
            json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "SelfSubjectReview",
                "metadata": empty_meta(),
            })
        );
    }

    /// Encodes a length-delimited field.
    fn field(number: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3) | 2, body.len() as u8];
        out.extend_from_slice(body);
        out
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [field(1, api_version.as_bytes()), field(2, kind.as_bytes())].concat();
        [
            MAGIC.to_vec(),
            field(1, &type_meta),
            field(2, raw),
            field(4, b"application/vnd.kubernetes.protobuf"),
        ]
        .concat()
    }

    #[test]
    fn reads_subject_access_reviews_with_groups_and_skips_unknown_fields() {
        let attributes = [field(2, b"get"), field(5, b"secrets"), field(7, b"s")].concat();
        let spec = [
            field(1, &attributes),
            field(3, b"system:node:node-1"),
            field(4, b"system:nodes"),
            field(4, b"system:authenticated"),
            // Unknown to the table: a varint, a fixed64, a fixed32, a message.
            vec![0x78, 0x96, 0x01],
            vec![0x81, 0x01, 1, 2, 3, 4, 5, 6, 7, 8],
            vec![0x8d, 0x01, 1, 2, 3, 4],
            field(5, &field(1, b"extra-key")),
        ]
        .concat();
        let body = envelope(
            "authorization.k8s.io/v1",
            "SubjectAccessReview",
            &field(2, &spec),
        );
        assert_eq!(
            decode_object(&body).unwrap(),
            json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "resourceAttributes": { "verb": "get", "resource": "secrets", "name": "s" },
                    "user": "system:node:node-1",
                    "groups": ["system:nodes", "system:authenticated"],
                },
            })
        );
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let whoami = hex(WHOAMI);
        assert_eq!(
            decode_object(&whoami[4..]).unwrap_err(),
            ProtobufError::Prefix
        );
        assert_eq!(
            decode_object(&whoami[..whoami.len() - 3]).unwrap_err(),
            ProtobufError::Truncated
        );
        assert_eq!(
            decode_object(&envelope("v1", "Pod", &[])).unwrap_err(),
            ProtobufError::Kind {
                api_version: "v1".into(),
                kind: "Pod".into()
            }
        );
        let mut gzipped = envelope("authentication.k8s.io/v1", "SelfSubjectReview", &[]);
        gzipped.extend(field(3, b"gzip"));
        assert_eq!(
            decode_object(&gzipped).unwrap_err(),
            ProtobufError::Encoding("gzip".into())
        );
        // A string field sent as a varint.
        let spec = field(2, &[0x08, 0x01]);
        let body = envelope("authorization.k8s.io/v1", "SelfSubjectRulesReview", &spec);
        assert_eq!(
            decode_object(&body).unwrap_err(),
            ProtobufError::Mismatch {
                field: "spec.namespace".into(),
                wire: 0,
                expected: "a length-delimited field"
            }
        );
        let bad_utf8 = envelope(
            "authorization.k8s.io/v1",
            "SelfSubjectRulesReview",
            &field(2, &field(1, &[0xff, 0xfe])),
        );
        assert_eq!(
            decode_object(&bad_utf8).unwrap_err(),
            ProtobufError::Utf8("spec.namespace".into())
        );
        let long_varint = [MAGIC.to_vec(), vec![0x08], vec![0xff; 11]].concat();
        assert_eq!(
            decode_object(&long_varint).unwrap_err(),
            ProtobufError::LongVarint
        );
        let group = [MAGIC.to_vec(), vec![0x0b]].concat();
        assert_eq!(
            decode_object(&group).unwrap_err(),
            ProtobufError::WireType(3)
        );
    }

    #[test]
    fn knows_its_media_type() {
        assert!(is_protobuf("application/vnd.kubernetes.protobuf"));
        assert!(is_protobuf(
            "Application/VND.Kubernetes.Protobuf; charset=x"
        ));
        assert!(!is_protobuf("application/json"));
        assert!(!is_protobuf("application/vnd.kubernetes.protobuf+x"));
    }
}
