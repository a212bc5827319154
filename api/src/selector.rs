//! Label and field selectors: which objects a controller owns, what a list or watch
//! returns.
//!
//! [`LabelSelector`] is the structured form objects carry (`spec.selector` of a
//! Deployment); [`Selector`] is the string form of `?labelSelector=` (`app=web,tier in
//! (a,b)`) and what both turn into for matching; [`FieldSelector`] is the string form
//! of `?fieldSelector=` (`spec.nodeName=node-1`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::validation::{
    FieldError, invalid_each, is_qualified_name, is_valid_label_value, validate_label_name,
    validate_labels,
};

/// The structured label selector of `metav1.LabelSelector`: every `matchLabels` pair
/// and every `matchExpressions` requirement must hold. An empty selector matches
/// everything, as in Kubernetes (where a selector is optional, absence is `None`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// `key: value` pairs the labels must contain.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub match_labels: BTreeMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One requirement of a [`LabelSelector`]: `key` `operator` (`In`, `NotIn`, `Exists`,
/// `DoesNotExist`) `values`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub key: String,
    /// Kept as text so that an unknown operator is a validation error naming the
    /// field, not a decoding failure.
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub operator: String,
    /// Required for `In` and `NotIn`, forbidden for `Exists` and `DoesNotExist`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// A selector of exactly these `key=value` pairs.
    pub fn from_labels<K: Into<String>, V: Into<String>>(
        labels: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        LabelSelector {
            match_labels: labels
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            match_expressions: Vec::new(),
        }
    }

    /// Whether the selector has no requirement at all (and so matches everything).
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Whether `labels` satisfy every requirement. A requirement with an unknown
    /// operator matches nothing (validation rejects those before they are stored).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        Selector::from(self).matches(labels)
    }

    /// Checks the selector as Kubernetes' `ValidateLabelSelector`: valid label keys and
    /// values, known operators, values given exactly where the operator needs them.
    pub fn validate(&self, path: &str) -> Vec<FieldError> {
        let mut errors = validate_labels(&self.match_labels, &format!("{path}.matchLabels"));
        for (i, requirement) in self.match_expressions.iter().enumerate() {
            let path = format!("{path}.matchExpressions[{i}]");
            match requirement.operator.as_str() {
                "In" | "NotIn" => {
                    if requirement.values.is_empty() {
                        errors.push(FieldError::required(
                            format!("{path}.values"),
                            "must be specified when `operator` is 'In' or 'NotIn'",
                        ));
                    }
                }
                "Exists" | "DoesNotExist" => {
                    if !requirement.values.is_empty() {
                        errors.push(FieldError::forbidden(
                            format!("{path}.values"),
                            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                        ));
                    }
                }
                other => {
                    errors.push(FieldError::invalid(
                        format!("{path}.operator"),
                        other,
                        "not a valid selector operator",
                    ));
                }
            }
            errors.extend(validate_label_name(
                &requirement.key,
                &format!("{path}.key"),
            ));
            for (j, value) in requirement.values.iter().enumerate() {
                errors.extend(invalid_each(
                    &format!("{path}.values[{j}]"),
                    value,
                    is_valid_label_value(value),
                ));
            }
        }
        errors
    }
}

/// The string form: `app=web,tier in (back,front)`, requirements sorted by key.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Selector::from(self).fmt(f)
    }
}

/// How a [`Requirement`] compares a label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    /// `key=value`: the label is there with this value.
    Equals,
    /// `key==value`: the same as `=`.
    DoubleEquals,
    /// `key!=value`: the label is absent or has another value.
    NotEquals,
    /// `key in (a,b)`: the label is there with one of the values.
    In,
    /// `key notin (a,b)`: the label is absent or has none of the values.
    NotIn,
    /// `key`: the label is there.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
    /// `key>5`: the label is there and an integer greater than the value.
    GreaterThan,
    /// `key<5`: the label is there and an integer less than the value.
    LessThan,
}

