//! `cargo xtask protocol-check [--codex PATH]`: compares the App Server Protocol schema of an
//! installed codex with the one vendored in `codex-asp/schema/`.
//!
//! The installed codex generates its schema (`codex app-server generate-json-schema`, stable
//! and `--experimental`) into a temporary directory. The report lists, for client requests,
//! client notifications, server notifications and server requests, the methods added,
//! removed and changed (a method changed when its params schema, or any definition that
//! schema reaches through `$ref`, differs), then the changed definitions and files. Exit
//! status 0 means the generated schema is byte-identical to the vendored one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The bundle holding every definition of one schema flavour.
const BUNDLE: &str = "codex_app_server_protocol.schemas.json";

/// The message unions under the bundle's `definitions`, with their report titles.
const UNIONS: [(&str, &str); 4] = [
    ("ClientRequest", "client requests"),
    ("ClientNotification", "client notifications"),
    ("ServerNotification", "server notifications"),
    ("ServerRequest", "server requests"),
];

/// At most this many names are listed per group of definitions or files.
const LIST_LIMIT: usize = 30;

/// Runs the check with `codex` and prints the report; an error when the schemas differ.
pub(crate) fn run(codex: &Path) -> Result<()> {
    let schema_root = crate::workspace_root().join("codex-asp").join("schema");
    let report = check(codex, &schema_root, crate::PINNED_CODEX_VERSION)?;
    print!("{}", report.render());
    if report.is_identical() {
        return Ok(());
    }
    println!();
    println!("{}", revendor_hint(&schema_root, codex));
    bail!(
        "the schema of {} differs from codex-asp/schema/{}",
        report.codex_version,
        crate::PINNED_CODEX_VERSION
    )
}

/// Re-vendors the schema: regenerates `codex-asp/schema/{PINNED}/` (the whole stable output)
/// and `codex-asp/schema/{PINNED}-experimental/` (only the bundle) with `codex`, then prints
/// the comparison with what was there before.
pub(crate) fn update(codex: &Path) -> Result<()> {
    let schema_root = crate::workspace_root().join("codex-asp").join("schema");
    let vendored = crate::PINNED_CODEX_VERSION;
    let version = codex_version(codex)?;
    if !version.contains(vendored) {
        bail!(
            "{} is {version}, not the pinned {vendored}: move the pin first (the vendored \
             directory is named after the version)",
            codex.display()
        );
    }
    let stable_dir = schema_root.join(vendored);
    let experimental_dir = schema_root.join(format!("{vendored}-experimental"));
    let generated_experimental = TempDir::new()?;
    generate(codex, generated_experimental.path(), true)?;
    if stable_dir.exists() {
        std::fs::remove_dir_all(&stable_dir)
            .with_context(|| format!("cannot remove {}", stable_dir.display()))?;
    }
    std::fs::create_dir_all(&stable_dir)
        .with_context(|| format!("cannot create {}", stable_dir.display()))?;
    generate(codex, &stable_dir, false)?;
    std::fs::create_dir_all(&experimental_dir)
        .with_context(|| format!("cannot create {}", experimental_dir.display()))?;
    std::fs::copy(
        generated_experimental.path().join(BUNDLE),
        experimental_dir.join(BUNDLE),
    )
    .with_context(|| format!("cannot write {}", experimental_dir.join(BUNDLE).display()))?;
    println!(
        "re-vendored {} and {} from {version}; `git diff --stat codex-asp/schema` shows what changed",
        stable_dir.display(),
        experimental_dir.display()
    );
    Ok(())
}

