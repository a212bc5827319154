//! Server-side apply (`PATCH` with `application/apply-patch+yaml`) and the
//! `metadata.managedFields` every write keeps, as Kubernetes' structured-merge-diff
//! computes them.
//!
//! An object records which manager owns which of its fields: one entry per manager,
//! operation and subresource, each holding a [`FieldSet`] in Kubernetes' `fieldsV1`
//! encoding. A create, update or any other patch is an `Update`: its manager comes to own
//! the fields it added or changed, and every other manager loses them
//! ([`record_update`]). An apply is declarative ([`apply`]): the applied configuration is
//! merged into the live object as the kind's schema says (lists of maps merged element
//! by element on their keys, sets merged as sets, atomic lists and maps replaced, other
//! maps merged field by field); the applier then owns exactly the fields it applied;
//! fields it applied last time and no longer does are removed unless another manager
//! owns them; and a field it sets to another value than the live one while another
//! manager owns it is a conflict — unless the apply is forced, which takes the field over.
//!
//! The schema is the kind's, from the [`Catalog`]: `x-kubernetes-list-type` and
//! `x-kubernetes-list-map-keys` (derived from the strategic merge patch tags, see
//! [`super::openapi::PATCH_TAGS`]) and `x-kubernetes-map-type`. The cost of a write is
//! one walk of the old and the new object.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

use axum::http::StatusCode;
use serde_json::{Map, Value, json};
use skiff_api::{StatusCause, StatusDetails};

use super::error::ApiError;
use super::handlers::Part;
use super::object;
use super::openapi::Catalog;
use super::registry::ResourceType;

const FIELDS_V1: &str = "FieldsV1";
const APPLY: &str = "Apply";
const UPDATE: &str = "Update";
/// Who owns what an object held before its first apply, when it has no managed fields
/// (it was stored before skiff kept them): applies conflict with those fields as with any
/// other manager's, as in Kubernetes.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";
/// At most this many `Update` entries are kept (Kubernetes' limit); the oldest are merged
/// into one entry of [`ANCIENT_CHANGES`], so objects written by many clients stay small.
const MAX_UPDATE_MANAGERS: usize = 10;
const ANCIENT_CHANGES: &str = "ancient-changes";
/// Metadata that names the object or is the server's: nobody owns it (Kubernetes strips
/// the same fields from every field set).
const IGNORED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
];

/// A set of fields of an object, as a trie of path elements in the `fieldsV1` notation:
/// `f:NAME` a field or map key, `k:{"name":"main"}` an element of a list of maps by its
/// keys, `v:VALUE` an element of a set. A node is in the set itself (`member`, written
/// `".": {}` when it also has children) or only leads to members below it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    fn leaf() -> FieldSet {
        FieldSet {
            member: true,
            children: BTreeMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    /// Puts `child` under `element`, unless it holds nothing.
    fn attach(&mut self, element: String, child: FieldSet) {
        if child.is_empty() {
            return;
        }
        match self.children.entry(element) {
            Entry::Vacant(slot) => {
                slot.insert(child);
            }
            Entry::Occupied(mut slot) => slot.get_mut().union(&child),
        }
    }

    pub fn union(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (element, theirs) in &other.children {
            match self.children.get_mut(element) {
                Some(mine) => mine.union(theirs),
                None => {
                    self.children.insert(element.clone(), theirs.clone());
                }
            }
        }
    }

    /// The members of `self` that are not members of `other` (path by path: a member of
    /// `other` does not take what is below it away).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (element, mine) in &self.children {
            let rest = match other.children.get(element) {
                Some(theirs) => mine.difference(theirs),
                None => mine.clone(),
            };
            out.attach(element.clone(), rest);
        }
        out
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (element, mine) in &self.children {
            if let Some(theirs) = other.children.get(element) {
                out.attach(element.clone(), mine.intersection(theirs));
            }
        }
        out
    }

    /// The members, each as its path of elements, in the set's order.
    pub fn members(&self) -> Vec<Vec<&str>> {
        let mut found = Vec::new();
        self.collect(&mut Vec::new(), &mut found);
        found
    }

    fn collect<'a>(&'a self, path: &mut Vec<&'a str>, found: &mut Vec<Vec<&'a str>>) {
        if self.member && !path.is_empty() {
            found.push(path.clone());
        }
        for (element, child) in &self.children {
            path.push(element);
            child.collect(path, found);
            path.pop();
        }
    }

    /// Reads a `fieldsV1` value; `None` if it is not one.
    pub fn from_fields_v1(value: &Value) -> Option<FieldSet> {
        let Value::Object(map) = value else {
            return None;
        };
        let mut set = FieldSet::default();
        for (key, value) in map {
            if key == "." {
                set.member = true;
                continue;
            }
            if !["f:", "k:", "v:", "i:"].iter().any(|p| key.starts_with(p)) {
                return None;
            }
            let mut child = FieldSet::from_fields_v1(value)?;
            if child.children.is_empty() {
                child.member = true;
            }
            set.children.insert(key.clone(), child);
        }
        Some(set)
    }

    /// The set as `fieldsV1`: `{"f:spec":{"f:replicas":{}}}`.
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".into(), json!({}));
        }
        for (element, child) in &self.children {
            map.insert(element.clone(), child.to_fields_v1());
        }
        Value::Object(map)
    }
}

/// A path as Kubernetes prints it: `.spec.template.spec.containers[name="main"].image`.
pub fn display_path(path: &[&str]) -> String {
    let mut out = String::new();
    for element in path {
        if let Some(name) = element.strip_prefix("f:") {
            out.push('.');
            out.push_str(name);
        } else if let Some(keys) = element.strip_prefix("k:") {
            let fields = match serde_json::from_str::<Map<String, Value>>(keys) {
                Ok(map) => map
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
                Err(_) => keys.to_string(),
            };
            out.push_str(&format!("[{fields}]"));
        } else if let Some(value) = element.strip_prefix("v:") {
            out.push_str(&format!("[={value}]"));
        } else if let Some(index) = element.strip_prefix("i:") {
            out.push_str(&format!("[{index}]"));
        }
    }
    out
}

/// Which of an object's fields a write speaks for: its subresource's, and for the object
/// itself everything but a status that has a subresource of its own (Kubernetes' "reset
/// fields": a status written through the object is kept as it was, so nobody owns it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every field.
    Object,
    /// Everything but `status`.
    Main,
    /// `status` only.
    Status,
    /// A namespace's `spec.finalizers` only.
    Finalizers,
}

impl Scope {
    pub fn of(rt: &ResourceType, part: Part) -> Scope {
        match part {
            Part::Main if rt.has_status => Scope::Main,
            Part::Main => Scope::Object,
            Part::Status => Scope::Status,
            Part::Finalize => Scope::Finalizers,
        }
    }

    fn keeps(self, key: &str) -> bool {
        match self {
            Scope::Object => true,
            Scope::Main => key != "status",
            Scope::Status => key == "status",
            Scope::Finalizers => key == "spec",
        }
    }
}

