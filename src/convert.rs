//! `password-rotator convert`: from v1alpha1 PasswordRotations, which hold the connection to
//! the password system, to the v1alpha2 RotationTargets that hold it and the PasswordRotations
//! that refer to them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

const V1ALPHA1: &str = "rotator.dev/v1alpha1";
const V1ALPHA2: &str = "rotator.dev/v1alpha2";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Why the input cannot be converted. Messages name fields, never their values.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// Document `document` (from 1) is not YAML.
    #[error("document {document}: not YAML: {source}")]
    Yaml {
        document: usize,
        source: serde_yaml::Error,
    },
    /// `at` names the document (and the item of a List), and the resource when it has a name.
    #[error(
        "{at}: not a rotator.dev/v1alpha1 PasswordRotation (apiVersion {api_version}, kind {kind})"
    )]
    NotPasswordRotation {
        at: String,
        api_version: String,
        kind: String,
    },
    /// `field` is a path such as `spec.target.redis.user`.
    #[error("{at}: {field} {problem}")]
    Invalid {
        at: String,
        field: String,
        problem: String,
    },
    /// Two documents are the same resource.
    #[error("{at}: the same PasswordRotation as {first}")]
    Duplicate { at: String, first: String },
}

/// A member of the v1alpha1 `spec.target`: which of its fields reach the system (they move to
/// the RotationTarget) and which name what rotates there (they stay).
struct Vendor {
    name: &'static str,
    connection: &'static [&'static str],
    objects: &'static [&'static str],
}

static VENDORS: [Vendor; 3] = [
    Vendor {
        name: "redisSoftware",
        connection: &[
            "url",
            "credentialsSecret",
            "caSecret",
            "tls",
            "insecureHttp",
            "passwordBody",
        ],
        objects: &["user", "databaseUid"],
    },
    Vendor {
        name: "redis",
        connection: &[
            "endpoints",
            "discover",
            "credentialsSecret",
            "caSecret",
            "tls",
            "insecurePlaintext",
        ],
        objects: &["user"],
    },
    Vendor {
        name: "ontap",
        connection: &[
            "url",
            "credentialsSecret",
            "caSecret",
            "tls",
            "insecureHttp",
            "svm",
        ],
        objects: &["account", "alternatingAccounts"],
    },
];

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
enum Mode {
    AddThenDelete,
    Replace,
}

/// A v1alpha1 PasswordRotation, read.
struct Resource {
    /// Where it is in the input, for errors.
    at: String,
    namespace: Option<String>,
    name: String,
    /// The v1alpha2 metadata.
    metadata: Map<String, Value>,
    spec: Map<String, Value>,
    vendor: &'static str,
    connection: Map<String, Value>,
    /// The fields of the vendor section that stay on the PasswordRotation.
    object_fields: Map<String, Value>,
    objects: Vec<String>,
    mode: Mode,
}

/// A RotationTarget being gathered from the resources that share its connection.
struct Target<'a> {
    name: String,
    vendor: &'static str,
    connection: &'a Map<String, Value>,
    objects: BTreeSet<&'a str>,
    modes: BTreeSet<Mode>,
}

/// A field that is wrong, before it is placed in the input.
struct Problem {
    field: String,
    problem: String,
}

