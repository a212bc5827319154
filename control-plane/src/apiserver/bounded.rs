//! Decoding untrusted JSON and YAML into JSON values within fixed bounds.
//!
//! A body's size is capped before it is read, but its size says little about what it
//! decodes to: a YAML alias replays its anchor's whole subtree, so a few kilobytes of
//! aliases to a large anchor decode to gigabytes (billion laughs, CVE-2019-11253).
//! serde_yaml stops only exponential chains (at most 100 alias jumps per event), not a
//! flat list of aliases to one big anchor, which grows quadratically. So every value is
//! built here by one visitor that charges each node against a budget and refuses it,
//! mid-parse, once the budget is spent; and refuses nesting deeper than [`MAX_DEPTH`].
//!
//! The charge is the bytes of each string (keys included) and one for every other node.
//! Text without aliases decodes within its own length (plus a few units) under that
//! charge, so [`budget_for`] a body of n bytes — 2n + 64 KiB — refuses only what
//! aliases add beyond a modest reuse, and keeps what one request can make the server
//! build within a small multiple of what its bytes could say plainly. (Clients such as
//! kubectl expand YAML to JSON before sending; aliases reaching the server are rare.)

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The deepest nesting of arrays and objects accepted, counting the top level as 1.
///
/// Below serde_json's and serde_yaml's recursion limits (128), so a stored object can
/// always be read back, and far above what any Kubernetes object needs.
pub const MAX_DEPTH: usize = 100;

/// What aliases may add to a document beyond its own length: room for modest reuse
/// (a shared block of labels or environment), not for multiplication.
pub const ALIAS_ALLOWANCE: usize = 64 * 1024;

/// The budget for decoding `len` bytes of text: twice its length plus
/// [`ALIAS_ALLOWANCE`]. Text without aliases always fits.
/// The longest YAML body that is not JSON: serde_yaml spends about a second of CPU per
/// MiB, so this bounds what one request can cost, where JSON (kubectl's and every client
/// library's format) decodes a hundred times faster and is bounded by the body limit.
pub const MAX_YAML_BYTES: usize = 1024 * 1024;

pub fn budget_for(len: usize) -> usize {
    len.saturating_mul(2).saturating_add(ALIAS_ALLOWANCE)
}

/// Why a document was refused; the message names the limit it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not valid JSON or YAML, or a shape JSON cannot hold.
    #[error("{0}")]
    Syntax(String),
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("nested deeper than the limit of {MAX_DEPTH} levels")]
    TooDeep,
    /// YAML that is not JSON, longer than [`MAX_YAML_BYTES`].
    #[error(
        "YAML longer than the limit of {MAX_YAML_BYTES} bytes for YAML that is not JSON (send larger objects as JSON, as kubectl does)"
    )]
    YamlTooLong,
    /// Decodes to more than the budget (aliases, or text longer than the budget).
    #[error(
        "too large once decoded: more than the limit of {budget} bytes (each string's bytes and one for every other value, after YAML aliases are expanded)"
    )]
    TooLarge { budget: usize },
}

/// One JSON document from `bytes`, within `budget` and [`MAX_DEPTH`].
pub fn json(bytes: &[u8], budget: usize) -> Result<Value, DecodeError> {
    let charge = Budget::new(budget);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = charge.seed().deserialize(&mut deserializer);
    let value = charge.finish(value)?;
    deserializer
        .end()
        .map_err(|e| DecodeError::Syntax(e.to_string()))?;
    Ok(value)
}

/// One YAML document from `bytes`, within `budget` (after aliases) and [`MAX_DEPTH`].
///
/// Text that is JSON (as most clients send, whatever the content type) takes the JSON
/// parser, which is fast and stops at the first level too deep.
pub fn yaml(bytes: &[u8], budget: usize) -> Result<Value, DecodeError> {
    if bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| matches!(b, b'{' | b'['))
    {
        match json(bytes, budget) {
            Err(DecodeError::Syntax(_)) => {} // YAML flow style, such as `{a: 1}`
            decoded => return decoded,
        }
    }
    if bytes.len() > MAX_YAML_BYTES {
        return Err(DecodeError::YamlTooLong);
    }
    if flow_too_deep(bytes).is_some() {
        return Err(DecodeError::TooDeep);
    }
    let charge = Budget::new(budget);
    let value = charge
        .seed()
        .deserialize(serde_yaml::Deserializer::from_slice(bytes));
    charge.finish(value)
}