/// Where a walk is in the object, for what it leaves out.
#[derive(Clone, Copy)]
enum Level {
    Root(Scope),
    Metadata,
    /// `spec` of a namespace's finalize: only `finalizers`.
    FinalizerSpec,
    Inner,
}

impl Level {
    fn keeps(self, key: &str) -> bool {
        match self {
            Level::Root(scope) => !matches!(key, "apiVersion" | "kind") && scope.keeps(key),
            Level::Metadata => !IGNORED_METADATA.contains(&key),
            Level::FinalizerSpec => key == "finalizers",
            Level::Inner => true,
        }
    }

    fn child(self, key: &str) -> Level {
        match (self, key) {
            (Level::Root(_), "metadata") => Level::Metadata,
            (Level::Root(Scope::Finalizers), "spec") => Level::FinalizerSpec,
            _ => Level::Inner,
        }
    }
}

/// A place in the kind's schema.
#[derive(Clone, Copy)]
struct Shape<'a> {
    catalog: &'a Catalog,
    /// The schema as the parent names it, which carries the list and map tags...
    declared: Option<&'a Value>,
    /// ... and as it is, its `$ref` followed.
    resolved: Option<&'a Value>,
}

/// How a list merges (`x-kubernetes-list-type`).
enum ListType<'a> {
    /// Replaced whole, owned whole: the default.
    Atomic,
    /// A set of scalars, merged as a union; each value owned on its own.
    Set,
    /// Maps told apart by these fields, merged element by element.
    Map(Vec<&'a str>),
}

impl<'a> Shape<'a> {
    fn new(catalog: &'a Catalog, schema: Option<&'a Value>) -> Shape<'a> {
        Shape {
            catalog,
            declared: schema,
            resolved: schema.map(|s| catalog.resolve(s)),
        }
    }

    /// No schema: maps merge by key, lists are atomic.
    fn free(&self) -> Shape<'a> {
        Shape::new(self.catalog, None)
    }

    fn tag(&self, name: &str) -> Option<&'a Value> {
        self.declared
            .and_then(|s| s.get(name))
            .or_else(|| self.resolved.and_then(|s| s.get(name)))
    }

    /// The schema of field `key`, and whether it is a declared field (not a map's key).
    fn field(&self, key: &str) -> (Shape<'a>, bool) {
        let Some(schema) = self.resolved else {
            return (self.free(), false);
        };
        if let Some(property) = schema.get("properties").and_then(|p| p.get(key)) {
            return (Shape::new(self.catalog, Some(property)), true);
        }
        match schema.get("additionalProperties").filter(|s| s.is_object()) {
            Some(values) => (Shape::new(self.catalog, Some(values)), false),
            None => (self.free(), false),
        }
    }

    fn items(&self) -> Shape<'a> {
        Shape::new(self.catalog, self.resolved.and_then(|s| s.get("items")))
    }

    fn list_type(&self) -> ListType<'a> {
        match self.tag("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => ListType::Set,
            Some("map") => {
                let keys: Vec<&str> = self
                    .tag("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|keys| keys.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if keys.is_empty() {
                    ListType::Atomic
                } else {
                    ListType::Map(keys)
                }
            }
            _ => ListType::Atomic,
        }
    }

    /// A map owned and replaced as one value (a label selector).
    fn atomic(&self) -> bool {
        self.tag("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic")
    }

    /// A struct (named fields) rather than a map: it is not owned itself when added,
    /// only its fields are, as Kubernetes records a struct that is always present.
    fn is_struct(&self) -> bool {
        self.resolved
            .is_some_and(|s| s.get("properties").is_some_and(Value::is_object))
    }
}

/// Why a list's elements cannot be told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ItemsError {
    MissingKey { index: usize, key: String },
    Duplicate(String),
}

/// The path element of each element of a set or a list of maps.
fn elements(list: &ListType<'_>, items: &[Value]) -> Result<Vec<String>, ItemsError> {
    let mut seen = HashSet::with_capacity(items.len());
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let element = match list {
            // (An atomic list's elements are never addressed; by value if they were.)
            ListType::Atomic | ListType::Set => format!("v:{item}"),
            ListType::Map(keys) => {
                let mut keys = keys.clone();
                keys.sort_unstable();
                let mut fields = Vec::with_capacity(keys.len());
                for key in keys {
                    match item.get(key).filter(|v| !v.is_null()) {
                        Some(value) => fields.push(format!("{}:{value}", Value::from(key))),
                        None => {
                            return Err(ItemsError::MissingKey {
                                index,
                                key: key.to_string(),
                            });
                        }
                    }
                }
                format!("k:{{{}}}", fields.join(","))
            }
        };
        if !seen.insert(element.clone()) {
            return Err(ItemsError::Duplicate(element));
        }
        out.push(element);
    }
    Ok(out)
}

/// Why an apply was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The applied configuration has a list element without its key, or two with one.
    #[error("failed to create typed patch object: {path}: {problem}")]
    Typed { path: String, problem: String },
    /// Fields the apply changes are another manager's.
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
}

impl ApplyError {
    /// The same error, its path starting with `prefix`.
    fn within(self, prefix: &str) -> ApplyError {
        match self {
            ApplyError::Typed { path, problem } => ApplyError::Typed {
                path: format!("{prefix}{path}"),
                problem,
            },
            other => other,
        }
    }
}

/// A field of another manager that an apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The manager as Kubernetes names it: `"kubectl"`, or `"kubectl-edit" using apps/v1
    /// at TIME` for an `Update`.
    pub manager: String,
    /// `.spec.replicas`.
    pub field: String,
}