/// One requirement of a [`Selector`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Sorted and without duplicates; empty for `Exists` and `DoesNotExist`, one value
    /// for the comparisons.
    pub values: Vec<String>,
}

impl Requirement {
    fn new(key: impl Into<String>, operator: Operator, values: Vec<String>) -> Self {
        let mut values = values;
        values.sort();
        values.dedup();
        Requirement {
            key: key.into(),
            operator,
            values,
        }
    }

    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let label = labels.get(&self.key);
        let listed = |v: &String| self.values.contains(v);
        let compare = |wanted: std::cmp::Ordering| {
            let (Some(label), Some(value)) = (label, self.values.first()) else {
                return false;
            };
            match (label.parse::<i64>(), value.parse::<i64>()) {
                (Ok(label), Ok(value)) => label.cmp(&value) == wanted,
                _ => false,
            }
        };
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => label.is_some_and(listed),
            Operator::NotEquals | Operator::NotIn => !label.is_some_and(listed),
            Operator::Exists => label.is_some(),
            Operator::DoesNotExist => label.is_none(),
            Operator::GreaterThan => compare(std::cmp::Ordering::Greater),
            Operator::LessThan => compare(std::cmp::Ordering::Less),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        let first = self.values.first().map(String::as_str).unwrap_or("");
        match self.operator {
            Operator::Equals => write!(f, "{key}={first}"),
            Operator::DoubleEquals => write!(f, "{key}=={first}"),
            Operator::NotEquals => write!(f, "{key}!={first}"),
            Operator::In => write!(f, "{key} in ({})", self.values.join(",")),
            Operator::NotIn => write!(f, "{key} notin ({})", self.values.join(",")),
            Operator::Exists => write!(f, "{key}"),
            Operator::DoesNotExist => write!(f, "!{key}"),
            Operator::GreaterThan => write!(f, "{key}>{first}"),
            Operator::LessThan => write!(f, "{key}<{first}"),
        }
    }
}

/// A label selector ready for matching, parsed from its string form (`?labelSelector=`)
/// or converted from a [`LabelSelector`]. Every requirement must hold; no requirement
/// matches everything.
///
/// The grammar is Kubernetes': comma-separated requirements, each `key=value`,
/// `key==value`, `key!=value`, `key in (a,b)`, `key notin (a)`, `key`, `!key`,
/// `key>1` or `key<1`, with whitespace allowed between tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    /// Sorted by key.
    pub requirements: Vec<Requirement>,
}

impl Selector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Selector::default()
    }

    /// Whether the selector has no requirement (and so matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    fn sorted(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Selector { requirements }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            requirement.fmt(f)?;
        }
        Ok(())
    }
}

/// Converts the structured form. A requirement with an unknown operator becomes
/// `key in ()`, which matches nothing, as Kubernetes refuses to match with it.
impl From<&LabelSelector> for Selector {
    fn from(selector: &LabelSelector) -> Self {
        let mut requirements: Vec<Requirement> = selector
            .match_labels
            .iter()
            .map(|(k, v)| Requirement::new(k.clone(), Operator::Equals, vec![v.clone()]))
            .collect();
        for expression in &selector.match_expressions {
            let (operator, values) = match expression.operator.as_str() {
                "In" => (Operator::In, expression.values.clone()),
                "NotIn" => (Operator::NotIn, expression.values.clone()),
                "Exists" => (Operator::Exists, Vec::new()),
                "DoesNotExist" => (Operator::DoesNotExist, Vec::new()),
                _ => (Operator::In, Vec::new()),
            };
            requirements.push(Requirement::new(expression.key.clone(), operator, values));
        }
        Selector::sorted(requirements)
    }
}

impl From<LabelSelector> for Selector {
    fn from(selector: LabelSelector) -> Self {
        Selector::from(&selector)
    }
}

/// Why a selector string could not be parsed; the message names the offending part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectorError {
    pub message: String,
}

