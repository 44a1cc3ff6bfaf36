//! The protocol coverage scorecard, `codex-asp/PROTOCOL_COVERAGE.md`.
//!
//! For every method of the vendored schema of the pinned codex-cli (client requests, client
//! notifications, server notifications and server requests; stable, plus the methods only
//! the `--experimental` schema lists), the scorecard says whether this crate has a typed
//! surface for it (`typed`), only reaches it through the raw path (`raw-only`) or cannot reach
//! it at all (`missing`).
//!
//! Reachability is not assumed: every method is sent through the raw path of a real
//! [`Connection`] over the in-memory transport ([`Connection::request_raw`],
//! [`Connection::notify_raw`], a raw notification received by a subscription, a raw server
//! request answered by the approval handler with [`ServerReply::Result`]) and must arrive
//! intact on the other side.
//!
//! The committed file must equal the rendered one; `UPDATE_COVERAGE=1` rewrites it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use codex_asp::approval::{ApprovalHandler, ServerReply, ServerRequestCtx};
use codex_asp::protocol::{
    CLIENT_REQUEST_METHODS, INITIALIZED_NOTIFICATION, ServerNotification, ServerRequest,
};
use codex_asp::transport::{TransportOptions, memory};
use codex_asp::{Connection, ConnectionOptions};
use serde_json::{Value, json};

/// The codex version whose vendored schema the scorecard describes.
const VERSION: &str = include_str!("../../codex-version.txt").trim_ascii();

/// The scorecard, relative to the crate root.
const COVERAGE_FILE: &str = "PROTOCOL_COVERAGE.md";

/// The command that rewrites the scorecard.
const REGENERATE: &str = "UPDATE_COVERAGE=1 cargo test -p codex-asp --test coverage";

/// How long one message may take to cross the in-memory transport.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// The four message unions of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Category {
    ClientRequest,
    ClientNotification,
    ServerNotification,
    ServerRequest,
}

impl Category {
    const ALL: [Category; 4] = [
        Category::ClientRequest,
        Category::ClientNotification,
        Category::ServerNotification,
        Category::ServerRequest,
    ];

    /// The union's name under the schema's `definitions`.
    fn union(self) -> &'static str {
        match self {
            Category::ClientRequest => "ClientRequest",
            Category::ClientNotification => "ClientNotification",
            Category::ServerNotification => "ServerNotification",
            Category::ServerRequest => "ServerRequest",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Category::ClientRequest => "client requests",
            Category::ClientNotification => "client notifications",
            Category::ServerNotification => "server notifications",
            Category::ServerRequest => "server requests",
        }
    }

    fn heading(self) -> &'static str {
        match self {
            Category::ClientRequest => "Client requests (client → server)",
            Category::ClientNotification => "Client notifications (client → server)",
            Category::ServerNotification => "Server notifications (server → client)",
            Category::ServerRequest => "Server requests (server → client)",
        }
    }

    /// The methods of this category that the crate types.
    fn typed(self) -> &'static [&'static str] {
        match self {
            Category::ClientRequest => CLIENT_REQUEST_METHODS,
            Category::ClientNotification => std::slice::from_ref(&INITIALIZED_NOTIFICATION),
            Category::ServerNotification => ServerNotification::TYPED_METHODS,
            Category::ServerRequest => ServerRequest::TYPED_METHODS,
        }
    }

    /// How a typed method of this category is used.
    fn typed_path(self) -> &'static str {
        match self {
            Category::ClientRequest => {
                "a `Request` marker type in `protocol` (`CLIENT_REQUEST_METHODS`), sent with \
                 `Connection::request::<Marker>`"
            }
            Category::ClientNotification => {
                "`INITIALIZED_NOTIFICATION`, sent by `Connection::initialize`"
            }
            Category::ServerNotification => {
                "a typed variant of `ServerNotification` (`ServerNotification::TYPED_METHODS`)"
            }
            Category::ServerRequest => {
                "a typed variant of `ServerRequest` (`ServerRequest::TYPED_METHODS`) with a \
                 `Request` marker type, answered by a `Decision` or a typed response"
            }
        }
    }

    /// How an untyped method of this category is used.
    fn raw_path(self) -> &'static str {
        match self {
            Category::ClientRequest => "`Connection::request_raw(method, params)`",
            Category::ClientNotification => "`Connection::notify_raw(method, params)`",
            Category::ServerNotification => {
                "`ServerNotification::Raw { method, params, .. }` on subscriptions"
            }
            Category::ServerRequest => {
                "`ServerRequest::Raw { method, params, .. }`, answered by the approval handler \
                 with `ServerReply::Result` or `ServerReply::Error`"
            }
        }
    }
}