/// Kubernetes' message: one conflict on one line, several grouped by manager.
fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [one] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            one.manager, one.field
        );
    }
    let mut by_manager: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for conflict in conflicts {
        by_manager
            .entry(&conflict.manager)
            .or_default()
            .push(&conflict.field);
    }
    let mut lines = Vec::new();
    for (manager, fields) in by_manager {
        lines.push(format!("conflicts with {manager}:"));
        lines.extend(fields.iter().map(|f| format!("- {f}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

impl From<ApplyError> for ApiError {
    fn from(error: ApplyError) -> ApiError {
        match &error {
            ApplyError::Conflicts(conflicts) => ApiError {
                code: StatusCode::CONFLICT,
                reason: "Conflict",
                message: error.to_string(),
                details: Some(Box::new(StatusDetails {
                    causes: conflicts
                        .iter()
                        .map(|c| StatusCause {
                            reason: Some("FieldManagerConflict".into()),
                            message: Some(format!("conflict with {}", c.manager)),
                            field: Some(c.field.clone()),
                        })
                        .collect(),
                    ..StatusDetails::default()
                })),
            },
            ApplyError::Typed { .. } => ApiError::bad_request(error.to_string()),
        }
    }
}

/// The fields a value sets: what an applier owns by applying it.
fn fields_of(shape: Shape<'_>, level: Level, value: &Value) -> Result<FieldSet, ApplyError> {
    match value {
        Value::Object(map) if !map.is_empty() && !shape.atomic() => {
            let mut set = FieldSet::default();
            for (key, value) in map {
                if !level.keeps(key) {
                    continue;
                }
                let (field, declared) = shape.field(key);
                let mut child = fields_of(field, level.child(key), value)
                    .map_err(|e| e.within(&format!(".{key}")))?;
                // A map's key is owned itself, whatever is below it.
                child.member |= !declared;
                set.attach(format!("f:{key}"), child);
            }
            Ok(set)
        }
        Value::Array(items) if !items.is_empty() => {
            let list = shape.list_type();
            if matches!(list, ListType::Atomic) {
                return Ok(FieldSet::leaf());
            }
            let elements = elements(&list, items).map_err(|e| ApplyError::Typed {
                path: String::new(),
                problem: match e {
                    ItemsError::MissingKey { index, key } => format!(
                        "element {index}: associative list with keys has an element that omits key field {key:?}"
                    ),
                    ItemsError::Duplicate(element) => {
                        format!("duplicate entries for key {}", display_path(&[&element]))
                    }
                },
            })?;
            let item_shape = shape.items();
            let mut set = FieldSet::default();
            for (element, item) in elements.into_iter().zip(items) {
                let mut child = fields_of(item_shape, Level::Inner, item)
                    .map_err(|e| e.within(&display_path(&[&element])))?;
                child.member = true;
                set.attach(element, child);
            }
            Ok(set)
        }
        _ => Ok(FieldSet::leaf()),
    }
}

/// What changed between two versions of an object.
#[derive(Debug, Default)]
struct Changes {
    added: FieldSet,
    modified: FieldSet,
    removed: FieldSet,
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }

    /// Puts `child` under the element `name` makes, unless it holds nothing (the
    /// element is only made for changes: most of an object is unchanged).
    fn attach(&mut self, name: impl FnOnce() -> String, child: Changes) {
        if child.is_empty() {
            return;
        }
        let element = name();
        self.added.attach(element.clone(), child.added);
        self.modified.attach(element.clone(), child.modified);
        self.removed.attach(element, child.removed);
    }
}

/// What a node of a comparison is: the object, a field, or a list's element.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Node {
    Root,
    Field,
    Item,
}

/// The fields added, changed and removed from `old` to `new`, as structured-merge-diff
/// compares: a map or list element present on one side only is added or removed whole
/// (itself and everything below it); a leaf present on both sides is modified if its
/// value differs.
fn compare(
    shape: Shape<'_>,
    level: Level,
    old: Option<&Value>,
    new: Option<&Value>,
    node: Node,
    out: &mut Changes,
) {
    if old.is_none() && new.is_none() {
        return;
    }
    let empty = |v: Option<&Value>| match v {
        None => true,
        Some(Value::Object(map)) => map.is_empty(),
        Some(Value::Array(list)) => list.is_empty(),
        Some(_) => false,
    };
    // Empty on both sides: a leaf, so `{}` and absent stay apart.
    let both_empty = empty(old) && empty(new);
    let maps = matches!(old, None | Some(Value::Object(_)))
        && matches!(new, None | Some(Value::Object(_)));
    let lists =
        matches!(old, None | Some(Value::Array(_))) && matches!(new, None | Some(Value::Array(_)));
    let mut walked = false;
    if maps && !both_empty && !shape.atomic() {
        let (old_map, new_map) = (
            old.and_then(Value::as_object),
            new.and_then(Value::as_object),
        );
        for (key, value) in old_map.into_iter().flatten() {
            if !level.keeps(key) {
                continue;
            }
            let (field, _) = shape.field(key);
            let mut child = Changes::default();
            let theirs = new_map.and_then(|m| m.get(key));
            compare(
                field,
                level.child(key),
                Some(value),
                theirs,
                Node::Field,
                &mut child,
            );
            out.attach(|| format!("f:{key}"), child);
        }
        for (key, value) in new_map.into_iter().flatten() {
            if !level.keeps(key) || old_map.is_some_and(|m| m.contains_key(key)) {
                continue;
            }
            let (field, _) = shape.field(key);
            let mut child = Changes::default();
            compare(
                field,
                level.child(key),
                None,
                Some(value),
                Node::Field,
                &mut child,
            );
            out.attach(|| format!("f:{key}"), child);
        }
        walked = true;
    } else if lists && !both_empty {
        let list = shape.list_type();
        let old_items = old
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let new_items = new
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if !matches!(list, ListType::Atomic)
            && let (Ok(old_elements), Ok(new_elements)) =
                (elements(&list, old_items), elements(&list, new_items))
        {
            let items = shape.items();
            let new_index: HashMap<&str, &Value> = new_elements
                .iter()
                .map(String::as_str)
                .zip(new_items)
                .collect();
            let old_index: HashSet<&str> = old_elements.iter().map(String::as_str).collect();
            for (element, item) in old_elements.iter().zip(old_items) {
                let mut child = Changes::default();
                let theirs = new_index.get(element.as_str()).copied();
                compare(
                    items,
                    Level::Inner,
                    Some(item),
                    theirs,
                    Node::Item,
                    &mut child,
                );
                out.attach(|| element.clone(), child);
            }
            for (element, item) in new_elements.iter().zip(new_items) {
                if old_index.contains(element.as_str()) {
                    continue;
                }
                let mut child = Changes::default();
                compare(
                    items,
                    Level::Inner,
                    None,
                    Some(item),
                    Node::Item,
                    &mut child,
                );
                out.attach(|| element.clone(), child);
            }
            walked = true;
        }
    }
    if walked {
        if node == Node::Root {
            return;
        }
        // A struct's fields are owned, not the struct (Kubernetes' zero-valued structs
        // are always there); a map or a list element is owned itself too.
        if old.is_none() && (node == Node::Item || !shape.is_struct()) {
            out.added.member = true;
        }
        if new.is_none() {
            out.removed.member = true;
        }
        return;
    }
    match (old, new) {
        (None, Some(_)) => out.added.member = true,
        (Some(_), None) => out.removed.member = true,
        (Some(a), Some(b)) if a != b => out.modified.member = true,
        _ => {}
    }
}

fn diff(shape: Shape<'_>, scope: Scope, old: Option<&Value>, new: Option<&Value>) -> Changes {
    let mut changes = Changes::default();
    compare(
        shape,
        Level::Root(scope),
        old,
        new,
        Node::Root,
        &mut changes,
    );
    changes
}

/// `config` merged into `live` (`None`: absent); `None` when the result is absent (the
/// configuration says `null`).
fn merge(shape: Shape<'_>, live: Option<Value>, config: &Value) -> Option<Value> {
    match config {
        Value::Null => None,
        Value::Object(fields) if !shape.atomic() => {
            let mut map = match live {
                Some(Value::Object(map)) => map,
                _ => Map::new(),
            };
            for (key, value) in fields {
                let (field, _) = shape.field(key);
                let merged = merge(field, map.remove(key), value);
                if let Some(merged) = merged {
                    map.insert(key.clone(), merged);
                }
            }
            Some(Value::Object(map))
        }
        Value::Array(items) => {
            let list = shape.list_type();
            if matches!(list, ListType::Atomic) {
                return Some(config.clone());
            }
            let live = match live {
                Some(Value::Array(live)) => live,
                _ => Vec::new(),
            };
            Some(Value::Array(merge_list(&list, shape.items(), live, items)))
        }
        other => Some(other.clone()),
    }
}

/// Merges a set or a list of maps as structured-merge-diff does: elements on both sides
/// merged, in the configuration's order; elements only live kept where they are;
/// elements only in the configuration where it puts them.
fn merge_list(
    list: &ListType<'_>,
    items: Shape<'_>,
    live: Vec<Value>,
    config: &[Value],
) -> Vec<Value> {
    let fresh = |config: &[Value]| {
        config
            .iter()
            .filter_map(|item| merge(items, None, item))
            .collect::<Vec<_>>()
    };
    let Ok(config_elements) = elements(list, config) else {
        return fresh(config);
    };
    let Ok(live_elements) = elements(list, &live) else {
        return fresh(config);
    };
    let config_index: HashMap<&str, &Value> = config_elements
        .iter()
        .map(String::as_str)
        .zip(config)
        .collect();
    let live_index: HashSet<&str> = live_elements.iter().map(String::as_str).collect();
    let mut live_items: HashMap<&str, Value> =
        live_elements.iter().map(String::as_str).zip(live).collect();
    let mut shared = config_elements
        .iter()
        .map(String::as_str)
        .filter(|e| live_index.contains(e));
    let mut next_shared = shared.next();
    let mut done: HashSet<&str> = HashSet::new();
    let mut out = Vec::with_capacity(live_elements.len().max(config_elements.len()));
    let (mut l, mut r) = (0, 0);
    while l < live_elements.len() || r < config_elements.len() {
        if l < live_elements.len() {
            let element = live_elements[l].as_str();
            if done.contains(element) {
                l += 1;
                continue;
            }
            if r < config_elements.len() && element == config_elements[r] {
                let merged = merge(items, live_items.remove(element), config_index[element]);
                out.extend(merged);
                done.insert(element);
                l += 1;
                r += 1;
                next_shared = shared.next();
                continue;
            }
            if !config_index.contains_key(element) {
                out.extend(live_items.remove(element));
                l += 1;
                continue;
            }
            if r < config_elements.len() && next_shared.is_some_and(|s| s != element) {
                // Shared, but another shared element comes first in the configuration.
                l += 1;
                continue;
            }
        }
        if r < config_elements.len() {
            let element = config_elements[r].as_str();
            let merged = merge(items, live_items.remove(element), config_index[element]);
            out.extend(merged);
            done.insert(element);
            r += 1;
            if next_shared == Some(element) {
                next_shared = shared.next();
            }
        } else {
            // Only shared live elements are left, merged already.
            l += 1;
        }
    }
    out
}

/// Removes from `object` the fields of `last` (what the applier owned before) that no
/// manager owns now (`owned`), keeping a map or element of which something is owned, and
/// the key fields of an element that stays.
fn prune(
    shape: Shape<'_>,
    object: &mut Value,
    last: &FieldSet,
    owned: Option<&FieldSet>,
    keys: &[&str],
) {
    match object {
        Value::Object(map) => {
            for (element, node) in &last.children {
                let Some(key) = element.strip_prefix("f:") else {
                    continue;
                };
                if keys.contains(&key) {
                    continue;
                }
                let owned_child = owned.and_then(|o| o.children.get(element));
                if node.member && owned_child.is_none() {
                    map.remove(key);
                } else if let Some(value) = map.get_mut(key) {
                    let (field, _) = shape.field(key);
                    prune(field, value, node, owned_child, &[]);
                }
            }
        }
        Value::Array(items) => {
            let list = shape.list_type();
            if matches!(list, ListType::Atomic) {
                return;
            }
            let Ok(elements) = elements(&list, items) else {
                return;
            };
            let keys: Vec<&str> = match &list {
                ListType::Map(keys) => keys.clone(),
                _ => Vec::new(),
            };
            let item_shape = shape.items();
            let mut gone = HashSet::new();
            for (index, element) in elements.iter().enumerate() {
                let Some(node) = last.children.get(element) else {
                    continue;
                };
                let owned_child = owned.and_then(|o| o.children.get(element));
                if node.member && owned_child.is_none() {
                    gone.insert(index);
                } else {
                    prune(item_shape, &mut items[index], node, owned_child, &keys);
                }
            }
            let mut index = 0;
            items.retain(|_| {
                index += 1;
                !gone.contains(&(index - 1))
            });
        }
        _ => {}
    }
}

/// One entry of `metadata.managedFields`, decoded.
#[derive(Clone, Debug, PartialEq)]
struct Manager {
    name: String,
    operation: &'static str,
    api_version: String,
    subresource: Option<String>,
    time: Option<String>,
    fields: FieldSet,
}

impl Manager {
    /// Whether two entries are the same manager's: by name, operation and subresource,
    /// and for updates the API version (an applier keeps one entry across versions).
    fn same(&self, other: &Manager) -> bool {
        self.name == other.name
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == APPLY || self.api_version == other.api_version)
    }

    /// The manager as conflicts name it (Kubernetes' `printManager`).
    fn describe(&self) -> String {
        let mut text = format!("{:?}", self.name);
        if let Some(subresource) = &self.subresource {
            text.push_str(&format!(" with subresource {subresource:?}"));
        }
        if self.operation == UPDATE {
            text.push_str(&format!(" using {}", self.api_version));
            if let Some(time) = &self.time {
                text.push_str(&format!(" at {time}"));
            }
        }
        text
    }

    /// Reads one `ManagedFieldsEntry` in place (its fields are not copied first);
    /// `None` if it is not a valid one, as Kubernetes checks them.
    fn decode(entry: &Value) -> Option<Manager> {
        let entry = entry.as_object()?;
        // A string field: absent, or a string (empty reads as absent), or not valid.
        let text = |key: &str| -> Option<Option<String>> {
            match entry.get(key) {
                None | Some(Value::Null) => Some(None),
                Some(Value::String(s)) => Some(Some(s.clone()).filter(|s| !s.is_empty())),
                Some(_) => None,
            }
        };
        let operation = match text("operation")?.as_deref() {
            Some(APPLY) => APPLY,
            Some(UPDATE) => UPDATE,
            _ => return None,
        };
        if text("fieldsType")?.as_deref() != Some(FIELDS_V1) {
            return None;
        }
        let fields = match entry.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::default(),
            Some(fields) => FieldSet::from_fields_v1(fields)?,
        };
        Some(Manager {
            name: text("manager")?.unwrap_or_default(),
            operation,
            api_version: text("apiVersion")??,
            subresource: text("subresource")?,
            time: text("time")?,
            fields,
        })
    }

    /// The entry as `managedFields` holds it: a
    /// [`ManagedFieldsEntry`](skiff_api::meta::ManagedFieldsEntry), written directly.
    fn encode(&self) -> Value {
        let mut entry = Map::new();
        if !self.name.is_empty() {
            entry.insert("manager".into(), Value::from(self.name.as_str()));
        }
        entry.insert("operation".into(), Value::from(self.operation));
        entry.insert("apiVersion".into(), Value::from(self.api_version.as_str()));
        if let Some(time) = &self.time {
            entry.insert("time".into(), Value::from(time.as_str()));
        }
        entry.insert("fieldsType".into(), Value::from(FIELDS_V1));
        entry.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if let Some(subresource) = &self.subresource {
            entry.insert("subresource".into(), Value::from(subresource.as_str()));
        }
        Value::Object(entry)
    }
}