impl SelectorError {
    fn new(message: impl Into<String>) -> Self {
        SelectorError {
            message: message.into(),
        }
    }
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SelectorError {}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    Greater,
    Less,
    Open,
    Close,
    Comma,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Token::Ident(s) => s,
            Token::Bang => "!",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::Greater => ">",
            Token::Less => "<",
            Token::Open => "(",
            Token::Close => ")",
            Token::Comma => ",",
        })
    }
}

fn is_special(c: char) -> bool {
    c.is_whitespace() || matches!(c, ',' | '=' | '!' | '(' | ')' | '<' | '>')
}

fn lex(input: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        let token = match c {
            c if c.is_whitespace() => continue,
            ',' => Token::Comma,
            '(' => Token::Open,
            ')' => Token::Close,
            '<' => Token::Less,
            '>' => Token::Greater,
            '=' if chars.next_if(|&(_, c)| c == '=').is_some() => Token::DoubleEquals,
            '=' => Token::Equals,
            '!' if chars.next_if(|&(_, c)| c == '=').is_some() => Token::NotEquals,
            '!' => Token::Bang,
            _ => {
                let mut end = start + c.len_utf8();
                while let Some((i, c)) = chars.next_if(|&(_, c)| !is_special(c)) {
                    end = i + c.len_utf8();
                }
                Token::Ident(input[start..end].to_string())
            }
        };
        tokens.push(token);
    }
    tokens
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        token
    }

    fn found(token: Option<&Token>) -> String {
        match token {
            Some(token) => format!("found '{token}'"),
            None => "found end of input".to_string(),
        }
    }

    fn key(&mut self) -> Result<String, SelectorError> {
        match self.next() {
            Some(Token::Ident(key)) => {
                let problems = is_qualified_name(&key);
                if problems.is_empty() {
                    Ok(key)
                } else {
                    Err(SelectorError::new(format!(
                        "invalid label key {key:?}: {}",
                        problems.join("; ")
                    )))
                }
            }
            other => Err(SelectorError::new(format!(
                "{}, expected: identifier",
                Self::found(other.as_ref())
            ))),
        }
    }

    fn value(key: &str, value: String) -> Result<String, SelectorError> {
        let problems = is_valid_label_value(&value);
        if problems.is_empty() {
            Ok(value)
        } else {
            Err(SelectorError::new(format!(
                "invalid label value: {value:?}: at key: {key:?}: {}",
                problems.join("; ")
            )))
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        if self.peek() == Some(&Token::Bang) {
            self.pos += 1;
            let key = self.key()?;
            return Ok(Requirement::new(key, Operator::DoesNotExist, Vec::new()));
        }
        let key = self.key()?;
        let operator = match self.peek() {
            None | Some(Token::Comma) => {
                return Ok(Requirement::new(key, Operator::Exists, Vec::new()));
            }
            Some(Token::Equals) => Operator::Equals,
            Some(Token::DoubleEquals) => Operator::DoubleEquals,
            Some(Token::NotEquals) => Operator::NotEquals,
            Some(Token::Greater) => Operator::GreaterThan,
            Some(Token::Less) => Operator::LessThan,
            Some(Token::Ident(word)) if word == "in" => Operator::In,
            Some(Token::Ident(word)) if word == "notin" => Operator::NotIn,
            other => {
                return Err(SelectorError::new(format!(
                    "{}, expected: '=', '!=', '==', 'in', 'notin' after key {key:?}",
                    Self::found(other)
                )));
            }
        };
        self.pos += 1;
        match operator {
            Operator::In | Operator::NotIn => {
                let values = self.value_set(&key)?;
                if values.is_empty() {
                    return Err(SelectorError::new(format!(
                        "for 'in', 'notin' operators, values set can't be empty (at key {key:?})"
                    )));
                }
                Ok(Requirement::new(key, operator, values))
            }
            Operator::GreaterThan | Operator::LessThan => match self.next() {
                Some(Token::Ident(value)) if value.parse::<i64>().is_ok() => {
                    Ok(Requirement::new(key, operator, vec![value]))
                }
                other => Err(SelectorError::new(format!(
                    "{}, expected: an integer after {key:?} and '>' or '<'",
                    Self::found(other.as_ref())
                ))),
            },
            _ => {
                // `key=` compares with the empty value.
                let value = match self.peek() {
                    None | Some(Token::Comma) => String::new(),
                    Some(Token::Ident(_)) => match self.next() {
                        Some(Token::Ident(value)) => value,
                        _ => unreachable!("peeked an identifier"),
                    },
                    other => {
                        return Err(SelectorError::new(format!(
                            "{}, expected: a value after {key:?} and '{}'",
                            Self::found(other),
                            match operator {
                                Operator::NotEquals => "!=",
                                Operator::DoubleEquals => "==",
                                _ => "=",
                            }
                        )));
                    }
                };
                Ok(Requirement::new(
                    key.clone(),
                    operator,
                    vec![Self::value(&key, value)?],
                ))
            }
        }
    }

    /// `(a, b, c)`; empty values between commas are the empty string, as in Kubernetes.
    fn value_set(&mut self, key: &str) -> Result<Vec<String>, SelectorError> {
        match self.next() {
            Some(Token::Open) => {}
            other => {
                return Err(SelectorError::new(format!(
                    "{}, expected: '(' after {key:?} and 'in' or 'notin'",
                    Self::found(other.as_ref())
                )));
            }
        }
        let mut values = Vec::new();
        if self.peek() == Some(&Token::Close) {
            self.pos += 1;
            return Ok(values);
        }
        loop {
            let value = match self.peek() {
                Some(Token::Ident(_)) => match self.next() {
                    Some(Token::Ident(value)) => value,
                    _ => unreachable!("peeked an identifier"),
                },
                Some(Token::Comma | Token::Close) => String::new(),
                other => {
                    return Err(SelectorError::new(format!(
                        "{}, expected: a value in the set of {key:?}",
                        Self::found(other)
                    )));
                }
            };
            values.push(Self::value(key, value)?);
            match self.next() {
                Some(Token::Comma) => continue,
                Some(Token::Close) => return Ok(values),
                other => {
                    return Err(SelectorError::new(format!(
                        "{}, expected: ',' or ')' in the set of {key:?}",
                        Self::found(other.as_ref())
                    )));
                }
            }
        }
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    /// Parses the string form; an empty or blank string is the selector of everything.
    fn from_str(input: &str) -> Result<Self, SelectorError> {
        let mut parser = Parser {
            tokens: lex(input),
            pos: 0,
        };
        let mut requirements = Vec::new();
        if parser.tokens.is_empty() {
            return Ok(Selector::everything());
        }
        loop {
            requirements.push(parser.requirement()?);
            match parser.next() {
                None => break,
                Some(Token::Comma) => continue,
                other => {
                    return Err(SelectorError::new(format!(
                        "{}, expected: ','",
                        Parser::found(other.as_ref())
                    )));
                }
            }
        }
        Ok(Selector::sorted(requirements))
    }
}

/// How a [`FieldRequirement`] compares a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldOperator {
    /// `field=value` or `field==value`.
    Equals,
    /// `field!=value`.
    NotEquals,
}