/// Where YAML's flow collections (`[`, `{`) first nest deeper than [`MAX_DEPTH`], found
/// before libyaml sees the text.
///
/// serde_yaml parses a whole document into events before any visitor can stop it, and
/// libyaml's cost per event grows with the nesting: a 3 MiB body of `[` takes about 12 s
/// of a core before the recursion limit is even checked. This scan is linear and cheap.
/// It counts every `[` and `{` outside quoted scalars and comments (even ones inside a
/// plain scalar, which libyaml would take literally), so it errs towards refusing.
/// Block nesting needs indentation, which costs quadratic bytes, so it is left to the
/// depth check of the visitor.
fn flow_too_deep(bytes: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    // Whether a token may start here: quotes and `#` mean something only there.
    let mut token_start = true;
    let mut i = 0;
    while i < bytes.len() {
        let blank_after = bytes
            .get(i + 1)
            .is_none_or(|b| b.is_ascii_whitespace() || b",[]{}".contains(b));
        match bytes[i] {
            b' ' | b'\t' | b'\r' | b'\n' => token_start = true,
            b'#' if token_start => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            quote @ (b'"' | b'\'') if token_start => {
                i += 1;
                while i < bytes.len() {
                    match (quote, bytes[i], bytes.get(i + 1)) {
                        // An escaped character; in single quotes, `''` is one quote.
                        (b'"', b'\\', _) | (b'\'', b'\'', Some(b'\'')) => i += 2,
                        (_, b, _) if b == quote => break,
                        _ => i += 1,
                    }
                }
                token_start = false;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(i);
                }
                token_start = true;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                token_start = true;
            }
            b',' => token_start = true,
            b':' | b'-' | b'?' if blank_after => token_start = true,
            _ => token_start = false,
        }
        i += 1;
    }
    None
}

/// Every document of a multi-document YAML text (`---` separated), with one `budget`
/// shared by all of them: many small documents cannot add up to more than one large one.
/// An error carries the index of the document that failed.
pub fn yaml_documents(text: &str, budget: usize) -> Result<Vec<Value>, (usize, DecodeError)> {
    let charge = Budget::new(budget);
    let mut out = Vec::new();
    if let Some(at) = flow_too_deep(text.as_bytes()) {
        // The document it is in: one more for every `---` line before it but the first.
        let before = &text[..at];
        let markers = before.lines().filter(|l| l.starts_with("---")).count();
        let leading = usize::from(text.starts_with("---"));
        return Err((markers.saturating_sub(leading), DecodeError::TooDeep));
    }
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = charge.seed().deserialize(document);
        out.push(charge.finish(value).map_err(|e| (index, e))?);
    }
    Ok(out)
}