/// Decodes a `managedFields` list; `None` if any entry is not a valid one.
fn decode_managers(list: Option<&Value>) -> Option<Vec<Manager>> {
    match list {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::Array(entries)) => entries.iter().map(Manager::decode).collect(),
        Some(_) => None,
    }
}

/// The managers an object records; none if it records none or garbage.
fn live_managers(object: Option<&Value>) -> Vec<Manager> {
    decode_managers(object.and_then(|o| o.pointer("/metadata/managedFields"))).unwrap_or_default()
}

/// Merges the oldest `Update` entries into one while there are too many.
fn cap_updates(managers: &mut Vec<Manager>) {
    let is_update = |m: &Manager| m.operation == UPDATE;
    let updates = managers.iter().filter(|m| is_update(m)).count();
    if updates <= MAX_UPDATE_MANAGERS {
        return;
    }
    let bucket_at = managers
        .iter()
        .position(|m| is_update(m) && m.name == ANCIENT_CHANGES && m.subresource.is_none());
    let mut bucket = match bucket_at {
        Some(at) => managers.remove(at),
        None => Manager {
            name: ANCIENT_CHANGES.into(),
            operation: UPDATE,
            api_version: String::new(),
            subresource: None,
            time: None,
            fields: FieldSet::default(),
        },
    };
    managers
        .sort_by(|a, b| (!is_update(a), &a.time, &a.name).cmp(&(!is_update(b), &b.time, &b.name)));
    // The oldest updates go into the bucket, enough to come back to the limit with it.
    let merged = updates - MAX_UPDATE_MANAGERS + usize::from(bucket_at.is_none());
    for old in managers.drain(..merged) {
        bucket.fields.union(&old.fields);
        bucket.api_version = old.api_version;
        bucket.time = bucket.time.max(old.time);
    }
    managers.push(bucket);
}