/// One requirement of a [`FieldSelector`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    /// `metadata.name`, `spec.nodeName`, ...
    pub field: String,
    pub operator: FieldOperator,
    /// Unescaped.
    pub value: String,
}

/// A field selector (`?fieldSelector=metadata.name=x,spec.nodeName!=y`): every
/// requirement must hold. Which fields a kind supports is the server's business; see
/// [`FieldSelector::fields`]. In values, `\,`, `\=` and `\\` escape `,`, `=` and `\`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Whether the object whose fields `get` reads satisfies every requirement. `get`
    /// returns a field's value as text; an absent field (`None`) counts as `""`, so
    /// `spec.nodeName=` selects unscheduled pods.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let value = get(&r.field).unwrap_or_default();
            match r.operator {
                FieldOperator::Equals => value == r.value,
                FieldOperator::NotEquals => value != r.value,
            }
        })
    }

    /// The field names the selector uses, in order, so the server can reject fields
    /// the kind does not support.
    pub fn fields(&self) -> Vec<&str> {
        self.requirements.iter().map(|r| r.field.as_str()).collect()
    }

    /// Whether the selector has no requirement (and so matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

/// Splits on commas not escaped by `\`.
fn split_unescaped(input: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in input.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                parts.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&input[start..]);
    parts
}