/// Measures a value built by other means (a patched object, what a JSON patch copies)
/// by the same bounds: its charge as described above, refused once over `budget`
/// (so it costs at most `budget` steps), or refused if deeper than [`MAX_DEPTH`].
pub fn measure(value: &Value, budget: usize) -> Result<usize, DecodeError> {
    let mut spent = 0usize;
    let mut stack = vec![(value, 1usize)];
    while let Some((value, depth)) = stack.pop() {
        spent = spent.saturating_add(match value {
            Value::String(s) => s.len().max(1),
            Value::Object(map) => map.keys().map(|k| k.len().max(1)).sum::<usize>() + 1,
            _ => 1,
        });
        if spent > budget {
            return Err(DecodeError::TooLarge { budget });
        }
        match value {
            Value::Array(_) | Value::Object(_) if depth > MAX_DEPTH => {
                return Err(DecodeError::TooDeep);
            }
            Value::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            Value::Object(map) => stack.extend(map.values().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    Ok(spent)
}

/// What is left to spend, and whether the last refusal was ours (the deserializer
/// wraps our error in its own type, which loses the variant).
struct Budget {
    limit: usize,
    left: Cell<usize>,
    refused: Cell<Option<DecodeError>>,
}

impl Budget {
    fn new(limit: usize) -> Budget {
        Budget {
            limit,
            left: Cell::new(limit),
            refused: Cell::new(None),
        }
    }

    fn seed(&self) -> Seed<'_> {
        Seed {
            budget: self,
            depth: 1,
        }
    }

    fn charge<E: de::Error>(&self, cost: usize) -> Result<(), E> {
        match self.left.get().checked_sub(cost) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => Err(self.refuse(DecodeError::TooLarge { budget: self.limit })),
        }
    }

    fn refuse<E: de::Error>(&self, error: DecodeError) -> E {
        let message = error.to_string();
        self.refused.set(Some(error));
        E::custom(message)
    }

    /// The decoded value, or the error to report: ours if a limit stopped the parse.
    fn finish<E: fmt::Display>(&self, result: Result<Value, E>) -> Result<Value, DecodeError> {
        result.map_err(|e| {
            self.refused
                .take()
                .unwrap_or_else(|| DecodeError::Syntax(e.to_string()))
        })
    }
}

/// Builds one value at `depth`, charging `budget` as it goes.
#[derive(Clone, Copy)]
struct Seed<'b> {
    budget: &'b Budget,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Seed<'_> {
    fn nested<E: de::Error>(self) -> Result<Self, E> {
        self.budget.charge(1)?;
        if self.depth > MAX_DEPTH {
            return Err(self.budget.refuse(DecodeError::TooDeep));
        }
        Ok(Seed {
            budget: self.budget,
            depth: self.depth + 1,
        })
    }

    fn string<E: de::Error>(self, s: &str) -> Result<Value, E> {
        self.budget.charge(s.len().max(1))?;
        Ok(Value::String(s.to_owned()))
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.budget.charge(1)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.budget.charge(1)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.budget.charge(1)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        match i64::try_from(v) {
            Ok(v) => self.visit_i64(v),
            Err(_) => Err(E::custom(format!(
                "the integer {v} is out of range of a 64-bit integer"
            ))),
        }
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format!(
                "the integer {v} is out of range of a 64-bit integer"
            ))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.budget.charge(1)?;
        // As serde_json does: JSON has no NaN or infinity.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.string(v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.budget.charge(1)?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut object = Map::new();
        while let Some(key) = map.next_key_seed(Key(self.budget))? {
            let value = map.next_value_seed(inner)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// An object key: a string, charged like one. YAML keys that are plain numbers or
/// booleans arrive as their text, as serde_json's own `Value` takes them.
#[derive(Clone, Copy)]
struct Key<'b>(&'b Budget);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.0.charge(v.len().max(1))?;
        Ok(v.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BUDGET: usize = 3 * 1024 * 1024;

    #[test]
    fn yaml_that_is_not_json_is_bounded_and_json_is_not() {
        let mut text = String::from("items:\n");
        while text.len() <= MAX_YAML_BYTES {
            text.push_str("- { name: an-item-with-a-long-name, value: 12345 }\n");
        }
        assert_eq!(
            yaml(text.as_bytes(), budget_for(text.len())),
            Err(DecodeError::YamlTooLong)
        );
        let json =
            serde_json::to_vec(&serde_json::json!({ "a": "x".repeat(MAX_YAML_BYTES) })).unwrap();
        assert!(
            yaml(&json, budget_for(json.len())).is_ok(),
            "JSON sent as YAML"
        );
    }

    #[test]
    fn decodes_what_serde_json_decodes() {
        let text = br#"{"a":[1,-2,3.5,true,null,"x"],"b":{"c":{}},"d":[]}"#;
        let expected: Value = serde_json::from_slice(text).unwrap();
        assert_eq!(json(text, BUDGET).unwrap(), expected);
        assert_eq!(yaml(text, BUDGET).unwrap(), expected);
        assert_eq!(
            yaml(b"a: 1\nb: [x, 2]\n3: c\n", BUDGET).unwrap(),
            json!({ "a": 1, "b": ["x", 2], "3": "c" })
        );
    }

    #[test]
    fn text_without_aliases_fits_a_budget_of_its_own_length() {
        for text in [
            &b"[[],[],{},[0,0,0]]"[..],
            b"{a,b,c}",
            b"- \n- \n- \n",
            b"a:\nb:\nc:\n",
            b"[~,~,~]",
            b"{\"\":\"\",\"a\":\"\"}",
        ] {
            assert!(
                yaml(text, text.len()).is_ok(),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn refuses_a_flat_alias_bomb_that_serde_yaml_lets_through() {
        // 2,000 aliases of a 2,000-item anchor: 4 million values from 20 kB of text.
        let anchor = vec!["x"; 2000].join(",");
        let aliases = vec!["*a"; 2000].join(",");
        let text = format!("a: &a [{anchor}]\nb: [{aliases}]\n");
        let budget = budget_for(text.len());
        assert_eq!(
            yaml(text.as_bytes(), budget),
            Err(DecodeError::TooLarge { budget })
        );
        // Modest reuse is fine: the anchor ten times.
        let text = format!("a: &a [{anchor}]\nb: [{}]\n", ["*a"; 10].join(","));
        assert_eq!(
            yaml(text.as_bytes(), budget_for(text.len())).unwrap()["b"][9][1999],
            "x"
        );
    }

    #[test]
    fn refuses_billion_laughs() {
        let mut text = String::from("a0: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(",");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let error = yaml(text.as_bytes(), BUDGET).unwrap_err();
        // Either our budget or serde_yaml's repetition limit; never a decoded bomb.
        assert!(
            matches!(error, DecodeError::TooLarge { .. })
                || error.to_string().contains("repetition limit"),
            "{error}"
        );
    }

    #[test]
    fn refuses_deep_nesting_naming_the_limit() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(json(ok.as_bytes(), BUDGET).is_ok());
        assert!(yaml(ok.as_bytes(), BUDGET).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(json(deep.as_bytes(), BUDGET), Err(DecodeError::TooDeep));
        assert_eq!(yaml(deep.as_bytes(), BUDGET), Err(DecodeError::TooDeep));
        let bomb = "[".repeat(100_000);
        assert_eq!(json(bomb.as_bytes(), BUDGET), Err(DecodeError::TooDeep));
        assert_eq!(yaml(bomb.as_bytes(), BUDGET), Err(DecodeError::TooDeep));
        for bomb in [
            format!("a: {bomb}"),
            format!("- {}", "{a: ".repeat(100_000)),
        ] {
            assert_eq!(yaml(bomb.as_bytes(), BUDGET), Err(DecodeError::TooDeep));
        }
        let block: String = (0..=MAX_DEPTH)
            .map(|i| format!("{}a:\n", " ".repeat(i)))
            .collect();
        assert_eq!(yaml(block.as_bytes(), BUDGET), Err(DecodeError::TooDeep));
    }

    #[test]
    fn measure_charges_as_decoding_does() {
        for text in [
            &br#"{"ab":["xyz",1,null,{}],"":true}"#[..],
            b"[[[]]]",
            b"\"\"",
        ] {
            let value = json(text, BUDGET).unwrap();
            let charge = measure(&value, BUDGET).unwrap();
            assert!(json(text, charge).is_ok());
            assert_eq!(
                json(text, charge - 1),
                Err(DecodeError::TooLarge { budget: charge - 1 })
            );
            assert_eq!(
                measure(&value, charge - 1),
                Err(DecodeError::TooLarge { budget: charge - 1 })
            );
        }
        let mut deep = json!(1);
        for _ in 0..MAX_DEPTH {
            deep = json!([deep]);
        }
        assert!(measure(&deep, BUDGET).is_ok());
        assert_eq!(
            measure(&json!({ "a": deep }), BUDGET),
            Err(DecodeError::TooDeep)
        );
    }

    #[test]
    fn a_budget_is_shared_by_all_documents() {
        let text = "a: xxxxxxxxxx\n---\nb: yyyyyyyyyy\n";
        assert_eq!(yaml_documents(text, 100).unwrap().len(), 2);
        assert_eq!(
            yaml_documents(text, 15).unwrap_err(),
            (1, DecodeError::TooLarge { budget: 15 })
        );
    }

    #[test]
    fn names_the_document_nested_too_deep() {
        let deep = "[".repeat(MAX_DEPTH + 1);
        for (text, index) in [
            (format!("a: 1\n---\nb: {deep}"), 1),
            (format!("---\na: 1\n---\nb: 2\n---\n{deep}"), 2),
            (format!("a: {deep}\n---\nb: 2"), 0),
        ] {
            assert_eq!(
                yaml_documents(&text, BUDGET),
                Err((index, DecodeError::TooDeep)),
                "{text:.30}"
            );
        }
    }

    #[test]
    fn the_flow_scan_ignores_brackets_in_quotes_and_comments() {
        let many = "[".repeat(MAX_DEPTH + 1);
        for text in [
            format!("a: \"{many}\"\n"),
            format!("a: '{many}'\n"),
            format!("a: 'it''s {many}'\n"),
            format!("a: \"\\\" {many}\"\n"),
            format!("a: 1 # {many}\nb: 2\n"),
            format!(
                "a: [\"{many}\", '{many}', {{}}, {}]\n",
                vec!["[x]"; 200].join(",")
            ),
        ] {
            assert!(yaml(text.as_bytes(), BUDGET).is_ok(), "{text:.40}");
        }
        // A closing bracket inside quotes does not hide real opening ones.
        let sneaky = format!("a: {}", "[ \"]\", ".repeat(MAX_DEPTH + 1));
        assert_eq!(yaml(sneaky.as_bytes(), BUDGET), Err(DecodeError::TooDeep));
    }

    #[test]
    fn syntax_errors_keep_the_parser_message() {
        assert!(matches!(json(b"{", BUDGET), Err(DecodeError::Syntax(_))));
        assert!(matches!(json(b"{} x", BUDGET), Err(DecodeError::Syntax(_))));
        assert!(matches!(yaml(b"a: [", BUDGET), Err(DecodeError::Syntax(_))));
    }
}