/// How far this crate covers one method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Typed,
    RawOnly,
    Missing,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Typed => "typed",
            Status::RawOnly => "raw-only",
            Status::Missing => "missing",
        }
    }
}

/// One method of the schema.
#[derive(Debug, Clone)]
struct Entry {
    method: String,
    /// The params type as the schema names it (`Name?` when `null` is allowed too).
    params: String,
    /// Listed only by the `--experimental` schema.
    experimental_only: bool,
    status: Status,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    methods: usize,
    typed: usize,
    raw_only: usize,
    missing: usize,
    experimental_only: usize,
}

impl Totals {
    fn of<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Totals {
        let mut totals = Totals::default();
        for entry in entries {
            totals.methods += 1;
            match entry.status {
                Status::Typed => totals.typed += 1,
                Status::RawOnly => totals.raw_only += 1,
                Status::Missing => totals.missing += 1,
            }
            if entry.experimental_only {
                totals.experimental_only += 1;
            }
        }
        totals
    }

    fn row(&self, label: &str) -> String {
        format!(
            "| {label} | {} | {} | {} | {} | {} |\n",
            self.methods, self.typed, self.raw_only, self.missing, self.experimental_only
        )
    }
}

/// The entries of every category, sorted by method.
struct Scorecard {
    categories: BTreeMap<Category, Vec<Entry>>,
}

fn schema_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema")
}