impl Problem {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Problem {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Converts v1alpha1 PasswordRotations (YAML: one or several documents, or a `kind: List`
/// with items) into the RotationTargets and v1alpha2 PasswordRotations that replace them,
/// as YAML documents separated by `---`.
pub fn convert(input: &str) -> Result<String, ConvertError> {
    let resources = read_all(input)?;

    // Per namespace (`None`: the one `kubectl apply -n` will choose).
    let mut targets: BTreeMap<Option<&str>, Vec<Target<'_>>> = BTreeMap::new();
    let mut seen: HashMap<(Option<&str>, &str), &str> = HashMap::new();
    let mut refs = Vec::with_capacity(resources.len());
    for resource in &resources {
        let namespace = resource.namespace.as_deref();
        if let Some(first) = seen.insert((namespace, &resource.name), &resource.at) {
            return Err(ConvertError::Duplicate {
                at: resource.at.clone(),
                first: first.to_owned(),
            });
        }
        let group = targets.entry(namespace).or_default();
        let index = match group
            .iter()
            .position(|t| t.vendor == resource.vendor && *t.connection == resource.connection)
        {
            Some(index) => index,
            None => {
                group.push(Target {
                    name: free_name(group, base_name(resource)),
                    vendor: resource.vendor,
                    connection: &resource.connection,
                    objects: BTreeSet::new(),
                    modes: BTreeSet::new(),
                });
                group.len() - 1
            }
        };
        let target = &mut group[index];
        target
            .objects
            .extend(resource.objects.iter().map(String::as_str));
        target.modes.insert(resource.mode);
        refs.push(target.name.clone());
    }

    let mut out = String::new();
    for (namespace, mut group) in targets {
        group.sort_by(|a, b| a.name.cmp(&b.name));
        for target in group {
            write_document(&mut out, &target_document(&target, namespace));
        }
    }
    for (resource, target) in resources.iter().zip(refs) {
        write_document(&mut out, &rotation_document(resource, target));
    }
    Ok(out)
}

fn read_all(input: &str) -> Result<Vec<Resource>, ConvertError> {
    let mut resources = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(input).enumerate() {
        let number = index + 1;
        let value = Value::deserialize(document).map_err(|source| ConvertError::Yaml {
            document: number,
            source,
        })?;
        if value.is_null() {
            // An empty document, as a trailing `---` makes.
            continue;
        }
        if value.get("kind").and_then(Value::as_str) != Some("List") {
            resources.push(read(&value, format!("document {number}"))?);
            continue;
        }
        let items = match value.get("items") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(items)) => items,
            Some(_) => {
                return Err(ConvertError::Invalid {
                    at: format!("document {number}"),
                    field: "items".into(),
                    problem: "is not a list".into(),
                });
            }
        };
        for (item, value) in items.iter().enumerate() {
            resources.push(read(
                value,
                format!("document {number}, item {}", item + 1),
            )?);
        }
    }
    Ok(resources)
}

fn read(value: &Value, at: String) -> Result<Resource, ConvertError> {
    let name = value.pointer("/metadata/name").and_then(Value::as_str);
    let at = match (
        value.pointer("/metadata/namespace").and_then(Value::as_str),
        name,
    ) {
        (Some(namespace), Some(name)) => format!("{at} ({namespace}/{name})"),
        (None, Some(name)) => format!("{at} ({name})"),
        _ => at,
    };
    let text = |key| value.get(key).and_then(Value::as_str);
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    let Some(object) = value
        .as_object()
        .filter(|_| api_version == Some(V1ALPHA1) && kind == Some("PasswordRotation"))
    else {
        return Err(ConvertError::NotPasswordRotation {
            at,
            api_version: api_version.unwrap_or("<none>").to_owned(),
            kind: kind.unwrap_or("<none>").to_owned(),
        });
    };
    parse(object, &at).map_err(|p| ConvertError::Invalid {
        at,
        field: p.field,
        problem: p.problem,
    })
}

fn parse(object: &Map<String, Value>, at: &str) -> Result<Resource, Problem> {
    let metadata = required(object, "metadata")?;
    let name = string(metadata, "metadata.name")?
        .ok_or_else(|| Problem::new("metadata.name", "is missing"))?;
    let namespace = string(metadata, "metadata.namespace")?;

    let mut new_metadata = Map::new();
    new_metadata.insert("name".into(), name.into());
    if let Some(namespace) = namespace {
        new_metadata.insert("namespace".into(), namespace.into());
    }
    if let Some(labels) = mapping(metadata, "metadata.labels")?.filter(|l| !l.is_empty()) {
        new_metadata.insert("labels".into(), Value::Object(labels.clone()));
    }
    if let Some(annotations) = mapping(metadata, "metadata.annotations")? {
        let mut annotations = annotations.clone();
        annotations.remove(LAST_APPLIED);
        if !annotations.is_empty() {
            new_metadata.insert("annotations".into(), Value::Object(annotations));
        }
    }

    let spec = required(object, "spec")?;
    let (vendor, section) = vendor_section(required(spec, "spec.target")?)?;
    let mut connection = Map::new();
    let mut object_fields = Map::new();
    let mut objects = Vec::new();
    for (field, value) in section {
        let path = format!("spec.target.{}.{field}", vendor.name);
        if vendor.connection.contains(&field.as_str()) {
            connection.insert(field.clone(), value.clone());
        } else if vendor.objects.contains(&field.as_str()) {
            objects.extend(object_names(field, value).map_err(|p| Problem::new(path, p))?);
            object_fields.insert(field.clone(), value.clone());
        } else {
            return Err(Problem::new(path, "is not a v1alpha1 field"));
        }
    }
    if object_fields.is_empty() {
        return Err(Problem::new(
            format!("spec.target.{}", vendor.name),
            format!("has no {}", vendor.objects.join(" or ")),
        ));
    }
    let mode = match string(spec, "spec.mode")? {
        None | Some("AddThenDelete") => Mode::AddThenDelete,
        Some("Replace") => Mode::Replace,
        Some(_) => {
            return Err(Problem::new(
                "spec.mode",
                "is neither AddThenDelete nor Replace",
            ));
        }
    };

    Ok(Resource {
        at: at.to_owned(),
        namespace: namespace.map(str::to_owned),
        name: name.to_owned(),
        metadata: new_metadata,
        spec: spec.clone(),
        vendor: vendor.name,
        connection,
        object_fields,
        objects,
        mode,
    })
}

/// The one vendor section of `spec.target`.
fn vendor_section(
    target: &Map<String, Value>,
) -> Result<(&'static Vendor, &Map<String, Value>), Problem> {
    let mut sections = Vec::new();
    for (key, value) in target {
        let field = format!("spec.target.{key}");
        let vendor = VENDORS
            .iter()
            .find(|v| v.name == key)
            .ok_or_else(|| Problem::new(&field, "is not a v1alpha1 field"))?;
        let section = value
            .as_object()
            .ok_or_else(|| Problem::new(&field, "is not a mapping"))?;
        sections.push((vendor, section));
    }
    match sections[..] {
        [one] => Ok(one),
        [] => Err(Problem::new(
            "spec.target",
            "has no redisSoftware, redis or ontap section",
        )),
        _ => Err(Problem::new(
            "spec.target",
            "has more than one of the redisSoftware, redis and ontap sections",
        )),
    }
}

/// What the object field `field` names, as the RotationTarget's `allow.objects` lists it.
fn object_names(field: &str, value: &Value) -> Result<Vec<String>, &'static str> {
    match field {
        "databaseUid" => value
            .as_u64()
            .map(|uid| vec![uid.to_string()])
            .ok_or("is not a whole number"),
        "alternatingAccounts" => value
            .as_array()
            .and_then(|names| {
                names
                    .iter()
                    .map(|name| name.as_str().map(str::to_owned))
                    .collect()
            })
            .ok_or("is not a list of names"),
        _ => value
            .as_str()
            .map(|name| vec![name.to_owned()])
            .ok_or("is not a string"),
    }
}