/// Generates the schema with `codex` and compares it with `schema_root/{vendored}` and
/// `schema_root/{vendored}-experimental`.
fn check(codex: &Path, schema_root: &Path, vendored: &str) -> Result<Report> {
    if !codex.exists() {
        bail!(
            "{} does not exist: run `cargo xtask codex` (or pass --codex PATH / set CODEX_BIN)",
            codex.display()
        );
    }
    let stable_dir = schema_root.join(vendored);
    let experimental_dir = schema_root.join(format!("{vendored}-experimental"));
    for dir in [&stable_dir, &experimental_dir] {
        if !dir.join(BUNDLE).is_file() {
            bail!("{} has no {BUNDLE}", dir.display());
        }
    }
    let codex_version = codex_version(codex)?;
    let generated_stable = TempDir::new()?;
    let generated_experimental = TempDir::new()?;
    generate(codex, generated_stable.path(), false)?;
    generate(codex, generated_experimental.path(), true)?;

    let old_stable = load(&stable_dir.join(BUNDLE))?;
    let new_stable = load(&generated_stable.path().join(BUNDLE))?;
    let old_experimental = load(&experimental_dir.join(BUNDLE))?;
    let new_experimental = load(&generated_experimental.path().join(BUNDLE))?;

    let unions = UNIONS
        .iter()
        .map(|&(union, title)| {
            let stable = diff_union(&old_stable, &new_stable, union);
            let experimental = diff_union(&old_experimental, &new_experimental, union);
            (title, merge(stable, experimental))
        })
        .collect();

    let mut definitions = diff_maps(&all_definitions(&old_stable), &all_definitions(&new_stable));
    let experimental_definitions = diff_maps(
        &all_definitions(&old_experimental),
        &all_definitions(&new_experimental),
    );
    definitions.absorb(experimental_definitions);

    let mut files = diff_trees(&stable_dir, generated_stable.path(), vendored)?;
    // Only the bundle of the experimental flavour is vendored.
    let experimental_name = format!("{vendored}-experimental/{BUNDLE}");
    let old = std::fs::read(experimental_dir.join(BUNDLE))?;
    let new = std::fs::read(generated_experimental.path().join(BUNDLE))?;
    if old != new {
        files.changed.push(experimental_name);
    }

    Ok(Report {
        codex: codex.to_path_buf(),
        codex_version,
        vendored: vendored.to_owned(),
        unions,
        definitions,
        files,
    })
}