/// The `managedFields` value of a list of managers, in Kubernetes' order (appliers
/// first, then by time, manager, version, subresource); `None` when there are none.
fn encode_managers(mut managers: Vec<Manager>) -> Option<Value> {
    managers.retain(|m| !m.fields.is_empty());
    if managers.is_empty() {
        return None;
    }
    managers.sort_by(|a, b| {
        (
            a.operation,
            &a.time,
            &a.name,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                b.operation,
                &b.time,
                &b.name,
                &b.api_version,
                &b.subresource,
            ))
    });
    Some(Value::Array(managers.iter().map(Manager::encode).collect()))
}

/// Who writes, for the managed fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Writer {
    /// The `fieldManager` parameter, else the User-Agent's program name.
    pub manager: String,
    /// `status`, `scale`: the subresource written through.
    pub subresource: Option<&'static str>,
}

/// The manager of the writes the API server makes itself (the initial namespaces and
/// RBAC objects, node credentials), as Kubernetes' are `kube-apiserver`'s.
pub const SERVER_MANAGER: &str = "skiff-apiserver";

/// How a write is recorded in `metadata.managedFields`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// An `Update` by this writer: it comes to own what it changed ([`record_update`]).
    Update(Writer),
    /// A server-side apply: the object carries the managed fields [`apply`] made.
    Applied,
}

impl Ownership {
    /// A write the API server makes itself.
    pub fn server() -> Ownership {
        Ownership::Update(Writer {
            manager: SERVER_MANAGER.into(),
            subresource: None,
        })
    }
}

/// Sets `object`'s `metadata.managedFields` (`None`: removes them).
pub fn set_managed_fields(object: &mut Value, managed: Option<Value>) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        match managed {
            Some(list) => meta.insert("managedFields".into(), list),
            None => meta.remove("managedFields"),
        };
    }
}

/// Checks an applied configuration as Kubernetes does — it names the kind's API version
/// and kind, and no managed fields — and names the object of the URL (filled in when it
/// names none).
pub fn check_config(rt: &ResourceType, name: &str, config: &mut Value) -> Result<(), ApiError> {
    let map = config
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the applied configuration must be an object"))?;
    let expected = rt.api_version();
    let version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if version != expected {
        return Err(ApiError::bad_request(format!(
            "Incorrect version specified in apply patch. Specified patch version: {version}, expected: {expected}"
        )));
    }
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind != rt.kind {
        return Err(ApiError::bad_request(format!(
            "Incorrect kind specified in apply patch. Specified patch kind: {kind}, expected: {}",
            rt.kind
        )));
    }
    let meta = map
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata: must be an object"))?;
    if meta.get("managedFields").is_some_and(|m| !m.is_null()) {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    match meta
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        Some(given) if given != name => Err(ApiError::bad_request(format!(
            "the name of the object ({given}) does not match the name on the URL ({name})"
        ))),
        Some(_) => Ok(()),
        None => {
            meta.insert("name".into(), Value::String(name.to_string()));
            Ok(())
        }
    }
}

/// The `managedFields` of `new` after an `Update` by `writer` made it from `old` (`None`
/// for a create). `given` is the list the request carried: it replaces the recorded one
/// when it is a valid, non-empty one (a client may edit the managed fields), `[{}]`
/// clears them, and anything else keeps the object's. `None`: no entries.
pub fn record_update(
    rt: &ResourceType,
    scope: Scope,
    old: Option<&Value>,
    new: &Value,
    given: Option<&Value>,
    writer: &Writer,
) -> Option<Value> {
    let catalog = Catalog::get();
    let shape = Shape::new(catalog, catalog.kind(rt));
    let reset = given.is_some_and(|g| *g == json!([{}]));
    let mut managers = if reset {
        Vec::new()
    } else {
        match decode_managers(given) {
            Some(given) if !given.is_empty() => given,
            _ => live_managers(old),
        }
    };
    let changes = diff(shape, scope, old, Some(new));
    if !changes.is_empty() {
        let mut taken = changes.added;
        taken.union(&changes.modified);
        for manager in &mut managers {
            manager.fields = manager
                .fields
                .difference(&taken)
                .difference(&changes.removed);
        }
        let me = Manager {
            name: writer.manager.clone(),
            operation: UPDATE,
            api_version: rt.api_version(),
            subresource: writer.subresource.map(str::to_string),
            time: Some(object::now()),
            fields: taken,
        };
        match managers.iter_mut().find(|m| m.same(&me)) {
            Some(mine) => {
                mine.fields.union(&me.fields);
                mine.time = me.time;
            }
            None => managers.push(me),
        }
    }
    managers.retain(|m| !m.fields.is_empty());
    cap_updates(&mut managers);
    encode_managers(managers)
}