/// `parent`'s member named by the last part of `field`; `None` when absent or null.
fn mapping<'a>(
    parent: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a Map<String, Value>>, Problem> {
    match parent.get(last_part(field)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(Problem::new(field, "is not a mapping")),
    }
}

fn required<'a>(
    parent: &'a Map<String, Value>,
    field: &str,
) -> Result<&'a Map<String, Value>, Problem> {
    mapping(parent, field)?.ok_or_else(|| Problem::new(field, "is missing"))
}

fn string<'a>(parent: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, Problem> {
    match parent.get(last_part(field)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(Problem::new(field, "is not a string")),
    }
}

fn last_part(field: &str) -> &str {
    field.rsplit_once('.').map_or(field, |(_, last)| last)
}

/// The credentials Secret names an admin login, which is what a RotationTarget stands for;
/// a self-service connection has none.
fn base_name(resource: &Resource) -> String {
    match resource.connection.get("credentialsSecret") {
        Some(Value::String(secret)) if !secret.is_empty() => secret.clone(),
        _ => format!("{}-target", resource.name),
    }
}

fn free_name(taken: &[Target<'_>], base: String) -> String {
    let is_free = |name: &String| taken.iter().all(|t| t.name != *name);
    if is_free(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(is_free)
        .expect("finitely many names are taken")
}

fn object_metadata(name: &str, namespace: Option<&str>) -> Map<String, Value> {
    let mut metadata = Map::new();
    metadata.insert("name".into(), name.into());
    if let Some(namespace) = namespace {
        metadata.insert("namespace".into(), namespace.into());
    }
    metadata
}

fn target_document(target: &Target<'_>, namespace: Option<&str>) -> Value {
    let mut spec = Map::new();
    spec.insert(
        target.vendor.into(),
        Value::Object(target.connection.clone()),
    );
    spec.insert(
        "allow".into(),
        json!({ "objects": target.objects, "modes": target.modes }),
    );
    json!({
        "apiVersion": V1ALPHA2,
        "kind": "RotationTarget",
        "metadata": object_metadata(&target.name, namespace),
        "spec": spec,
    })
}

fn rotation_document(resource: &Resource, target: String) -> Value {
    let mut new_target = Map::new();
    new_target.insert(
        "ref".into(),
        json!({ "kind": "RotationTarget", "name": target }),
    );
    new_target.extend(resource.object_fields.clone());
    let mut spec = resource.spec.clone();
    spec.insert("target".into(), Value::Object(new_target));
    json!({
        "apiVersion": V1ALPHA2,
        "kind": "PasswordRotation",
        "metadata": resource.metadata,
        "spec": spec,
    })
}

// serde_yaml writes YAML 1.2, where `yes`, `on`, `n` or `1_000` are strings and need no
// quotes; kubectl reads YAML 1.1, where they are not strings. So the documents are written
// here, with every string that is not plainly a string quoted.

fn write_document(out: &mut String, document: &Value) {
    out.push_str("---\n");
    write_block(out, document, 0);
}

/// Writes `value` in block style, its first line continuing the one `out` ends with, its
/// other lines indented by `indent`.
fn write_block(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (index, (key, item)) in map.iter().enumerate() {
                if index > 0 {
                    pad(out, indent);
                }
                write_string(out, key);
                out.push(':');
                match item {
                    Value::Object(inner) if !inner.is_empty() => {
                        out.push('\n');
                        pad(out, indent + 2);
                        write_block(out, item, indent + 2);
                    }
                    Value::Array(inner) if !inner.is_empty() => {
                        out.push('\n');
                        pad(out, indent);
                        write_block(out, item, indent);
                    }
                    _ => {
                        out.push(' ');
                        write_block(out, item, indent);
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    pad(out, indent);
                }
                out.push_str("- ");
                write_block(out, item, indent + 2);
            }
        }
        Value::String(text) => {
            write_string(out, text);
            out.push('\n');
        }
        // null, booleans, numbers, `{}` and `[]` read the same in JSON and in YAML.
        scalar => {
            write!(out, "{scalar}").expect("writing to a String");
            out.push('\n');
        }
    }
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn write_string(out: &mut String, text: &str) {
    if is_plain(text) {
        out.push_str(text);
        return;
    }
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            // Not printable in YAML, or a line break in YAML 1.1.
            c if c.is_control()
                || matches!(
                    c,
                    '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
                ) =>
            {
                write!(out, "\\u{:04x}", u32::from(c)).expect("writing to a String");
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Whether YAML 1.1 and 1.2 both read `text`, unquoted, as this string: a name, a path or a
/// URL, but none of the words that they read as booleans or null.
fn is_plain(text: &str) -> bool {
    const WORDS: [&str; 9] = ["y", "yes", "n", "no", "true", "false", "on", "off", "null"];
    text.starts_with(|c: char| c.is_ascii_alphabetic())
        && !text.ends_with(':')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '/' | ':'))
        && !WORDS.iter().any(|word| text.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rotation(namespace: &str, name: &str, target: Value) -> Value {
        json!({
            "apiVersion": "rotator.dev/v1alpha1",
            "kind": "PasswordRotation",
            "metadata": { "name": name, "namespace": namespace },
            "spec": { "target": target, "secret": { "name": format!("{name}-password") } },
        })
    }

    fn yaml(documents: &[Value]) -> String {
        documents
            .iter()
            .map(|d| format!("---\n{}", serde_yaml::to_string(d).unwrap()))
            .collect()
    }

    /// The output, read back.
    fn read_back(output: &str) -> Vec<Value> {
        assert!(output.starts_with("---\n"), "{output}");
        serde_yaml::Deserializer::from_str(output)
            .map(|document| Value::deserialize(document).unwrap())
            .collect()
    }

    fn converted(documents: &[Value]) -> Vec<Value> {
        read_back(&convert(&yaml(documents)).unwrap())
    }

    fn error(input: &str) -> ConvertError {
        match convert(input) {
            Ok(output) => panic!("converted:\n{output}"),
            Err(e) => e,
        }
    }

    fn of_kind<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
        documents.iter().filter(|d| d["kind"] == kind).collect()
    }

    fn reference(name: &str) -> Value {
        json!({ "kind": "RotationTarget", "name": name })
    }

    fn redis(user: &str) -> Value {
        json!({
            "redis": {
                "endpoints": ["redis:6379"],
                "credentialsSecret": "redis-admin",
                "user": user,
            },
        })
    }

    /// What the engine rotates is the same before and after: each converted resource,
    /// resolved on its converted target, is the v1alpha1 resource's target exactly.
    #[test]
    fn converted_objects_resolve_to_what_v1alpha1_rotated() {
        use crate::resource::PasswordRotation;
        use crate::rotation_spec::{Found, RotationSpec};
        use crate::rotation_target::{RotationTarget, TargetView};

        let rs = json!({"url": "https://rs:9443", "credentialsSecret": "rs-admin", "caSecret": {"name": "rs-ca", "key": "ca.crt"}});
        let mut user = rs.clone();
        user["user"] = json!("orders-app");
        let mut database = rs.clone();
        database["databaseUid"] = json!(3);
        let mut replace = rotation(
            "shop",
            "replaced",
            json!({"ontap": {"url": "https://ontap", "credentialsSecret": "ontap-admin", "account": "svc"}}),
        );
        replace["spec"]["mode"] = json!("Replace");
        let originals = [
            rotation("shop", "orders", json!({"redisSoftware": user})),
            rotation("shop", "db", json!({"redisSoftware": database})),
            rotation("shop", "cache", redis("app")),
            replace,
        ];
        let documents = converted(&originals);
        let targets: Vec<RotationTarget> = of_kind(&documents, "RotationTarget")
            .into_iter()
            .map(|t| serde_json::from_value(serde_json::to_value(t).unwrap()).unwrap())
            .collect();
        for original in &originals {
            let name = original["metadata"]["name"].as_str().unwrap();
            let converted: PasswordRotation = serde_json::from_value(
                serde_json::to_value(
                    of_kind(&documents, "PasswordRotation")
                        .into_iter()
                        .find(|r| r["metadata"]["name"] == name)
                        .unwrap(),
                )
                .unwrap(),
            )
            .unwrap();
            let reference = &converted.spec.target.reference;
            let target = targets
                .iter()
                .find(|t| t.metadata.name.as_deref() == Some(reference.name.as_str()))
                .unwrap();
            let resolved = RotationSpec::resolve(
                &converted.spec,
                "shop",
                Some(Found {
                    target: TargetView::of_namespaced(target),
                    secrets_namespace: "shop",
                    namespace_labels: None,
                }),
            )
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let before = RotationSpec::from_v1alpha1(original["spec"].clone());
            assert_eq!(resolved.target, before.target, "{name}");
            assert_eq!(resolved.mode, before.mode, "{name}");
        }
    }

    #[test]
    fn a_user_and_a_database_on_one_connection_share_a_target() {
        let connection = json!({
            "url": "https://rs.shop.svc:9443",
            "credentialsSecret": "rs-admin",
            "caSecret": { "name": "rs-ca", "key": "ca.crt" },
        });
        let with = |field: &str, value: Value| {
            let mut section = connection.clone();
            section[field] = value;
            json!({ "redisSoftware": section })
        };
        let out = converted(&[
            rotation("shop", "orders", with("user", json!("orders-app"))),
            rotation("shop", "cache", with("databaseUid", json!(3))),
        ]);

        assert_eq!(out.len(), 3);
        let target = &out[0];
        assert_eq!(target["apiVersion"], "rotator.dev/v1alpha2");
        assert_eq!(target["kind"], "RotationTarget");
        assert_eq!(
            target["metadata"],
            json!({ "name": "rs-admin", "namespace": "shop" })
        );
        assert_eq!(target["spec"]["redisSoftware"], connection);
        assert_eq!(
            target["spec"]["allow"],
            json!({ "objects": ["3", "orders-app"], "modes": ["AddThenDelete"] })
        );

        let (orders, cache) = (&out[1], &out[2]);
        assert_eq!(orders["apiVersion"], "rotator.dev/v1alpha2");
        assert_eq!(orders["kind"], "PasswordRotation");
        assert_eq!(orders["metadata"]["name"], "orders");
        assert_eq!(
            orders["spec"]["target"],
            json!({ "ref": reference("rs-admin"), "user": "orders-app" })
        );
        assert_eq!(
            cache["spec"]["target"],
            json!({ "ref": reference("rs-admin"), "databaseUid": 3 })
        );
    }

    #[test]
    fn one_secret_name_on_two_connections_names_two_targets() {
        let on = |url: &str, user: &str| {
            json!({
                "redisSoftware": { "url": url, "credentialsSecret": "rs-admin", "user": user },
            })
        };
        let out = converted(&[
            rotation("shop", "orders", on("https://east:9443", "orders")),
            rotation("shop", "billing", on("https://west:9443", "billing")),
            rotation("shop", "stock", on("https://east:9443", "stock")),
        ]);

        let targets = of_kind(&out, "RotationTarget");
        let summary: Vec<_> = targets
            .iter()
            .map(|t| {
                (
                    t["metadata"]["name"].clone(),
                    t["spec"]["redisSoftware"]["url"].clone(),
                    t["spec"]["allow"]["objects"].clone(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    json!("rs-admin"),
                    json!("https://east:9443"),
                    json!(["orders", "stock"])
                ),
                (
                    json!("rs-admin-2"),
                    json!("https://west:9443"),
                    json!(["billing"])
                ),
            ]
        );
        let refs: Vec<_> = of_kind(&out, "PasswordRotation")
            .iter()
            .map(|r| r["spec"]["target"]["ref"]["name"].clone())
            .collect();
        assert_eq!(
            refs,
            [json!("rs-admin"), json!("rs-admin-2"), json!("rs-admin")]
        );
    }

    #[test]
    fn alternating_accounts_are_both_allowed_and_replace_joins_the_modes() {
        let connection = json!({
            "url": "https://cluster1.example.internal",
            "credentialsSecret": "ontap-admin",
            "svm": "svm1",
        });
        let mut alternating = connection.clone();
        alternating["alternatingAccounts"] = json!(["app-green", "app-blue"]);
        let mut single = connection.clone();
        single["account"] = json!("reports");
        let mut replacing = rotation("shop", "reports", json!({ "ontap": single }));
        replacing["spec"]["mode"] = json!("Replace");

        let out = converted(&[
            rotation("shop", "app", json!({ "ontap": alternating })),
            replacing,
        ]);

        assert_eq!(out.len(), 3);
        assert_eq!(out[0]["metadata"]["name"], "ontap-admin");
        assert_eq!(out[0]["spec"]["ontap"], connection);
        assert_eq!(
            out[0]["spec"]["allow"],
            json!({
                "objects": ["app-blue", "app-green", "reports"],
                "modes": ["AddThenDelete", "Replace"],
            })
        );
        assert_eq!(
            out[1]["spec"]["target"],
            json!({
                "ref": reference("ontap-admin"),
                "alternatingAccounts": ["app-green", "app-blue"],
            })
        );
        assert_eq!(
            out[2]["spec"]["target"],
            json!({ "ref": reference("ontap-admin"), "account": "reports" })
        );
        assert_eq!(out[2]["spec"]["mode"], "Replace");
    }

    #[test]
    fn redis_connection_fields_move_to_the_target() {
        let connection = json!({
            "endpoints": ["redis-0.redis:6379", "redis-1.redis:6379"],
            "discover": false,
            "credentialsSecret": "redis-admin",
            "caSecret": { "name": "redis-ca", "key": "ca.crt" },
            "tls": { "serverName": "redis.shop.svc" },
            "insecurePlaintext": false,
        });
        let mut section = connection.clone();
        section["user"] = json!("orders");

        let out = converted(&[rotation("shop", "orders", json!({ "redis": section }))]);

        assert_eq!(out[0]["spec"]["redis"], connection);
        assert_eq!(out[0]["spec"]["allow"]["objects"], json!(["orders"]));
        assert_eq!(
            out[1]["spec"]["target"],
            json!({ "ref": reference("redis-admin"), "user": "orders" })
        );
    }

    #[test]
    fn self_service_names_the_target_after_the_resource() {
        let section = json!({ "url": "https://cluster1.example.internal", "account": "backup" });
        let out = converted(&[rotation("ops", "backup", json!({ "ontap": section }))]);

        assert_eq!(out[0]["metadata"]["name"], "backup-target");
        assert_eq!(
            out[0]["spec"]["ontap"],
            json!({ "url": "https://cluster1.example.internal" })
        );
        assert_eq!(out[1]["spec"]["target"]["ref"], reference("backup-target"));
    }

    #[test]
    fn resources_without_a_namespace_share_targets_among_themselves_only() {
        let mut first = rotation("", "orders", redis("orders"));
        let mut second = rotation("", "billing", redis("billing"));
        for resource in [&mut first, &mut second] {
            resource["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("namespace");
        }

        let out = converted(&[first, rotation("shop", "stock", redis("stock")), second]);

        let targets = of_kind(&out, "RotationTarget");
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[0]["metadata"], json!({ "name": "redis-admin" }));
        assert_eq!(
            targets[0]["spec"]["allow"]["objects"],
            json!(["billing", "orders"])
        );
        assert_eq!(
            targets[1]["metadata"],
            json!({ "name": "redis-admin", "namespace": "shop" })
        );
        let rotations = of_kind(&out, "PasswordRotation");
        assert_eq!(rotations[0]["metadata"], json!({ "name": "orders" }));
        assert_eq!(rotations[2]["metadata"], json!({ "name": "billing" }));
    }

    /// As `kubectl get pwrot -A -o yaml` prints them.
    const KUBECTL_LIST: &str = r#"apiVersion: v1
items:
- apiVersion: rotator.dev/v1alpha1
  kind: PasswordRotation
  metadata:
    annotations:
      kubectl.kubernetes.io/last-applied-configuration: |
        {"apiVersion":"rotator.dev/v1alpha1","kind":"PasswordRotation","metadata":{"name":"orders"}}
      team.example.com/owner: payments
    creationTimestamp: "2025-03-01T10:00:00Z"
    finalizers:
    - rotator.dev/cleanup
    generation: 4
    labels:
      app: orders
    managedFields:
    - apiVersion: rotator.dev/v1alpha1
      fieldsType: FieldsV1
      manager: kubectl-client-side-apply
      operation: Update
      time: "2025-03-01T10:00:00Z"
    name: orders
    namespace: shop
    resourceVersion: "81234"
    uid: 7c0e2a52-0d3c-4b8e-9a53-2f1f6f3f9a11
  spec:
    mode: AddThenDelete
    password:
      length: 32
    rollout:
      overlap: 10m
      workloads:
      - kind: Deployment
        name: orders
    rotationRequest: "2"
    schedule:
      every: 720h
    secret:
      name: orders-redis
    suspend: false
    target:
      redisSoftware:
        credentialsSecret: rs-admin
        url: https://rs.shop.svc:9443
        user: orders-app
  status:
    lastRotationTime: "2025-03-01T10:05:00Z"
    observedGeneration: 4
    phase: Idle
- apiVersion: rotator.dev/v1alpha1
  kind: PasswordRotation
  metadata:
    creationTimestamp: "2025-03-02T09:00:00Z"
    generation: 1
    name: billing
    namespace: billing
    resourceVersion: "90001"
    uid: 0b9c3c1e-5d7a-4f0e-8f43-6f3b8a1d2c44
  spec:
    secret:
      name: billing-redis
    target:
      redis:
        caSecret:
          key: ca.crt
          name: redis-ca
        credentialsSecret: redis-admin
        endpoints:
        - redis-0.redis.billing:6379
        user: billing
  status:
    phase: Idle
kind: List
metadata:
  resourceVersion: ""
"#;

    #[test]
    fn a_list_converts_item_by_item() {
        let out = read_back(&convert(KUBECTL_LIST).unwrap());

        let names: Vec<_> = out
            .iter()
            .map(|d| {
                format!(
                    "{} {}/{}",
                    d["kind"].as_str().unwrap(),
                    d["metadata"]["namespace"].as_str().unwrap(),
                    d["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                "RotationTarget billing/redis-admin",
                "RotationTarget shop/rs-admin",
                "PasswordRotation shop/orders",
                "PasswordRotation billing/billing",
            ]
        );
    }

    #[test]
    fn status_and_server_metadata_are_dropped_and_the_spec_kept() {
        let input: Value = serde_yaml::from_str(KUBECTL_LIST).unwrap();
        let out = read_back(&convert(KUBECTL_LIST).unwrap());
        let orders = &out[2];

        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(orders), ["apiVersion", "kind", "metadata", "spec"]);
        assert_eq!(
            keys(&orders["metadata"]),
            ["annotations", "labels", "name", "namespace"]
        );
        assert_eq!(orders["metadata"]["labels"], json!({ "app": "orders" }));

        let without_target = |spec: &Value| {
            let mut spec = spec.clone();
            spec.as_object_mut().unwrap().remove("target");
            spec
        };
        assert_eq!(
            without_target(&orders["spec"]),
            without_target(&input["items"][0]["spec"])
        );
        assert_eq!(keys(&out[3]["metadata"]), ["name", "namespace"]);
    }

    #[test]
    fn the_last_applied_annotation_is_dropped_and_the_others_kept() {
        let out = read_back(&convert(KUBECTL_LIST).unwrap());

        assert_eq!(
            out[2]["metadata"]["annotations"],
            json!({ "team.example.com/owner": "payments" })
        );

        let list: Value = serde_yaml::from_str(KUBECTL_LIST).unwrap();
        let mut item = list["items"][0].clone();
        item["metadata"]["annotations"]
            .as_object_mut()
            .unwrap()
            .remove("team.example.com/owner");
        let out = converted(&[item]);
        assert!(out[1]["metadata"].get("annotations").is_none());
    }

    #[test]
    fn no_resources_convert_to_nothing() {
        for input in ["", "---\n", "apiVersion: v1\nkind: List\nitems: []\n"] {
            assert_eq!(convert(input).unwrap(), "", "{input:?}");
        }
    }

    #[test]
    fn a_v1alpha2_resource_is_refused() {
        let mut resource = rotation(
            "shop",
            "orders",
            json!({ "ref": { "kind": "RotationTarget", "name": "rs-admin" } }),
        );
        resource["apiVersion"] = json!("rotator.dev/v1alpha2");

        assert_eq!(
            error(&yaml(&[resource])).to_string(),
            "document 1 (shop/orders): not a rotator.dev/v1alpha1 PasswordRotation \
             (apiVersion rotator.dev/v1alpha2, kind PasswordRotation)"
        );
        assert_eq!(
            error("apiVersion: v1\nkind: Secret\n").to_string(),
            "document 1: not a rotator.dev/v1alpha1 PasswordRotation (apiVersion v1, kind Secret)"
        );
    }

    #[test]
    fn a_target_without_a_vendor_section_is_refused() {
        let valid = rotation("shop", "stock", redis("stock"));
        let e = error(&yaml(&[valid, rotation("shop", "orders", json!({}))]));

        assert_eq!(
            e.to_string(),
            "document 2 (shop/orders): spec.target has no redisSoftware, redis or ontap section"
        );
    }

    #[test]
    fn an_unknown_field_of_a_vendor_section_is_refused() {
        let section =
            json!({ "endpoints": ["redis:6379"], "credentialsSecret": "a", "user": "u", "foo": 1 });
        let e = error(&yaml(&[rotation(
            "shop",
            "orders",
            json!({ "redis": section }),
        )]));

        assert!(
            matches!(&e, ConvertError::Invalid { field, .. } if field == "spec.target.redis.foo"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "document 1 (shop/orders): spec.target.redis.foo is not a v1alpha1 field"
        );
    }

    #[test]
    fn errors_place_list_items_and_name_no_values() {
        let mut input: Value = serde_yaml::from_str(KUBECTL_LIST).unwrap();
        input["items"][1]["spec"]["mode"] = json!("Hunter2");
        let e = error(&serde_yaml::to_string(&input).unwrap()).to_string();

        assert_eq!(
            e,
            "document 1, item 2 (billing/billing): spec.mode is neither AddThenDelete nor Replace"
        );
    }

    #[test]
    fn a_repeated_resource_is_refused() {
        let resource = rotation("shop", "orders", redis("orders"));
        let e = error(&yaml(&[resource.clone(), resource]));

        assert_eq!(
            e.to_string(),
            "document 2 (shop/orders): the same PasswordRotation as document 1 (shop/orders)"
        );
    }

    #[test]
    fn broken_yaml_names_its_document() {
        let broken = "spec: [\n";
        let e = error(broken);
        assert!(matches!(e, ConvertError::Yaml { document: 1, .. }), "{e:?}");

        let valid = yaml(&[rotation("shop", "orders", redis("orders"))]);
        let e = error(&format!("{valid}---\n{broken}"));
        assert!(matches!(e, ConvertError::Yaml { document: 2, .. }), "{e:?}");
    }

    #[test]
    fn strings_that_yaml_1_1_reads_as_other_values_are_quoted() {
        let mut resource = rotation("shop", "orders", redis("n"));
        resource["metadata"]["labels"] = json!({ "critical": "yes", "tier": "on" });
        let output = convert(&yaml(&[resource])).unwrap();

        for line in [
            "critical: \"yes\"",
            "tier: \"on\"",
            "user: \"n\"",
            "- \"n\"",
        ] {
            assert!(output.contains(line), "{line} in\n{output}");
        }
        assert_eq!(
            read_back(&output)[1]["metadata"]["labels"]["critical"],
            "yes"
        );
        for word in [
            "Yes",
            "NO",
            "off",
            "y",
            "true",
            "Null",
            "~",
            "1_000",
            "0x1F",
            ".inf",
            "12:30",
            "2001-12-14",
            "<<",
            "=",
            "",
            "a:",
            "a b",
        ] {
            assert!(!is_plain(word), "{word:?}");
        }
        for word in [
            "orders-app",
            "rotator.dev/shard",
            "https://rs.shop.svc:9443",
            "AddThenDelete",
        ] {
            assert!(is_plain(word), "{word:?}");
        }
    }

    fn strings() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[a-zA-Z0-9 ._/:#'\"\\\\-]{0,12}",
            prop::sample::select(vec![
                "yes",
                "No",
                "on",
                "null",
                "~",
                "1_000",
                "3",
                "- a",
                "a: b",
                "? x",
                "!tag",
                "&a",
                "*a",
                "|",
                ">",
                "%x",
                "@x",
                "`x",
                "\n",
                "a\tb",
                "\r",
                "\u{7f}",
                "\u{85}",
                "\u{2028}",
                "\u{feff}x",
                "\u{fffe}",
            ])
            .prop_map(str::to_owned),
        ]
    }

    fn values() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            strings().prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(strings(), inner, 0..4)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn documents_read_back_as_written(
            document in prop::collection::btree_map(strings(), values(), 1..5),
        ) {
            let document = Value::Object(document.into_iter().collect());
            let mut out = String::new();
            write_document(&mut out, &document);
            prop_assert_eq!(read_back(&out), vec![document], "{}", out);
        }
    }
}