fn load(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The stable and the experimental bundles.
fn bundles() -> (Value, Value) {
    let bundle = "codex_app_server_protocol.schemas.json";
    (
        load(schema_root().join(VERSION).join(bundle)),
        load(
            schema_root()
                .join(format!("{VERSION}-experimental"))
                .join(bundle),
        ),
    )
}

/// `method → params schema` of one union of a bundle.
fn union_methods(bundle: &Value, category: Category) -> BTreeMap<String, Value> {
    let union = &bundle["definitions"][category.union()];
    union["oneOf"]
        .as_array()
        .unwrap_or_else(|| panic!("definitions.{}.oneOf is not an array", category.union()))
        .iter()
        .map(|entry| {
            let method = entry["properties"]["method"]["enum"][0]
                .as_str()
                .unwrap_or_else(|| panic!("{} entry without a method: {entry}", category.union()))
                .to_owned();
            let params = entry["properties"]
                .get("params")
                .cloned()
                .unwrap_or(Value::Null);
            (method, params)
        })
        .collect()
}

fn ref_name(schema: &Value) -> Option<&str> {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
}

/// A short description of a params schema: the type name, `Name?` for "that or null",
/// `none` for `null` only, `—` when the method has no `params` member.
fn describe_params(params: &Value) -> String {
    if params.is_null() {
        return "—".to_owned();
    }
    if let Some(name) = ref_name(params) {
        return format!("`{name}`");
    }
    if params.get("type").and_then(Value::as_str) == Some("null") {
        return "none (`null`)".to_owned();
    }
    if let Some(branches) = params.get("anyOf").and_then(Value::as_array) {
        let is_null = |b: &Value| b.get("type").and_then(Value::as_str) == Some("null");
        let names: Vec<&str> = branches
            .iter()
            .filter(|b| !is_null(b))
            .filter_map(ref_name)
            .collect();
        if names.len() == 1 && branches.len() == 2 && branches.iter().any(is_null) {
            return format!("`{}` or `null`", names[0]);
        }
    }
    "(inline schema)".to_owned()
}

/// Sends `method` through `request_raw`; the fake server echoes it back.
async fn client_request_reachable(
    conn: &Connection,
    server: &mut memory::MemoryServer,
    method: &str,
) -> bool {
    let client = conn.request_raw(method, json!({}));
    let fake = async {
        let request = server.recv_json().await?;
        let arrived = request["method"].as_str()?.to_owned();
        server
            .respond(&request["id"], json!({ "method": arrived }))
            .await
            .ok()?;
        Some(arrived)
    };
    let both = async { tokio::join!(client, fake) };
    match tokio::time::timeout(STEP_TIMEOUT, both).await {
        Ok((Ok(result), Some(arrived))) => arrived == method && result["method"] == method,
        _ => false,
    }
}

/// Sends `method` through `notify_raw`.
async fn client_notification_reachable(
    conn: &Connection,
    server: &mut memory::MemoryServer,
    method: &str,
) -> bool {
    let step = async {
        conn.notify_raw(method, Value::Null).await.ok()?;
        let message = server.recv_json().await?;
        Some(message["method"] == method && message.get("id").is_none())
    };
    matches!(
        tokio::time::timeout(STEP_TIMEOUT, step).await,
        Ok(Some(true))
    )
}

/// Has the fake server send `method` as a notification; a subscription must see it.
async fn server_notification_reachable(
    subscription: &mut codex_asp::Subscription,
    server: &mut memory::MemoryServer,
    method: &str,
) -> bool {
    let step = async {
        server.notify(method, json!({})).await.ok()?;
        let notification = subscription.next_notification().await.ok()?;
        Some(notification.method() == method && notification.typed().method() == method)
    };
    matches!(
        tokio::time::timeout(STEP_TIMEOUT, step).await,
        Ok(Some(true))
    )
}

/// Answers every server request with `{"method": <its method>}`.
struct EchoMethod;

#[async_trait::async_trait]
impl ApprovalHandler for EchoMethod {
    async fn handle(&self, request: ServerRequestCtx) -> ServerReply {
        ServerReply::Result(json!({ "method": request.method() }))
    }
}

/// Has the fake server send `method` as a request; the handler must see and answer it.
async fn server_request_reachable(
    server: &mut memory::MemoryServer,
    id: usize,
    method: &str,
) -> bool {
    let step = async {
        server.request(json!(id), method, json!({})).await.ok()?;
        let answer = server.recv_json().await?;
        Some(answer["id"] == json!(id) && answer["result"]["method"] == method)
    };
    matches!(
        tokio::time::timeout(STEP_TIMEOUT, step).await,
        Ok(Some(true))
    )
}

/// The methods of `category` that cross a real connection through the raw path.
async fn reachable_raw(category: Category, methods: &[&str]) -> BTreeSet<String> {
    let options = match category {
        Category::ServerRequest => ConnectionOptions::default().approval_handler(EchoMethod),
        _ => ConnectionOptions::default(),
    };
    let (transport, mut server) = memory::pair(TransportOptions::default());
    let conn = Connection::new(transport, options);
    let mut subscription = conn.subscribe_all();
    let mut reachable = BTreeSet::new();
    for (i, method) in methods.iter().enumerate() {
        let ok = match category {
            Category::ClientRequest => client_request_reachable(&conn, &mut server, method).await,
            Category::ClientNotification => {
                client_notification_reachable(&conn, &mut server, method).await
            }
            Category::ServerNotification => {
                server_notification_reachable(&mut subscription, &mut server, method).await
            }
            Category::ServerRequest => server_request_reachable(&mut server, i, method).await,
        };
        if ok {
            reachable.insert((*method).to_owned());
        }
    }
    reachable
}

/// Classifies every method of the vendored schema.
async fn scorecard() -> Scorecard {
    let (stable, experimental) = bundles();
    let mut categories = BTreeMap::new();
    for category in Category::ALL {
        let stable_methods = union_methods(&stable, category);
        let mut all = union_methods(&experimental, category);
        for (method, params) in &stable_methods {
            // A method in both: describe it by the stable schema.
            all.insert(method.clone(), params.clone());
        }
        let methods: Vec<&str> = all.keys().map(String::as_str).collect();
        let reachable = reachable_raw(category, &methods).await;
        let typed: BTreeSet<&str> = category.typed().iter().copied().collect();
        let entries = all
            .iter()
            .map(|(method, params)| Entry {
                method: method.clone(),
                params: describe_params(params),
                experimental_only: !stable_methods.contains_key(method),
                status: if !reachable.contains(method) {
                    Status::Missing
                } else if typed.contains(method.as_str()) {
                    Status::Typed
                } else {
                    Status::RawOnly
                },
            })
            .collect();
        categories.insert(category, entries);
    }
    Scorecard { categories }
}

impl Scorecard {
    fn entries(&self, category: Category) -> &[Entry] {
        &self.categories[&category]
    }

    fn render(&self) -> String {
        let mut out = String::new();
        let all = || self.categories.values().flatten();
        out.push_str("# App Server Protocol coverage\n\n");
        let _ = writeln!(
            out,
            "Generated by `codex-asp/tests/coverage.rs` from the App Server Protocol schema of \
             **codex-cli {VERSION}** vendored in `codex-asp/schema/{VERSION}/` (stable) and \
             `codex-asp/schema/{VERSION}-experimental/` (`--experimental`). Do not edit by hand; \
             regenerate with `{REGENERATE}`.\n"
        );
        out.push_str(
            "- **typed**: the crate has params/response (or payload) types for the method.\n\
             - **raw-only**: no types, but the method works through the raw path, with JSON \
             params and results.\n\
             - **missing**: not reachable at all (must stay at zero: the test fails otherwise).\n\
             - **experimental-only**: listed only by the schema generated with \
             `--experimental` (the stable schema does not have it).\n\n\
             Reachability is measured, not assumed: the test sends every method through the raw \
             path of a real `Connection` over the in-memory transport and checks that it \
             arrives intact.\n\n",
        );
        out.push_str("| category | typed path | raw path |\n| --- | --- | --- |\n");
        for category in Category::ALL {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                category.title(),
                category.typed_path(),
                category.raw_path()
            );
        }
        out.push_str("\n## Totals\n\n");
        out.push_str(
            "| category | methods | typed | raw-only | missing | experimental-only |\n\
             | --- | ---: | ---: | ---: | ---: | ---: |\n",
        );
        for category in Category::ALL {
            out.push_str(&Totals::of(self.entries(category)).row(category.title()));
        }
        out.push_str(&Totals::of(all()).row("**all**"));
        out.push_str(
            &Totals::of(all().filter(|e| !e.experimental_only)).row("all in the stable schema"),
        );
        for category in Category::ALL {
            let entries = self.entries(category);
            let _ = write!(
                out,
                "\n## {}\n\n| method | params | schema | coverage |\n| --- | --- | --- | --- |\n",
                category.heading()
            );
            for entry in entries {
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {} | {} |",
                    entry.method,
                    entry.params,
                    if entry.experimental_only {
                        "experimental-only"
                    } else {
                        "stable"
                    },
                    entry.status.label()
                );
            }
        }
        out
    }
}