/// An apply's request: who applies, and whether it takes conflicting fields over.
#[derive(Clone, Debug)]
pub struct Applier {
    pub writer: Writer,
    /// `force=true`: conflicting fields are taken from their managers.
    pub force: bool,
}

/// `config` applied to `live` (`None`: the object does not exist yet) by `applier`: the
/// merged object, carrying its new `managedFields`; or the conflicts with other managers.
/// Defaults are the server's to add afterwards: they are nobody's.
pub fn apply(
    rt: &ResourceType,
    scope: Scope,
    live: Option<&Value>,
    config: &Value,
    applier: &Applier,
) -> Result<Value, ApplyError> {
    let catalog = Catalog::get();
    let shape = Shape::new(catalog, catalog.kind(rt));
    let config = scoped(config, scope);
    let mut applied = fields_of(shape, Level::Root(scope), &config)?;
    applied.member = false;

    let mut managers = live_managers(live);
    if let Some(live) = live
        && live
            .pointer("/metadata/managedFields")
            .is_none_or(Value::is_null)
    {
        // Stored before managed fields were kept: what it holds is somebody's.
        let before = diff(shape, scope, None, Some(live));
        managers.push(Manager {
            name: BEFORE_FIRST_APPLY.into(),
            operation: UPDATE,
            api_version: rt.api_version(),
            subresource: None,
            time: None,
            fields: before.added,
        });
    }
    let mut me = Manager {
        name: applier.writer.manager.clone(),
        operation: APPLY,
        api_version: rt.api_version(),
        subresource: applier.writer.subresource.map(str::to_string),
        time: None,
        fields: applied,
    };
    let last = managers
        .iter()
        .position(|m| m.same(&me))
        .map(|i| managers.remove(i));

    let mut merged = merge(
        shape,
        Some(live.cloned().unwrap_or_else(|| json!({}))),
        &config,
    )
    .unwrap_or_else(|| json!({}));
    if let Some(last) = &last {
        let mut owned = me.fields.clone();
        for other in &managers {
            owned.union(&other.fields);
        }
        prune(shape, &mut merged, &last.fields, Some(&owned), &[]);
    }

    let changes = diff(shape, scope, live, Some(&merged));
    let mut taken = changes.added;
    taken.union(&changes.modified);
    let mut conflicts = Vec::new();
    for other in &managers {
        for path in other.fields.intersection(&taken).members() {
            conflicts.push(Conflict {
                manager: other.describe(),
                field: display_path(&path),
            });
        }
    }
    if !conflicts.is_empty() && !applier.force {
        return Err(ApplyError::Conflicts(conflicts));
    }
    for other in &mut managers {
        other.fields = other.fields.difference(&taken).difference(&changes.removed);
    }
    let changed = !taken.is_empty() || !changes.removed.is_empty();
    me.time = match (&last, changed) {
        (Some(last), false) => last.time.clone(),
        _ => Some(object::now()),
    };
    managers.push(me);
    set_managed_fields(&mut merged, encode_managers(managers));
    Ok(merged)
}

/// The part of an applied configuration its scope speaks for: an apply to the object
/// leaves a status that has its own subresource alone, an apply to the status leaves
/// everything else.
fn scoped(config: &Value, scope: Scope) -> Value {
    let Value::Object(map) = config else {
        return config.clone();
    };
    let kept = map
        .iter()
        .filter(|(key, _)| {
            matches!(key.as_str(), "apiVersion" | "kind" | "metadata") || scope.keeps(key)
        })
        .map(|(key, value)| {
            let value = match (key.as_str(), scope, value) {
                // Through a subresource, the metadata only names the object.
                ("metadata", Scope::Status | Scope::Finalizers, Value::Object(meta)) => {
                    Value::Object(
                        meta.iter()
                            .filter(|(k, _)| {
                                matches!(k.as_str(), "name" | "namespace" | "resourceVersion")
                            })
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    )
                }
                _ => value.clone(),
            };
            (key.clone(), value)
        })
        .collect();
    Value::Object(kept)
}

#[cfg(test)]
mod tests {
    use skiff_api::meta::ManagedFieldsEntry;

    use super::*;
    use crate::apiserver::registry::Registry;