/// `codex --version`, e.g. `codex-cli 0.169.0`.
fn codex_version(codex: &Path) -> Result<String> {
    let output = Command::new(codex)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {} --version", codex.display()))?;
    if !output.status.success() {
        bail!(
            "{} --version failed ({}): {}",
            codex.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// `codex app-server generate-json-schema --out OUT [--experimental]`.
fn generate(codex: &Path, out: &Path, experimental: bool) -> Result<()> {
    let mut command = Command::new(codex);
    command
        .args(["app-server", "generate-json-schema", "--out"])
        .arg(out);
    if experimental {
        command.arg("--experimental");
    }
    let output = command
        .output()
        .with_context(|| format!("cannot run {}", crate::describe(&command)))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            crate::describe(&command),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn load(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "xtask-protocol-check-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `method → params schema` (`Null` when the entry has no `params`) of one union.
fn methods<'a>(bundle: &'a Value, union: &str) -> BTreeMap<&'a str, &'a Value> {
    static ABSENT: Value = Value::Null;
    bundle["definitions"][union]["oneOf"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let method = entry["properties"]["method"]["enum"][0].as_str()?;
            let params = entry["properties"].get("params").unwrap_or(&ABSENT);
            Some((method, params))
        })
        .collect()
}

/// Every `$ref` target reachable from `schema`, by reference (`#/definitions/...`); `None`
/// for a reference that does not resolve.
fn closure<'a>(bundle: &'a Value, schema: &'a Value) -> BTreeMap<String, Option<&'a Value>> {
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut seen = BTreeMap::new();
    let mut todo = Vec::new();
    refs(schema, &mut todo);
    while let Some(reference) = todo.pop() {
        if seen.contains_key(reference) {
            continue;
        }
        let target = reference
            .strip_prefix('#')
            .and_then(|pointer| bundle.pointer(pointer));
        if let Some(target) = target {
            refs(target, &mut todo);
        }
        seen.insert(reference.to_owned(), target);
    }
    seen
}

/// A `$ref` without its `#/definitions/` prefix.
fn short(reference: &str) -> &str {
    reference
        .strip_prefix("#/definitions/")
        .unwrap_or(reference)
}

/// How a params schema is named in the report.
fn params_name(params: &Value) -> String {
    if let Some(r) = params.get("$ref").and_then(Value::as_str) {
        return short(r).to_owned();
    }
    if params.is_null() {
        return "no params".to_owned();
    }
    let mut names = Vec::new();
    if let Some(branches) = params.get("anyOf").and_then(Value::as_array) {
        for branch in branches {
            match (
                branch.get("$ref").and_then(Value::as_str),
                branch.get("type"),
            ) {
                (Some(r), _) => names.push(short(r).to_owned()),
                (None, Some(Value::String(t))) => names.push(t.clone()),
                _ => names.push("inline".to_owned()),
            }
        }
        return names.join(" | ");
    }
    match params.get("type").and_then(Value::as_str) {
        Some(t) => t.to_owned(),
        None => "inline schema".to_owned(),
    }
}

/// One method in a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Method {
    name: String,
    /// Found only through the `--experimental` schemas.
    experimental: bool,
}

/// A method whose params changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Changed {
    method: Method,
    /// The params type in the generated schema.
    params: String,
    /// What differs: `params` (the params schema itself) and the changed definitions.
    what: Vec<String>,
}

/// The differences of one message union.
#[derive(Debug, Default, PartialEq, Eq)]
struct UnionDiff {
    added: Vec<Method>,
    removed: Vec<Method>,
    changed: Vec<Changed>,
}

impl UnionDiff {
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Compares one union of two bundles (`experimental` is false; see [`merge`]).
fn diff_union(old: &Value, new: &Value, union: &str) -> UnionDiff {
    let old_methods = methods(old, union);
    let new_methods = methods(new, union);
    let method = |name: &str| Method {
        name: name.to_owned(),
        experimental: false,
    };
    let mut diff = UnionDiff::default();
    for (name, new_params) in &new_methods {
        let Some(old_params) = old_methods.get(name) else {
            diff.added.push(method(name));
            continue;
        };
        let mut what = Vec::new();
        if old_params != new_params {
            what.push("params".to_owned());
        }
        let old_defs = closure(old, old_params);
        let new_defs = closure(new, new_params);
        let references: BTreeSet<&String> = old_defs.keys().chain(new_defs.keys()).collect();
        for reference in references {
            if old_defs.get(reference) != new_defs.get(reference) {
                what.push(short(reference).to_owned());
            }
        }
        if !what.is_empty() {
            diff.changed.push(Changed {
                method: method(name),
                params: params_name(new_params),
                what,
            });
        }
    }
    for name in old_methods.keys() {
        if !new_methods.contains_key(name) {
            diff.removed.push(method(name));
        }
    }
    diff
}

/// The stable diff, plus what only the experimental diff shows (flagged `experimental`).
fn merge(mut stable: UnionDiff, experimental: UnionDiff) -> UnionDiff {
    fn extend(into: &mut Vec<Method>, from: Vec<Method>) {
        for mut method in from {
            if !into.iter().any(|m| m.name == method.name) {
                method.experimental = true;
                into.push(method);
            }
        }
    }
    extend(&mut stable.added, experimental.added);
    extend(&mut stable.removed, experimental.removed);
    for mut changed in experimental.changed {
        if !stable
            .changed
            .iter()
            .any(|c| c.method.name == changed.method.name)
        {
            changed.method.experimental = true;
            stable.changed.push(changed);
        }
    }
    stable.added.sort_by(|a, b| a.name.cmp(&b.name));
    stable.removed.sort_by(|a, b| a.name.cmp(&b.name));
    stable
        .changed
        .sort_by(|a, b| a.method.name.cmp(&b.method.name));
    stable
}

/// Whether a `definitions` member is a namespace of definitions (like `v2`) rather than a
/// schema.
fn is_namespace(value: &Value) -> bool {
    const KEYWORDS: [&str; 12] = [
        "$ref",
        "type",
        "oneOf",
        "anyOf",
        "allOf",
        "enum",
        "const",
        "properties",
        "items",
        "title",
        "description",
        "required",
    ];
    value.as_object().is_some_and(|map| {
        !map.is_empty()
            && map.values().all(Value::is_object)
            && !KEYWORDS.iter().any(|k| map.contains_key(*k))
    })
}

/// Every definition of a bundle by name (`Name`, `v2/Name`).
fn all_definitions(bundle: &Value) -> BTreeMap<String, &Value> {
    let mut out = BTreeMap::new();
    if let Some(map) = bundle["definitions"].as_object() {
        for (name, value) in map {
            match value.as_object() {
                Some(inner) if is_namespace(value) => {
                    for (inner_name, inner_value) in inner {
                        out.insert(format!("{name}/{inner_name}"), inner_value);
                    }
                }
                _ => {
                    out.insert(name.clone(), value);
                }
            }
        }
    }
    out
}

/// Names added, removed or changed between two maps.
#[derive(Debug, Default, PartialEq, Eq)]
struct NameDiff {
    added: Vec<String>,
    removed: Vec<String>,
    changed: Vec<String>,
}

impl NameDiff {
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// Adds the names of `other` that are not there yet.
    fn absorb(&mut self, other: NameDiff) {
        for (into, from) in [
            (&mut self.added, other.added),
            (&mut self.removed, other.removed),
            (&mut self.changed, other.changed),
        ] {
            for name in from {
                if !into.contains(&name) {
                    into.push(name);
                }
            }
            into.sort();
        }
    }
}

fn diff_maps<V: PartialEq>(old: &BTreeMap<String, V>, new: &BTreeMap<String, V>) -> NameDiff {
    let mut diff = NameDiff::default();
    for (name, value) in new {
        match old.get(name) {
            None => diff.added.push(name.clone()),
            Some(old_value) if old_value != value => diff.changed.push(name.clone()),
            Some(_) => {}
        }
    }
    diff.removed = old
        .keys()
        .filter(|name| !new.contains_key(*name))
        .cloned()
        .collect();
    diff
}

/// Every file under `dir`, by path relative to it (with `/`), with its contents.
fn files(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) -> Result<()> {
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else {
                let relative = path.strip_prefix(root).unwrap_or(&path);
                let name = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                let bytes = std::fs::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                out.insert(name, bytes);
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

/// Compares two file trees; names are prefixed with `label/`.
fn diff_trees(old: &Path, new: &Path, label: &str) -> Result<NameDiff> {
    let mut diff = diff_maps(&files(old)?, &files(new)?);
    for name in diff
        .added
        .iter_mut()
        .chain(&mut diff.removed)
        .chain(&mut diff.changed)
    {
        *name = format!("{label}/{name}");
    }
    Ok(diff)
}

/// The outcome of a check.
#[derive(Debug)]
struct Report {
    codex: PathBuf,
    codex_version: String,
    vendored: String,
    unions: Vec<(&'static str, UnionDiff)>,
    definitions: NameDiff,
    files: NameDiff,
}

impl Report {
    fn is_identical(&self) -> bool {
        self.files.is_empty()
            && self.definitions.is_empty()
            && self.unions.iter().all(|(_, diff)| diff.is_empty())
    }

    fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "protocol-check: {} ({}) against codex-asp/schema/{} and {}-experimental",
            self.codex_version,
            self.codex.display(),
            self.vendored,
            self.vendored
        );
        let tag = |m: &Method| {
            if m.experimental {
                " (experimental)"
            } else {
                ""
            }
        };
        for (title, diff) in &self.unions {
            if diff.is_empty() {
                let _ = writeln!(out, "{title}: no change");
                continue;
            }
            let _ = writeln!(
                out,
                "{title}: {} added, {} removed, {} changed",
                diff.added.len(),
                diff.removed.len(),
                diff.changed.len()
            );
            for method in &diff.added {
                let _ = writeln!(out, "  + {}{}", method.name, tag(method));
            }
            for method in &diff.removed {
                let _ = writeln!(out, "  - {}{}", method.name, tag(method));
            }
            for changed in &diff.changed {
                let _ = writeln!(
                    out,
                    "  ~ {}{} ({}): {}",
                    changed.method.name,
                    tag(&changed.method),
                    changed.params,
                    limited(&changed.what, 8)
                );
            }
        }
        for (title, diff) in [("definitions", &self.definitions), ("files", &self.files)] {
            if diff.is_empty() {
                let _ = writeln!(out, "{title}: no change");
                continue;
            }
            let _ = writeln!(
                out,
                "{title}: {} added, {} removed, {} changed",
                diff.added.len(),
                diff.removed.len(),
                diff.changed.len()
            );
            for (sign, names) in [
                ("+", &diff.added),
                ("-", &diff.removed),
                ("~", &diff.changed),
            ] {
                if !names.is_empty() {
                    let _ = writeln!(out, "  {sign} {}", limited(names, LIST_LIMIT));
                }
            }
        }
        let _ = writeln!(
            out,
            "{}",
            if self.is_identical() {
                "identical to the vendored schema"
            } else {
                "DIFFERENT from the vendored schema"
            }
        );
        out
    }
}

/// `a, b, c` or `a, b, ... and N more`.
fn limited(names: &[String], limit: usize) -> String {
    let mut text = names
        .iter()
        .take(limit)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > limit {
        let _ = write!(text, ", ... and {} more", names.len() - limit);
    }
    text
}

/// How to re-vendor the schema: the commands of `codex-asp/schema/README.md`.
fn revendor_hint(schema_root: &Path, codex: &Path) -> String {
    let readme = schema_root.join("README.md");
    let commands = std::fs::read_to_string(&readme)
        .ok()
        .and_then(|text| regenerate_commands(&text));
    let mut out = format!(
        "To re-vendor the schema, follow \"Regenerating\" in {}",
        readme.display()
    );
    match commands {
        Some(commands) => {
            out.push_str(", from the workspace root:\n\n");
            for line in commands.lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
        None => out.push_str(".\n"),
    }
    let pinned = crate::codex_bin(crate::PINNED_CODEX_VERSION);
    if codex != pinned {
        let _ = write!(
            out,
            "\n(with CODEX={}; another codex version goes into a new directory named after \
             it, as the README says)\n",
            codex.display()
        );
    }
    out
}

/// The `sh` block of the README's "Regenerating" section.
fn regenerate_commands(readme: &str) -> Option<String> {
    let section = &readme[readme.find("## Regenerating")?..];
    let start = section.find("```sh\n")? + "```sh\n".len();
    let end = start + section[start..].find("```")?;
    Some(section[start..end].trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A bundle with one client request `a` (params `A`, which references `B`) and one
    /// server notification `n`.
    fn bundle(b_type: &str) -> Value {
        json!({
            "definitions": {
                "ClientRequest": {"oneOf": [
                    {"properties": {
                        "method": {"enum": ["a"]},
                        "params": {"$ref": "#/definitions/v2/A"}
                    }},
                    {"properties": {
                        "method": {"enum": ["none"]},
                        "params": {"type": "null"}
                    }}
                ]},
                "ServerNotification": {"oneOf": [
                    {"properties": {"method": {"enum": ["n"]}, "params": {"$ref": "#/definitions/N"}}}
                ]},
                "N": {"type": "object"},
                "v2": {
                    "A": {"type": "object", "properties": {"b": {"$ref": "#/definitions/v2/B"}}},
                    "B": {"type": b_type}
                }
            }
        })
    }

    #[test]
    fn identical_bundles_have_no_diff() {
        for (union, _) in UNIONS {
            assert!(diff_union(&bundle("string"), &bundle("string"), union).is_empty());
        }
        assert!(
            diff_maps(
                &all_definitions(&bundle("x")),
                &all_definitions(&bundle("x"))
            )
            .is_empty()
        );
    }

    #[test]
    fn a_change_behind_a_ref_changes_the_method() {
        let diff = diff_union(&bundle("string"), &bundle("integer"), "ClientRequest");
        assert!(diff.added.is_empty() && diff.removed.is_empty());
        assert_eq!(diff.changed.len(), 1);
        assert_eq!(diff.changed[0].method.name, "a");
        assert_eq!(diff.changed[0].params, "v2/A");
        assert_eq!(diff.changed[0].what, ["v2/B"]);
        let defs = diff_maps(
            &all_definitions(&bundle("string")),
            &all_definitions(&bundle("integer")),
        );
        assert_eq!(defs.changed, ["v2/B"]);
        assert!(defs.added.is_empty() && defs.removed.is_empty());
    }

    #[test]
    fn added_removed_and_experimental_methods() {
        let old = bundle("string");
        let mut new = bundle("string");
        let requests = new["definitions"]["ClientRequest"]["oneOf"]
            .as_array_mut()
            .unwrap();
        requests.remove(1);
        requests.push(json!({"properties": {"method": {"enum": ["b"]}, "params": {"$ref": "#/definitions/N"}}}));
        let stable = diff_union(&old, &new, "ClientRequest");
        assert_eq!(stable.added.len(), 1);
        assert_eq!(stable.removed.len(), 1);
        assert_eq!(stable.removed[0].name, "none");

        let mut experimental_new = new.clone();
        experimental_new["definitions"]["ClientRequest"]["oneOf"]
            .as_array_mut()
            .unwrap()
            .push(json!({"properties": {"method": {"enum": ["c"]}}}));
        let experimental = diff_union(&old, &experimental_new, "ClientRequest");
        let merged = merge(stable, experimental);
        let added: Vec<(&str, bool)> = merged
            .added
            .iter()
            .map(|m| (m.name.as_str(), m.experimental))
            .collect();
        assert_eq!(added, [("b", false), ("c", true)]);
        assert_eq!(merged.removed.len(), 1, "not reported twice");
    }

    #[test]
    fn params_names() {
        assert_eq!(params_name(&json!({"$ref": "#/definitions/v2/X"})), "v2/X");
        assert_eq!(
            params_name(&json!({"anyOf": [{"$ref": "#/definitions/X"}, {"type": "null"}]})),
            "X | null"
        );
        assert_eq!(params_name(&json!({"type": "null"})), "null");
        assert_eq!(params_name(&Value::Null), "no params");
    }

    #[test]
    fn the_readme_has_the_regenerate_commands() {
        let readme = crate::workspace_root().join("codex-asp/schema/README.md");
        let text = std::fs::read_to_string(&readme).expect("read codex-asp/schema/README.md");
        let commands = regenerate_commands(&text).expect("a ```sh block under ## Regenerating");
        assert!(commands.contains("generate-json-schema --out"));
        assert!(commands.contains("--experimental"));
        assert!(commands.contains(crate::PINNED_CODEX_VERSION));
    }

    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            let target = to.join(path.file_name().unwrap());
            if path.is_dir() {
                copy_tree(&path, &target);
            } else {
                std::fs::copy(&path, &target).unwrap();
            }
        }
    }

    fn pinned_codex() -> PathBuf {
        let codex = crate::codex_bin(crate::PINNED_CODEX_VERSION);
        assert!(
            codex.exists(),
            "the pinned codex is not installed at {}: run `cargo xtask codex`",
            codex.display()
        );
        codex
    }

    /// A vendored schema that lacks a method and has another's params altered is reported
    /// as different, method by method.
    #[test]
    fn pinned_codex_against_an_altered_copy() {
        let codex = pinned_codex();
        let version = crate::PINNED_CODEX_VERSION;
        let real = crate::workspace_root().join("codex-asp").join("schema");
        let copy = TempDir::new().unwrap();
        for dir in [version.to_owned(), format!("{version}-experimental")] {
            copy_tree(&real.join(&dir), &copy.path().join(&dir));
        }
        let bundle_path = copy.path().join(version).join(BUNDLE);
        let mut bundle = load(&bundle_path).unwrap();
        let requests = bundle["definitions"]["ClientRequest"]["oneOf"]
            .as_array_mut()
            .unwrap();
        let before = requests.len();
        requests.retain(|e| e["properties"]["method"]["enum"][0] != "account/logout");
        assert_eq!(requests.len(), before - 1);
        bundle["definitions"]["v2"]["ThreadForkParams"]["description"] = json!("altered");
        std::fs::write(&bundle_path, serde_json::to_string_pretty(&bundle).unwrap()).unwrap();

        let report = check(&codex, copy.path(), version).unwrap();
        assert!(!report.is_identical());
        let (_, requests) = &report.unions[0];
        assert_eq!(
            requests.added,
            [Method {
                name: "account/logout".into(),
                experimental: false
            }]
        );
        assert!(requests.removed.is_empty());
        let changed: Vec<&str> = requests
            .changed
            .iter()
            .map(|c| c.method.name.as_str())
            .collect();
        assert_eq!(changed, ["thread/fork"]);
        assert_eq!(requests.changed[0].what, ["v2/ThreadForkParams"]);
        assert!(report.unions[1..].iter().all(|(_, d)| d.is_empty()));
        assert_eq!(
            report.definitions.changed,
            ["ClientRequest", "v2/ThreadForkParams"]
        );
        assert_eq!(report.files.changed, [format!("{version}/{BUNDLE}")]);
        let text = report.render();
        assert!(text.contains("  + account/logout\n"), "{text}");
        assert!(
            text.contains("  ~ thread/fork (v2/ThreadForkParams): v2/ThreadForkParams\n"),
            "{text}"
        );
        assert!(
            text.ends_with("DIFFERENT from the vendored schema\n"),
            "{text}"
        );
    }

    /// The pinned codex generates exactly the vendored schema.
    #[test]
    fn pinned_codex_matches_the_vendored_schema() {
        let codex = pinned_codex();
        let schema_root = crate::workspace_root().join("codex-asp").join("schema");
        let report =
            check(&codex, &schema_root, crate::PINNED_CODEX_VERSION).expect("protocol check");
        assert!(report.is_identical(), "{}", report.render());
        assert_eq!(
            report.codex_version,
            format!("codex-cli {}", crate::PINNED_CODEX_VERSION)
        );
    }
}