/// Where the committed and the rendered scorecard first differ, for the failure message.
fn diff_hint(committed: &str, rendered: &str) -> String {
    let old: Vec<&str> = committed.lines().collect();
    let new: Vec<&str> = rendered.lines().collect();
    let differing = (0..old.len().max(new.len()))
        .filter(|&i| old.get(i) != new.get(i))
        .count();
    let first = (0..old.len().max(new.len()))
        .find(|&i| old.get(i) != new.get(i))
        .unwrap_or(0);
    let show = |line: Option<&&str>| line.map_or("<end of file>".to_owned(), |l| format!("{l:?}"));
    format!(
        "{differing} line(s) differ ({} committed, {} rendered); first at line {}:\n  \
         committed: {}\n  rendered:  {}",
        old.len(),
        new.len(),
        first + 1,
        show(old.get(first)),
        show(new.get(first)),
    )
}

#[tokio::test]
async fn coverage_file_is_up_to_date() {
    let rendered = scorecard().await.render();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(COVERAGE_FILE);
    if std::env::var_os("UPDATE_COVERAGE").is_some_and(|v| v == "1") {
        std::fs::write(&path, &rendered).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("coverage: wrote {}", path.display());
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == rendered,
        "{} is stale: {}\nregenerate with `{REGENERATE}`",
        path.display(),
        diff_hint(&committed, &rendered)
    );
}

#[tokio::test]
async fn every_method_is_reachable_raw() {
    let card = scorecard().await;
    let missing: Vec<String> = Category::ALL
        .iter()
        .flat_map(|&c| {
            card.entries(c)
                .iter()
                .filter(|e| e.status == Status::Missing)
                .map(move |e| format!("{} {}", c.title(), e.method))
        })
        .collect();
    assert!(missing.is_empty(), "not reachable even raw: {missing:#?}");
}

#[tokio::test]
async fn typed_counts_equal_the_typed_lists() {
    let card = scorecard().await;
    for category in Category::ALL {
        let entries = card.entries(category);
        let in_schema: BTreeSet<&str> = entries.iter().map(|e| e.method.as_str()).collect();
        let unknown: Vec<&str> = category
            .typed()
            .iter()
            .copied()
            .filter(|m| !in_schema.contains(m))
            .collect();
        let typed = entries.iter().filter(|e| e.status == Status::Typed).count();
        assert_eq!(
            typed,
            category.typed().len(),
            "{}: {typed} typed in the scorecard, {} in the typed list (typed methods the schema \
             does not have: {unknown:?}; or a duplicate in the list)",
            category.title(),
            category.typed().len()
        );
    }
}

#[test]
fn params_descriptions() {
    assert_eq!(describe_params(&Value::Null), "—");
    assert_eq!(
        describe_params(&json!({"$ref": "#/definitions/v2/ThreadStartParams"})),
        "`ThreadStartParams`"
    );
    assert_eq!(describe_params(&json!({"type": "null"})), "none (`null`)");
    assert_eq!(
        describe_params(&json!({"anyOf": [{"$ref": "#/definitions/X"}, {"type": "null"}]})),
        "`X` or `null`"
    );
    assert_eq!(
        describe_params(&json!({"type": "object"})),
        "(inline schema)"
    );
}

#[test]
fn diff_hint_names_the_first_difference() {
    let hint = diff_hint("a\nb\nc\n", "a\nB\nc\nd\n");
    assert!(hint.starts_with("2 line(s) differ (3 committed, 4 rendered); first at line 2:"));
    assert!(hint.contains("committed: \"b\""));
    assert!(hint.contains("rendered:  \"B\""));
    assert!(diff_hint("", "x").contains("<end of file>"));
}