fn unescape_field_value(value: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(c @ ('\\' | ',' | '=')) => out.push(c),
                Some(other) => {
                    return Err(SelectorError::new(format!(
                        "invalid field selector value {value:?}: invalid escape sequence '\\{other}'"
                    )));
                }
                None => {
                    return Err(SelectorError::new(format!(
                        "invalid field selector value {value:?}: unterminated escape sequence"
                    )));
                }
            },
            '=' | ',' => {
                return Err(SelectorError::new(format!(
                    "invalid field selector value {value:?}: unescaped '{c}' in value"
                )));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn escape_field_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl FromStr for FieldSelector {
    type Err = SelectorError;

    /// Parses `field=value,field!=value`; an empty or blank string selects everything.
    fn from_str(input: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for term in split_unescaped(input) {
            if term.trim().is_empty() {
                continue;
            }
            // The first `!=`, `==` or `=` splits field from value, as in Kubernetes.
            let split = term.char_indices().find_map(|(i, _)| {
                let rest = &term[i..];
                [
                    ("!=", FieldOperator::NotEquals),
                    ("==", FieldOperator::Equals),
                    ("=", FieldOperator::Equals),
                ]
                .into_iter()
                .find(|(op, _)| rest.starts_with(op))
                .map(|(op, operator)| (&term[..i], operator, &term[i + op.len()..]))
            });
            let Some((field, operator, value)) = split else {
                return Err(SelectorError::new(format!(
                    "{term:?}: expected field=value, field==value or field!=value"
                )));
            };
            let field = field.trim();
            if field.is_empty() {
                return Err(SelectorError::new(format!(
                    "{term:?}: the field name is empty"
                )));
            }
            requirements.push(FieldRequirement {
                field: field.to_string(),
                operator,
                value: unescape_field_value(value.trim())?,
            });
        }
        Ok(FieldSelector { requirements })
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match r.operator {
                FieldOperator::Equals => "=",
                FieldOperator::NotEquals => "!=",
            };
            write!(f, "{}{op}{}", r.field, escape_field_value(&r.value))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sel(text: &str) -> Selector {
        text.parse()
            .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn err(text: &str) -> String {
        text.parse::<Selector>().expect_err(text).to_string()
    }

    #[test]
    fn equality_operators() {
        let web = labels(&[("app", "web"), ("tier", "front")]);
        assert!(sel("app=web").matches(&web));
        assert!(sel("app==web").matches(&web));
        assert!(!sel("app=db").matches(&web));
        assert!(sel("app!=db").matches(&web));
        assert!(!sel("app!=web").matches(&web));
        assert!(
            sel("missing!=x").matches(&web),
            "!= matches an absent label"
        );
        assert!(!sel("missing=x").matches(&web));
        assert!(sel("app=web,tier=front").matches(&web));
        assert!(!sel("app=web,tier=back").matches(&web));
        assert!(sel("empty=").matches(&labels(&[("empty", "")])));
        assert!(!sel("empty=").matches(&web));
    }

    #[test]
    fn set_operators() {
        let web = labels(&[("app", "web"), ("tier", "front")]);
        assert!(sel("tier in (back, front)").matches(&web));
        assert!(!sel("tier in (back)").matches(&web));
        assert!(!sel("missing in (x)").matches(&web));
        assert!(sel("tier notin (back)").matches(&web));
        assert!(!sel("tier notin (back,front)").matches(&web));
        assert!(sel("missing notin (x)").matches(&web));
        assert!(sel("app").matches(&web));
        assert!(!sel("missing").matches(&web));
        assert!(sel("!missing").matches(&web));
        assert!(!sel("!app").matches(&web));
        assert!(
            sel("tier in (front,)").matches(&web),
            "an empty value between commas is allowed"
        );
    }

    #[test]
    fn comparison_operators() {
        let five = labels(&[("generation", "5")]);
        assert!(sel("generation>4").matches(&five));
        assert!(!sel("generation>5").matches(&five));
        assert!(sel("generation<6").matches(&five));
        assert!(!sel("other<6").matches(&five));
        assert!(!sel("generation<6").matches(&labels(&[("generation", "five")])));
    }

    #[test]
    fn whitespace_and_order_do_not_matter() {
        let a = sel("  tier notin ( b , a ) ,  app = web , !gone, x ");
        assert_eq!(a.to_string(), "app=web,!gone,tier notin (a,b),x");
        assert_eq!(sel(&a.to_string()), a);
        assert!(sel("").is_empty());
        assert!(sel("   ").matches(&BTreeMap::new()));
        assert_eq!(
            sel("example.com/app=v1.2").requirements[0].key,
            "example.com/app"
        );
    }

    #[test]
    fn parse_errors_name_the_bad_part() {
        assert!(
            err("app in x").contains("found 'x', expected: '('"),
            "{}",
            err("app in x")
        );
        assert!(
            err("app in (a").contains("found end of input, expected: ',' or ')'"),
            "{}",
            err("app in (a")
        );
        assert!(err("app in ()").contains("values set can't be empty"));
        assert!(
            err("app web").contains("found 'web', expected: '=', '!=', '==', 'in', 'notin'"),
            "{}",
            err("app web")
        );
        assert!(err("=web").contains("found '=', expected: identifier"));
        assert!(err("app=web,").contains("found end of input, expected: identifier"));
        assert!(err("!").contains("expected: identifier"));
        assert!(
            err("app=a=b").contains("found '=', expected: ','"),
            "{}",
            err("app=a=b")
        );
        assert!(
            err("app=(x)").contains("found '(', expected: a value"),
            "{}",
            err("app=(x)")
        );
        assert!(err("bad/key/x=1").starts_with("invalid label key \"bad/key/x\""));
        assert!(
            err("app=not_valid_")
                .starts_with("invalid label value: \"not_valid_\": at key: \"app\"")
        );
        assert!(err("n>x").contains("expected: an integer"));
    }

    #[test]
    fn label_selector_matches_as_kubernetes() {
        let web = labels(&[("app", "web"), ("tier", "front")]);
        assert!(
            LabelSelector::default().matches(&web),
            "empty selector matches everything"
        );
        assert!(LabelSelector::default().matches(&BTreeMap::new()));
        let selector = LabelSelector {
            match_labels: labels(&[("app", "web")]),
            match_expressions: vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: vec!["front".into(), "back".into()],
                },
                LabelSelectorRequirement {
                    key: "env".into(),
                    operator: "NotIn".into(),
                    values: vec!["prod".into()],
                },
                LabelSelectorRequirement {
                    key: "app".into(),
                    operator: "Exists".into(),
                    values: vec![],
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: vec![],
                },
            ],
        };
        assert!(selector.matches(&web));
        assert!(!selector.matches(&labels(&[
            ("app", "web"),
            ("tier", "front"),
            ("canary", "1")
        ])));
        assert!(!selector.matches(&labels(&[
            ("app", "web"),
            ("tier", "front"),
            ("env", "prod")
        ])));
        assert!(!selector.matches(&labels(&[("app", "db"), ("tier", "front")])));
        assert_eq!(
            selector.to_string(),
            "app=web,app,!canary,env notin (prod),tier in (back,front)"
        );
        let reparsed: Selector = selector.to_string().parse().unwrap();
        assert_eq!(reparsed, Selector::from(&selector));

        let unknown = LabelSelector {
            match_expressions: vec![LabelSelectorRequirement {
                key: "app".into(),
                operator: "Like".into(),
                values: vec![],
            }],
            ..LabelSelector::default()
        };
        assert!(
            !unknown.matches(&web),
            "an unknown operator matches nothing"
        );
    }

    #[test]
    fn label_selector_wire_format() {
        let json = r#"{"matchLabels":{"app":"web"},"matchExpressions":[{"key":"tier","operator":"In","values":["a"]},{"key":"x","operator":"Exists"}]}"#;
        let selector: LabelSelector = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&selector).unwrap(), json);
        assert_eq!(
            serde_json::to_string(&LabelSelector::default()).unwrap(),
            "{}"
        );
    }

    #[test]
    fn label_selector_validation() {
        let selector = LabelSelector {
            match_labels: labels(&[("app", "bad value")]),
            match_expressions: vec![
                LabelSelectorRequirement {
                    key: "a".into(),
                    operator: "In".into(),
                    values: vec![],
                },
                LabelSelectorRequirement {
                    key: "b".into(),
                    operator: "Exists".into(),
                    values: vec!["x".into()],
                },
                LabelSelectorRequirement {
                    key: "c".into(),
                    operator: "Equals".into(),
                    values: vec![],
                },
                LabelSelectorRequirement {
                    key: "bad key".into(),
                    operator: "NotIn".into(),
                    values: vec!["ok".into(), "-no".into()],
                },
            ],
        };
        let errors: Vec<String> = selector
            .validate("spec.selector")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 6, "{errors:#?}");
        assert!(errors[0].starts_with(
            "spec.selector.matchLabels: Invalid value: \"bad value\": a valid label must be"
        ));
        assert_eq!(
            errors[1],
            "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"
        );
        assert_eq!(
            errors[2],
            "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
        );
        assert_eq!(
            errors[3],
            "spec.selector.matchExpressions[2].operator: Invalid value: \"Equals\": not a valid selector operator"
        );
        assert!(errors[4].starts_with("spec.selector.matchExpressions[3].key: Invalid value: \"bad key\": name part must consist"));
        assert!(
            errors[5]
                .starts_with("spec.selector.matchExpressions[3].values[1]: Invalid value: \"-no\"")
        );
    }

    #[test]
    fn field_selectors() {
        let selector: FieldSelector = "metadata.name=x,spec.nodeName!=y, status.phase==Running"
            .parse()
            .unwrap();
        assert_eq!(
            selector.fields(),
            ["metadata.name", "spec.nodeName", "status.phase"]
        );
        let object = |field: &str| match field {
            "metadata.name" => Some("x".to_string()),
            "status.phase" => Some("Running".to_string()),
            _ => None,
        };
        assert!(selector.matches(object));
        assert!(!selector.matches(|f| if f == "spec.nodeName" {
            Some("y".into())
        } else {
            object(f)
        }));
        let unscheduled: FieldSelector = "spec.nodeName=".parse().unwrap();
        assert!(unscheduled.matches(|_| None));
        assert!(!unscheduled.matches(|_| Some("node-1".into())));
        assert_eq!(
            selector.to_string(),
            "metadata.name=x,spec.nodeName!=y,status.phase=Running"
        );
        assert!("".parse::<FieldSelector>().unwrap().is_empty());
    }

    #[test]
    fn field_selector_escapes_and_errors() {
        let selector: FieldSelector = r"metadata.name=a\,b\=c\\d".parse().unwrap();
        assert_eq!(selector.requirements[0].value, r"a,b=c\d");
        assert_eq!(selector.to_string(), r"metadata.name=a\,b\=c\\d");
        let e = "metadata.name"
            .parse::<FieldSelector>()
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "\"metadata.name\": expected field=value, field==value or field!=value"
        );
        let e = "=x".parse::<FieldSelector>().unwrap_err().to_string();
        assert!(e.contains("field name is empty"), "{e}");
        let e = r"a=b\x".parse::<FieldSelector>().unwrap_err().to_string();
        assert!(e.contains("invalid escape sequence"), "{e}");
        let e = "a=b=c".parse::<FieldSelector>().unwrap_err().to_string();
        assert!(e.contains("unescaped '='"), "{e}");
    }
}