    fn kind(plural: &str) -> &'static ResourceType {
        static REGISTRY: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
        let registry = REGISTRY.get_or_init(Registry::builtin);
        registry.types.iter().find(|t| t.plural == plural).unwrap()
    }

    fn writer(manager: &str) -> Writer {
        Writer {
            manager: manager.into(),
            subresource: None,
        }
    }

    fn applier(manager: &str, force: bool) -> Applier {
        Applier {
            writer: writer(manager),
            force,
        }
    }

    fn deployment(replicas: i64, containers: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web", "labels": { "app": "web" } },
            "spec": { "replicas": replicas, "template": { "spec": { "containers": containers } } },
        })
    }

    /// The managers recorded on an object, each with its fields as `fieldsV1`.
    fn managed(object: &Value) -> Vec<(String, String, Value)> {
        object["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["manager"].as_str().unwrap_or("").to_string(),
                    e["operation"].as_str().unwrap().to_string(),
                    e["fieldsV1"].clone(),
                )
            })
            .collect()
    }

    fn fields(object: &Value, manager: &str) -> Value {
        managed(object)
            .into_iter()
            .find(|(m, _, _)| m == manager)
            .map(|(_, _, f)| f)
            .unwrap_or_else(|| panic!("{manager} owns nothing: {object:#}"))
    }

    #[test]
    fn an_applied_configuration_owns_its_leaves_keyed_elements_and_map_keys() {
        let config = deployment(
            2,
            json!([{ "name": "main", "image": "a.wasm", "ports": [{ "containerPort": 80 }] }]),
        );
        let object = apply(
            kind("deployments"),
            Scope::Main,
            None,
            &config,
            &applier("me", false),
        )
        .unwrap();
        assert_eq!(
            fields(&object, "me"),
            json!({
                "f:metadata": { "f:labels": { "f:app": {} } },
                "f:spec": {
                    "f:replicas": {},
                    "f:template": { "f:spec": { "f:containers": {
                        "k:{\"name\":\"main\"}": {
                            ".": {}, "f:name": {}, "f:image": {},
                            "f:ports": { "k:{\"containerPort\":80}": { ".": {}, "f:containerPort": {} } },
                        },
                    } } },
                },
            })
        );
        let entry = &object["metadata"]["managedFields"][0];
        assert_eq!(entry["operation"], "Apply");
        assert_eq!(entry["apiVersion"], "apps/v1");
        assert_eq!(entry["fieldsType"], "FieldsV1");
        assert!(entry["time"].is_string());
    }

    #[test]
    fn entries_are_written_as_the_typed_managed_fields_entry_reads_them() {
        let object = apply(
            kind("deployments"),
            Scope::Main,
            None,
            &deployment(1, json!([])),
            &applier("me", false),
        )
        .unwrap();
        let written = &object["metadata"]["managedFields"][0];
        let typed: ManagedFieldsEntry = serde_json::from_value(written.clone()).unwrap();
        assert_eq!(typed.manager.as_deref(), Some("me"));
        assert_eq!(serde_json::to_value(&typed).unwrap(), *written);
        let back = Manager::decode(written).unwrap();
        assert_eq!(back.encode(), *written);
    }

    #[test]
    fn field_sets_round_trip_through_fields_v1_and_do_set_arithmetic() {
        let text = json!({ "f:spec": { "f:replicas": {}, "f:containers": { "k:{\"name\":\"main\"}": { ".": {}, "f:image": {} } } } });
        let set = FieldSet::from_fields_v1(&text).unwrap();
        assert_eq!(set.to_fields_v1(), text);
        let members: Vec<String> = set.members().iter().map(|p| display_path(p)).collect();
        assert_eq!(
            members,
            [
                ".spec.containers[name=\"main\"]",
                ".spec.containers[name=\"main\"].image",
                ".spec.replicas"
            ]
        );
        let replicas =
            FieldSet::from_fields_v1(&json!({ "f:spec": { "f:replicas": {} } })).unwrap();
        assert_eq!(set.intersection(&replicas), replicas);
        let rest = set.difference(&replicas);
        assert_eq!(
            rest.to_fields_v1(),
            json!({ "f:spec": { "f:containers": { "k:{\"name\":\"main\"}": { ".": {}, "f:image": {} } } } })
        );
        // Taking the element does not take what is below it: sets are path by path.
        let element = FieldSet::from_fields_v1(
            &json!({ "f:spec": { "f:containers": { "k:{\"name\":\"main\"}": {} } } }),
        )
        .unwrap();
        assert_eq!(
            rest.difference(&element).to_fields_v1(),
            json!({ "f:spec": { "f:containers": { "k:{\"name\":\"main\"}": { "f:image": {} } } } })
        );
        assert!(FieldSet::from_fields_v1(&json!({ "spec": {} })).is_none());
        assert!(FieldSet::from_fields_v1(&json!([])).is_none());
    }

    #[test]
    fn an_update_owns_what_it_changed_and_takes_it_from_others() {
        let rt = kind("deployments");
        let created = deployment(1, json!([{ "name": "main", "image": "a.wasm" }]));
        let managed_fields =
            record_update(rt, Scope::Main, None, &created, None, &writer("creator")).unwrap();
        let mut stored = created.clone();
        stored["metadata"]["managedFields"] = managed_fields;
        // Server-owned metadata and identity are nobody's.
        let creator = fields(&stored, "creator");
        assert!(
            creator.get("f:apiVersion").is_none() && creator["f:metadata"].get("f:name").is_none()
        );
        assert_eq!(
            creator["f:metadata"]["f:labels"],
            json!({ ".": {}, "f:app": {} })
        );

        let mut scaled = stored.clone();
        scaled["spec"]["replicas"] = json!(5);
        scaled["metadata"]["managedFields"] = record_update(
            rt,
            Scope::Main,
            Some(&stored),
            &scaled,
            None,
            &writer("scaler"),
        )
        .unwrap();
        assert_eq!(
            fields(&scaled, "scaler"),
            json!({ "f:spec": { "f:replicas": {} } })
        );
        assert!(
            fields(&scaled, "creator")["f:spec"]
                .get("f:replicas")
                .is_none()
        );

        // Nothing changed: nothing recorded, the entries as they were.
        let again = record_update(
            rt,
            Scope::Main,
            Some(&scaled),
            &scaled,
            None,
            &writer("other"),
        )
        .unwrap();
        assert_eq!(again, scaled["metadata"]["managedFields"]);

        // Removing a field takes it from everybody; an owner left with nothing goes.
        let mut removed = scaled.clone();
        removed["spec"].as_object_mut().unwrap().remove("replicas");
        removed["metadata"]["managedFields"] = record_update(
            rt,
            Scope::Main,
            Some(&scaled),
            &removed,
            None,
            &writer("creator"),
        )
        .unwrap();
        assert!(
            managed(&removed).iter().all(|(m, _, _)| m != "scaler"),
            "{removed:#}"
        );

        // `[{}]` clears the record.
        let cleared = record_update(
            rt,
            Scope::Main,
            Some(&removed),
            &removed,
            Some(&json!([{}])),
            &writer("x"),
        );
        assert_eq!(cleared, None);
    }

    #[test]
    fn status_writes_record_only_the_status_and_the_object_writes_leave_it_out() {
        let rt = kind("pods");
        let old = json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "p" }, "spec": { "containers": [] }, "status": { "phase": "Pending" } });
        let mut new = old.clone();
        new["status"]["phase"] = json!("Running");
        let node = Writer {
            manager: "skiff-node".into(),
            subresource: Some("status"),
        };
        let list = record_update(rt, Scope::Status, Some(&old), &new, None, &node).unwrap();
        assert_eq!(list[0]["subresource"], "status");
        assert_eq!(
            list[0]["fieldsV1"],
            json!({ "f:status": { "f:phase": {} } })
        );
        assert_eq!(
            record_update(rt, Scope::Main, Some(&old), &new, None, &writer("x")),
            None
        );
    }

    #[test]
    fn reapplying_without_a_field_removes_it_unless_someone_else_owns_it() {
        let rt = kind("deployments");
        let both = deployment(
            2,
            json!([{ "name": "main", "image": "a.wasm" }, { "name": "side", "image": "s.wasm" }]),
        );
        let live = apply(rt, Scope::Main, None, &both, &applier("me", false)).unwrap();

        let mut fewer = deployment(2, json!([{ "name": "main", "image": "a.wasm" }]));
        fewer["spec"].as_object_mut().unwrap().remove("replicas");
        let after = apply(rt, Scope::Main, Some(&live), &fewer, &applier("me", false)).unwrap();
        assert!(after["spec"].get("replicas").is_none(), "{after:#}");
        assert_eq!(
            after["spec"]["template"]["spec"]["containers"],
            json!([{ "name": "main", "image": "a.wasm" }])
        );

        // Another applier that set replicas to the same value shares it: it stays.
        let shared = apply(
            rt,
            Scope::Main,
            Some(&live),
            &deployment(2, json!([])),
            &applier("other", false),
        )
        .unwrap();
        let after = apply(
            rt,
            Scope::Main,
            Some(&shared),
            &fewer,
            &applier("me", false),
        )
        .unwrap();
        assert_eq!(after["spec"]["replicas"], 2, "{after:#}");
        assert_eq!(fields(&after, "other")["f:spec"]["f:replicas"], json!({}));
        assert!(fields(&after, "me")["f:spec"].get("f:replicas").is_none());
    }

    #[test]
    fn another_managers_field_set_to_a_new_value_conflicts_unless_forced() {
        let rt = kind("deployments");
        let live = apply(
            rt,
            Scope::Main,
            None,
            &deployment(2, json!([{ "name": "main", "image": "a.wasm" }])),
            &applier("first", false),
        )
        .unwrap();
        let change = deployment(3, json!([{ "name": "main", "image": "b.wasm" }]));
        let error = apply(
            rt,
            Scope::Main,
            Some(&live),
            &change,
            &applier("second", false),
        )
        .unwrap_err();
        let ApplyError::Conflicts(conflicts) = &error else {
            panic!("{error}")
        };
        let found: Vec<(&str, &str)> = conflicts
            .iter()
            .map(|c| (c.manager.as_str(), c.field.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                ("\"first\"", ".spec.replicas"),
                (
                    "\"first\"",
                    ".spec.template.spec.containers[name=\"main\"].image"
                ),
            ]
        );
        assert_eq!(
            error.to_string(),
            "Apply failed with 2 conflicts: conflicts with \"first\":\n- .spec.replicas\n- .spec.template.spec.containers[name=\"main\"].image"
        );

        // The same values are no conflict: both own them.
        let same = apply(
            rt,
            Scope::Main,
            Some(&live),
            &deployment(2, json!([])),
            &applier("second", false),
        )
        .unwrap();
        assert_eq!(fields(&same, "first")["f:spec"]["f:replicas"], json!({}));
        assert_eq!(fields(&same, "second")["f:spec"]["f:replicas"], json!({}));

        // Forced: the value changes and the field changes hands.
        let forced = apply(
            rt,
            Scope::Main,
            Some(&live),
            &change,
            &applier("second", true),
        )
        .unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        assert!(
            fields(&forced, "first")["f:spec"]
                .get("f:replicas")
                .is_none(),
            "{forced:#}"
        );
        assert_eq!(fields(&forced, "second")["f:spec"]["f:replicas"], json!({}));
    }

    #[test]
    fn an_update_by_another_manager_makes_a_later_apply_conflict() {
        let rt = kind("deployments");
        let live = apply(
            rt,
            Scope::Main,
            None,
            &deployment(2, json!([])),
            &applier("applier", false),
        )
        .unwrap();
        let mut edited = live.clone();
        edited["spec"]["replicas"] = json!(7);
        edited["metadata"]["managedFields"] = record_update(
            rt,
            Scope::Main,
            Some(&live),
            &edited,
            None,
            &writer("kubectl-edit"),
        )
        .unwrap();
        let error = apply(
            rt,
            Scope::Main,
            Some(&edited),
            &deployment(2, json!([])),
            &applier("applier", false),
        )
        .unwrap_err();
        let ApplyError::Conflicts(conflicts) = error else {
            panic!()
        };
        assert_eq!(conflicts.len(), 1);
        assert!(
            conflicts[0]
                .manager
                .starts_with("\"kubectl-edit\" using apps/v1 at "),
            "{}",
            conflicts[0].manager
        );
        assert_eq!(conflicts[0].field, ".spec.replicas");
    }

    #[test]
    fn lists_merge_by_their_type_and_keep_live_elements_where_they_are() {
        let rt = kind("deployments");
        let mut live = deployment(
            1,
            json!([{ "name": "a", "image": "a" }, { "name": "x", "image": "x" }, { "name": "b", "image": "b" }]),
        );
        live["metadata"]["finalizers"] = json!(["keep"]);
        live["spec"]["template"]["spec"]["tolerations"] =
            json!([{ "key": "t", "operator": "Exists" }]);
        live["metadata"]["managedFields"] =
            record_update(rt, Scope::Main, None, &live, None, &writer("creator")).unwrap();
        let mut config = deployment(
            1,
            json!([{ "name": "b", "image": "b2" }, { "name": "new", "image": "n" }, { "name": "a", "image": "a" }]),
        );
        config["metadata"]["finalizers"] = json!(["mine"]);
        config["spec"]["template"]["spec"]["tolerations"] =
            json!([{ "key": "u", "operator": "Exists" }]);
        let merged = apply(rt, Scope::Main, Some(&live), &config, &applier("me", true)).unwrap();
        let names: Vec<&str> = merged["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["x", "b", "new", "a"]);
        assert_eq!(
            merged["spec"]["template"]["spec"]["containers"][1]["image"],
            "b2"
        );
        assert_eq!(merged["metadata"]["finalizers"], json!(["keep", "mine"]));
        assert_eq!(
            merged["spec"]["template"]["spec"]["tolerations"],
            json!([{ "key": "u", "operator": "Exists" }]),
            "atomic: replaced"
        );
        assert_eq!(
            fields(&merged, "me")["f:metadata"]["f:finalizers"],
            json!({ "v:\"mine\"": {} })
        );
    }

    #[test]
    fn a_selector_is_owned_whole_and_a_bad_list_is_refused() {
        let rt = kind("deployments");
        let mut config = deployment(1, json!([]));
        config["spec"]["selector"] = json!({ "matchLabels": { "app": "web" } });
        let object = apply(rt, Scope::Main, None, &config, &applier("me", false)).unwrap();
        assert_eq!(fields(&object, "me")["f:spec"]["f:selector"], json!({}));

        let twice = deployment(1, json!([{ "name": "a" }, { "name": "a" }]));
        let error = apply(rt, Scope::Main, None, &twice, &applier("me", false)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "failed to create typed patch object: .spec.template.spec.containers: duplicate entries for key [name=\"a\"]"
        );
        let keyless = deployment(1, json!([{ "image": "a" }]));
        let error = apply(rt, Scope::Main, None, &keyless, &applier("me", false)).unwrap_err();
        assert!(
            error.to_string().contains("omits key field \"name\""),
            "{error}"
        );
    }

    #[test]
    fn an_object_with_no_record_is_owned_before_its_first_apply() {
        let rt = kind("deployments");
        let live = deployment(1, json!([]));
        let error = apply(
            rt,
            Scope::Main,
            Some(&live),
            &deployment(4, json!([])),
            &applier("me", false),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("\"before-first-apply\""),
            "{error}"
        );
    }

    #[test]
    fn many_updaters_are_capped_into_ancient_changes() {
        let rt = kind("configmaps");
        let mut object = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c" }, "data": {} });
        for i in 0..12 {
            let mut next = object.clone();
            next["data"][format!("k{i}")] = json!("v");
            next["metadata"]["managedFields"] = record_update(
                rt,
                Scope::Object,
                Some(&object),
                &next,
                None,
                &writer(&format!("m{i:02}")),
            )
            .unwrap();
            object = next;
        }
        let managers = managed(&object);
        assert_eq!(managers.len(), MAX_UPDATE_MANAGERS);
        let ancient = fields(&object, ANCIENT_CHANGES);
        assert_eq!(ancient["f:data"].as_object().unwrap().len(), 3, "{ancient}");
    }
}
