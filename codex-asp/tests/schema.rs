//! Checks the typed protocol (`codex_asp::protocol`) against the JSON Schema vendored from
//! the pinned codex-cli (`schema/VERSION`, VERSION from `codex-version.txt`) and against
//! transcripts captured from the real app-server (`tests/fixtures/transcript-*.jsonl`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use codex_asp::jsonrpc::{JsonRpcError, RequestId, error_codes};
use codex_asp::protocol::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

/// The pinned codex version (`codex-version.txt` at the workspace root), whose schema is
/// vendored under `schema/VERSION`.
const VERSION: &str = include_str!("../../codex-version.txt").trim_ascii();

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("schema")
        .join(VERSION)
}

fn load(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A loaded schema document with `$ref` resolution and a small, strict validator.
struct Schema {
    root: Value,
    /// Whether objects must carry their required fields (true for what we send; false when
    /// validating our re-serialization of server messages, which leaves out the fields this
    /// crate does not model).
    check_required: bool,
}

impl Schema {
    fn file(name: &str) -> Self {
        Self {
            root: load(schema_dir().join(name)),
            check_required: true,
        }
    }

    fn experimental_bundle() -> Self {
        Self {
            root: load(
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("schema")
                    .join(format!("{VERSION}-experimental"))
                    .join("codex_app_server_protocol.schemas.json"),
            ),
            check_required: false,
        }
    }

    /// `(method, params schema)` of every entry of a `oneOf` message union
    /// (ClientRequest / ServerNotification / ServerRequest).
    fn methods(&self, union: &Value) -> BTreeMap<String, Value> {
        let union = self.resolve(union);
        union["oneOf"]
            .as_array()
            .expect("oneOf")
            .iter()
            .map(|entry| {
                let method = entry["properties"]["method"]["enum"][0]
                    .as_str()
                    .expect("method enum")
                    .to_owned();
                let params = entry["properties"]
                    .get("params")
                    .cloned()
                    .unwrap_or(Value::Null);
                (method, params)
            })
            .collect()
    }

    fn resolve<'a>(&'a self, mut schema: &'a Value) -> &'a Value {
        while let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let mut target = &self.root;
            for part in reference.trim_start_matches("#/").split('/') {
                target = target
                    .get(part)
                    .unwrap_or_else(|| panic!("unresolved $ref {reference}"));
            }
            schema = target;
        }
        schema
    }

    /// A definition by name (top level or under `definitions/v2`).
    fn def(&self, name: &str) -> Option<&Value> {
        let defs = &self.root["definitions"];
        defs.get(name)
            .or_else(|| defs.get("v2").and_then(|v2| v2.get(name)))
    }

    fn ref_name(schema: &Value) -> Option<&str> {
        schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.rsplit('/').next())
    }

    /// Validates `value` against `schema`. Objects are checked strictly: every key must be
    /// a declared property (unless `additionalProperties` allows it) and every required
    /// property must be present.
    fn validate(&self, value: &Value, schema: &Value, path: &str) -> Result<(), String> {
        if schema == &Value::Bool(true) {
            return Ok(());
        }
        let schema = self.resolve(schema);
        let branches = schema
            .get("oneOf")
            .or_else(|| schema.get("anyOf"))
            .and_then(Value::as_array);
        if let Some(branches) = branches {
            let mut errors = Vec::new();
            for branch in branches {
                let merged = self.merge(schema, self.resolve(branch));
                match self.validate(value, &merged, path) {
                    Ok(()) => return Ok(()),
                    Err(e) => errors.push(e),
                }
            }
            return Err(format!(
                "{path}: no branch matches: [{}]",
                errors.join(" | ")
            ));
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            let mut merged = schema.clone();
            merged.as_object_mut().unwrap().remove("allOf");
            for part in all {
                merged = self.merge(&merged, self.resolve(part));
            }
            return self.validate(value, &merged, path);
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array)
            && !options.contains(value)
        {
            return Err(format!("{path}: {value} not in enum {options:?}"));
        }
        if let Some(types) = schema.get("type") {
            let types: Vec<&str> = match types {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            let ok = types.iter().any(|t| match *t {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                "null" => value.is_null(),
                _ => true,
            });
            if !ok {
                return Err(format!("{path}: {value} is not of type {types:?}"));
            }
        }
        match value {
            Value::Object(map) => self.validate_object(map, schema, path),
            Value::Array(items) => match schema.get("items") {
                Some(item_schema) => items.iter().enumerate().try_for_each(|(i, item)| {
                    self.validate(item, item_schema, &format!("{path}[{i}]"))
                }),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    fn validate_object(
        &self,
        map: &Map<String, Value>,
        schema: &Value,
        path: &str,
    ) -> Result<(), String> {
        let properties = schema.get("properties").and_then(Value::as_object);
        for required in schema
            .get("required")
            .filter(|_| self.check_required)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !map.contains_key(required) {
                return Err(format!("{path}: missing required field `{required}`"));
            }
        }
        for (key, field) in map {
            let field_path = format!("{path}.{key}");
            match properties.and_then(|p| p.get(key)) {
                Some(field_schema) => self.validate(field, field_schema, &field_path)?,
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        return Err(format!(
                            "{field_path}: not allowed (additionalProperties false)"
                        ));
                    }
                    Some(extra @ Value::Object(_)) => self.validate(field, extra, &field_path)?,
                    _ if properties.is_some() => {
                        return Err(format!("{field_path}: not a property of the schema"));
                    }
                    _ => {}
                },
            }
        }
        Ok(())
    }

    /// `base` (without its oneOf/anyOf) combined with one branch: properties and required
    /// fields are unioned.
    fn merge(&self, base: &Value, branch: &Value) -> Value {
        let mut merged = branch.clone();
        let Some(merged_map) = merged.as_object_mut() else {
            return merged;
        };
        if let Some(props) = base.get("properties").and_then(Value::as_object) {
            let entry = merged_map
                .entry("properties")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(target) = entry.as_object_mut() {
                for (k, v) in props {
                    target.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        if let Some(req) = base.get("required").and_then(Value::as_array) {
            let entry = merged_map
                .entry("required")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Some(target) = entry.as_array_mut() {
                target.extend(req.iter().cloned());
            }
        }
        merged
    }
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

// ---------------------------------------------------------------------------------------
// Client requests
// ---------------------------------------------------------------------------------------

/// Checks one example of `R::Params` against the stable `ClientRequest.json`.
fn check_client_request<R: Request>(
    schema: &Schema,
    methods: &BTreeMap<String, Value>,
    example: R::Params,
) {
    let method = R::METHOD;
    let params_schema = methods
        .get(method)
        .unwrap_or_else(|| panic!("`{method}` is not a client request of codex {VERSION}"));
    let value = serde_json::to_value(&example).unwrap();

    if short_type_name::<R::Params>() == "EmptyParams" {
        // The schema declares no params (`"type": "null"`); the real server accepts
        // absent, null and `{}` alike (see transcript-lifecycle.jsonl).
        assert!(
            params_schema.is_null() || params_schema == &json!({"type": "null"}),
            "`{method}` has params in the schema: {params_schema}"
        );
        assert_eq!(value, json!({}));
        return;
    }

    let params_schema = match params_schema.get("anyOf").and_then(Value::as_array) {
        // optional params: `anyOf: [{$ref}, {type: null}]`
        Some(branches) => branches
            .iter()
            .find(|b| b.get("$ref").is_some())
            .unwrap_or(params_schema),
        None => params_schema,
    };
    let ref_name = Schema::ref_name(params_schema)
        .unwrap_or_else(|| panic!("`{method}`: params are not a $ref: {params_schema}"));
    assert_eq!(
        short_type_name::<R::Params>(),
        ref_name,
        "`{method}`: params type name differs from the schema"
    );
    if let Err(e) = schema.validate(&value, params_schema, method) {
        panic!("`{method}` example params do not match the schema: {e}\nparams: {value}");
    }
    // The example must also survive a round trip through our own types.
    let back: R::Params = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(
        serde_json::to_value(&back).unwrap(),
        value,
        "`{method}` params round trip"
    );
}

fn maximal_overrides() -> ThreadOverrides {
    let mut o = ThreadOverrides::default();
    o.model = Some("gpt-5.5".into());
    o.model_provider = Some("mock".into());
    o.service_tier = Some("priority".into());
    o.cwd = Some("/work".into());
    o.approval_policy = Some(AskForApproval::OnRequest);
    o.approvals_reviewer = Some(ApprovalsReviewer::User);
    o.sandbox = Some(WireSandboxMode::WorkspaceWrite);
    o.config = Some(
        json!({"model_reasoning_effort": "high"})
            .as_object()
            .unwrap()
            .clone(),
    );
    o.base_instructions = Some("base".into());
    o.developer_instructions = Some("dev".into());
    o
}

#[test]
fn typed_client_requests_match_schema() {
    let schema = Schema::file("ClientRequest.json");
    let methods = schema.methods(&schema.root);
    let m = &methods;

    let mut init = InitializeParams::new("codex-bridge", "0.1.0");
    check_client_request::<Initialize>(&schema, m, init.clone());
    let mut caps = InitializeCapabilities::default();
    caps.experimental_api = true;
    caps.opt_out_notification_methods = Some(vec!["account/rateLimits/updated".into()]);
    init.capabilities = Some(caps);
    init.client_info.title = Some("Codex Bridge".into());
    check_client_request::<Initialize>(&schema, m, init);

    check_client_request::<ThreadStart>(&schema, m, ThreadStartParams::default());
    let mut start = ThreadStartParams::default();
    start.overrides = maximal_overrides();
    start.ephemeral = Some(true);
    start.service_name = Some("codex-bridge".into());
    check_client_request::<ThreadStart>(&schema, m, start);

    check_client_request::<ThreadResume>(&schema, m, ThreadResumeParams::new("t-1"));
    let mut resume = ThreadResumeParams::new("t-1");
    resume.overrides = maximal_overrides();
    resume.exclude_turns = Some(true);
    check_client_request::<ThreadResume>(&schema, m, resume);

    check_client_request::<ThreadFork>(&schema, m, ThreadForkParams::new("t-1"));
    let mut fork = ThreadForkParams::new("t-1");
    fork.overrides = maximal_overrides();
    fork.last_turn_id = Some("u-1".into());
    fork.ephemeral = Some(false);
    fork.exclude_turns = Some(true);
    check_client_request::<ThreadFork>(&schema, m, fork);

    check_client_request::<ThreadList>(&schema, m, ThreadListParams::default());
    let mut list = ThreadListParams::default();
    list.cursor = Some("c".into());
    list.limit = Some(10);
    list.sort_key = Some("updated_at".into());
    list.sort_direction = Some("desc".into());
    list.model_providers = Some(vec!["openai".into()]);
    list.source_kinds = Some(vec!["appServer".into(), "exec".into()]);
    list.archived = Some(false);
    list.cwd = Some(json!("/work"));
    list.search_term = Some("hello".into());
    check_client_request::<ThreadList>(&schema, m, list);

    let mut read = ThreadReadParams::new("t-1");
    check_client_request::<ThreadRead>(&schema, m, read.clone());
    read.include_turns = Some(true);
    check_client_request::<ThreadRead>(&schema, m, read);

    check_client_request::<ThreadArchive>(&schema, m, ThreadArchiveParams::new("t-1"));
    check_client_request::<ThreadUnarchive>(&schema, m, ThreadUnarchiveParams::new("t-1"));
    check_client_request::<ThreadSetName>(&schema, m, ThreadSetNameParams::new("t-1", "name"));
    check_client_request::<ThreadCompactStart>(&schema, m, ThreadCompactStartParams::new("t-1"));

    check_client_request::<TurnStart>(&schema, m, TurnStartParams::text("t-1", "hello"));
    let mut turn = TurnStartParams::new(
        "t-1",
        vec![
            UserInput::text("look"),
            UserInput::image_url("https://example.invalid/a.png"),
            UserInput::local_image("/work/a.png"),
        ],
    );
    turn.cwd = Some("/work".into());
    turn.approval_policy = Some(AskForApproval::Never);
    turn.approvals_reviewer = Some(ApprovalsReviewer::User);
    turn.sandbox_policy = Some(SandboxPolicy::workspace_write(vec!["/work".into()], true));
    turn.model = Some("gpt-5.5".into());
    turn.service_tier = Some("priority".into());
    turn.effort = Some(ReasoningEffort::High);
    turn.summary = Some(ReasoningSummary::Concise);
    turn.output_schema = Some(json!({"type": "object"}));
    turn.client_user_message_id = Some("m-1".into());
    check_client_request::<TurnStart>(&schema, m, turn);
    for policy in [
        SandboxPolicy::DangerFullAccess,
        SandboxPolicy::read_only(),
        SandboxPolicy::external_sandbox(NetworkAccess::Enabled),
    ] {
        let mut turn = TurnStartParams::text("t-1", "x");
        turn.sandbox_policy = Some(policy);
        turn.approval_policy = Some(AskForApproval::Untrusted);
        check_client_request::<TurnStart>(&schema, m, turn);
    }

    check_client_request::<TurnSteer>(
        &schema,
        m,
        TurnSteerParams::new("t-1", "u-1", vec![UserInput::text("also")]),
    );
    check_client_request::<TurnInterrupt>(&schema, m, TurnInterruptParams::new("t-1", "u-1"));

    let targets: Vec<ReviewTarget> = vec![
        ReviewTarget::UncommittedChanges,
        serde_json::from_value(json!({"type": "baseBranch", "branch": "main"})).unwrap(),
        serde_json::from_value(json!({"type": "commit", "sha": "abc", "title": "Fix"})).unwrap(),
        serde_json::from_value(json!({"type": "custom", "instructions": "look at x"})).unwrap(),
    ];
    for target in targets {
        assert!(!matches!(target, ReviewTarget::Unknown(_)));
        check_client_request::<ReviewStart>(&schema, m, ReviewStartParams::new("t-1", target));
    }

    check_client_request::<ModelList>(&schema, m, ModelListParams::default());
    let mut models = ModelListParams::default();
    models.cursor = Some("c".into());
    models.limit = Some(5);
    models.include_hidden = Some(true);
    models.model_provider = Some("openai".into());
    check_client_request::<ModelList>(&schema, m, models);

    check_client_request::<AccountRead>(&schema, m, GetAccountParams::default());
    check_client_request::<AccountLoginStart>(&schema, m, LoginAccountParams::api_key("sk-test"));
    check_client_request::<AccountLoginStart>(&schema, m, LoginAccountParams::chatgpt());
    check_client_request::<AccountLoginStart>(&schema, m, LoginAccountParams::ChatgptDeviceCode);
    check_client_request::<AccountLogout>(&schema, m, EmptyParams);
    check_client_request::<AccountRateLimitsRead>(
        &schema,
        m,
        GetAccountRateLimitsParams::default(),
    );
    let mut limits = GetAccountRateLimitsParams::default();
    limits.exclude_reset_credit_details = Some(true);
    check_client_request::<AccountRateLimitsRead>(&schema, m, limits);

    check_client_request::<ConfigRead>(&schema, m, ConfigReadParams::default());
    let mut config = ConfigReadParams::default();
    config.cwd = Some("/work".into());
    config.include_layers = Some(true);
    check_client_request::<ConfigRead>(&schema, m, config);

    check_client_request::<CommandExec>(&schema, m, CommandExecParams::new(["echo", "hi"]));
    let mut exec = CommandExecParams::new(["bash", "-c", "echo hi"]);
    exec.cwd = Some("/work".into());
    exec.env = Some(BTreeMap::from([
        ("A".to_owned(), Some("1".to_owned())),
        ("B".to_owned(), None),
    ]));
    exec.timeout_ms = Some(1000);
    exec.sandbox_policy = Some(SandboxPolicy::read_only());
    exec.process_id = Some("p-1".into());
    exec.tty = Some(true);
    exec.size = Some(serde_json::from_value(json!({"rows": 24, "cols": 80})).unwrap());
    exec.stream_stdin = Some(true);
    exec.stream_stdout_stderr = Some(true);
    exec.output_bytes_cap = Some(1 << 20);
    check_client_request::<CommandExec>(&schema, m, exec);

    // Every typed method was checked above and exists in the schema.
    for method in CLIENT_REQUEST_METHODS {
        assert!(
            methods.contains_key(*method),
            "`{method}` missing from the schema"
        );
    }
    assert_eq!(CLIENT_REQUEST_METHODS.len(), 21);
}

#[test]
fn typed_response_names_exist_in_schema() {
    let bundle = Schema::file("codex_app_server_protocol.schemas.json");
    fn check<R: Request>(bundle: &Schema) {
        let name = short_type_name::<R::Response>();
        if name == "EmptyResponse" {
            return;
        }
        assert!(
            bundle.def(name).is_some(),
            "{}: no schema definition `{name}`",
            R::METHOD
        );
    }
    check::<Initialize>(&bundle);
    check::<ThreadStart>(&bundle);
    check::<ThreadResume>(&bundle);
    check::<ThreadFork>(&bundle);
    check::<ThreadList>(&bundle);
    check::<ThreadRead>(&bundle);
    check::<ThreadUnarchive>(&bundle);
    check::<TurnStart>(&bundle);
    check::<TurnSteer>(&bundle);
    check::<ReviewStart>(&bundle);
    check::<ModelList>(&bundle);
    check::<AccountRead>(&bundle);
    check::<AccountLoginStart>(&bundle);
    check::<AccountRateLimitsRead>(&bundle);
    check::<ConfigRead>(&bundle);
    check::<CommandExec>(&bundle);
    check::<CommandExecutionRequestApproval>(&bundle);
    check::<FileChangeRequestApproval>(&bundle);
    check::<PermissionsRequestApproval>(&bundle);
    check::<ToolRequestUserInput>(&bundle);
    check::<McpServerElicitationRequest>(&bundle);
}

// ---------------------------------------------------------------------------------------
// Notifications, server requests, items
// ---------------------------------------------------------------------------------------

#[test]
fn typed_notifications_exist_in_schema() {
    let schema = Schema::file("ServerNotification.json");
    let methods = schema.methods(&schema.root);
    for method in ServerNotification::TYPED_METHODS {
        assert!(
            methods.contains_key(*method),
            "notification `{method}` is not in the schema"
        );
    }
    // Typed variants are unique.
    let unique: BTreeSet<_> = ServerNotification::TYPED_METHODS.iter().collect();
    assert_eq!(unique.len(), ServerNotification::TYPED_METHODS.len());
    // The client notification we send.
    let client = Schema::file("ClientNotification.json");
    assert!(
        client
            .methods(&client.root)
            .contains_key(INITIALIZED_NOTIFICATION)
    );
}

#[test]
fn typed_server_requests_exist_in_schema() {
    let schema = Schema::file("ServerRequest.json");
    let methods = schema.methods(&schema.root);
    for method in ServerRequest::TYPED_METHODS {
        assert!(
            methods.contains_key(*method),
            "server request `{method}` is not in the schema"
        );
    }
    fn check<R: Request>(methods: &BTreeMap<String, Value>) {
        let params = &methods[R::METHOD];
        assert_eq!(
            Schema::ref_name(params),
            Some(short_type_name::<R::Params>()),
            "{}",
            R::METHOD
        );
    }
    check::<CommandExecutionRequestApproval>(&methods);
    check::<FileChangeRequestApproval>(&methods);
    check::<PermissionsRequestApproval>(&methods);
    check::<ToolRequestUserInput>(&methods);
    check::<McpServerElicitationRequest>(&methods);

    // Decisions: every wire form of the schema parses into a typed decision.
    let bundle = Schema::file("ServerRequest.json");
    let decision = bundle.def("CommandExecutionApprovalDecision").unwrap();
    let mut forms = 0;
    for branch in decision["oneOf"].as_array().unwrap() {
        let wire_values: Vec<Value> = match branch.get("enum") {
            Some(Value::Array(values)) => values.clone(),
            _ => {
                let key = branch["required"][0].as_str().unwrap();
                let inner_schema = bundle.resolve(&branch["properties"][key]);
                let inner_key = inner_schema["required"][0].as_str().unwrap();
                let inner_value = match inner_key {
                    "execpolicy_amendment" => json!(["touch", "x"]),
                    "network_policy_amendment" => json!({"host": "example.com", "action": "deny"}),
                    other => panic!("new amendment form `{other}`: type it"),
                };
                vec![json!({ key: { inner_key: inner_value } })]
            }
        };
        for wire in wire_values {
            forms += 1;
            let parsed: CommandExecutionApprovalDecision =
                serde_json::from_value(wire.clone()).unwrap();
            assert!(
                !matches!(parsed, CommandExecutionApprovalDecision::Other(_)),
                "decision {wire} is not typed"
            );
            assert_eq!(serde_json::to_value(&parsed).unwrap(), wire);
            bundle.validate(&wire, decision, "decision").unwrap();
        }
    }
    assert_eq!(forms, 6);
    let full = Schema::file("codex_app_server_protocol.schemas.json");
    let file_decision = full.def("FileChangeApprovalDecision").unwrap();
    let branches = match file_decision.get("oneOf") {
        Some(Value::Array(branches)) => branches.clone(),
        _ => vec![file_decision.clone()],
    };
    assert!(!branches.is_empty());
    for branch in &branches {
        for wire in branch["enum"].as_array().unwrap() {
            let parsed: FileChangeApprovalDecision = serde_json::from_value(wire.clone()).unwrap();
            assert!(
                !matches!(parsed, FileChangeApprovalDecision::Other(_)),
                "{wire}"
            );
        }
    }
}

#[test]
fn thread_item_types_match_schema() {
    let schema = Schema::file("ServerNotification.json");
    let item = schema.def("ThreadItem").unwrap();
    let schema_types: BTreeSet<String> = item["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            b["properties"]["type"]["enum"][0]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let ours: BTreeSet<String> = THREAD_ITEM_TYPES.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(
        ours, schema_types,
        "ThreadItem variants differ from the schema"
    );

    let inputs = schema.def("UserInput").unwrap();
    for branch in inputs["oneOf"].as_array().unwrap() {
        let tag = branch["properties"]["type"]["enum"][0].as_str().unwrap();
        let parsed: UserInput = serde_json::from_value(
            json!({"type": tag, "text": "", "path": "", "name": "", "url": ""}),
        )
        .unwrap();
        assert!(
            !matches!(parsed, UserInput::Unknown(_)),
            "UserInput `{tag}` is not typed"
        );
    }
}

#[test]
fn validator_rejects_wrong_shapes() {
    // Guards against a vacuous validator: the checks above must be able to fail.
    let schema = Schema::file("ClientRequest.json");
    let methods = schema.methods(&schema.root);
    let turn_start = &methods["turn/start"];
    let good = serde_json::to_value(TurnStartParams::text("t", "hi")).unwrap();
    schema.validate(&good, turn_start, "ok").unwrap();
    for bad in [
        json!({"threadId": "t"}),
        json!({"threadId": "t", "input": [], "sandbox_policy": null}),
        json!({"threadId": "t", "input": [], "sandboxPolicy": {"type": "readOnlyy"}}),
        json!({"threadId": "t", "input": [], "approvalPolicy": "on_request"}),
        json!({"threadId": 3, "input": []}),
        json!({"threadId": "t", "input": [{"type": "text"}]}),
    ] {
        assert!(
            schema.validate(&bad, turn_start, "bad").is_err(),
            "accepted {bad}"
        );
    }
    let thread_start = &methods["thread/start"];
    assert!(
        schema
            .validate(&json!({"sandbox": "workspaceWrite"}), thread_start, "bad")
            .is_err()
    );
    assert!(
        schema
            .validate(&json!({"sandbox": "workspace-write"}), thread_start, "ok")
            .is_ok()
    );
}

// ---------------------------------------------------------------------------------------
// Real transcripts
// ---------------------------------------------------------------------------------------

struct Line {
    out: bool,
    msg: Value,
}

fn transcript(name: &str) -> Vec<Line> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("transcript-{name}.jsonl"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            Line {
                out: v["dir"] == "out",
                msg: v["msg"].clone(),
            }
        })
        .collect()
}

/// `ours` (our re-serialization) must be contained in `orig` (what codex sent): every field
/// we emit exists there with the same value, except fields codex omitted that we fill with
/// an empty default.
fn assert_subset(ours: &Value, orig: &Value, path: &str) {
    match (ours, orig) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(ov) => assert_subset(v, ov, &format!("{path}.{k}")),
                    None => assert!(
                        matches!(v, Value::Null)
                            || v == &json!([])
                            || v == &json!({})
                            || v == &json!(false)
                            || v == &json!(0)
                            || v == &json!(""),
                        "{path}.{k}: we emit {v} but codex sent nothing"
                    ),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{path}: array length");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_subset(x, y, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(ours, orig, "{path}"),
    }
}

fn round_trip<T: Serialize + DeserializeOwned>(value: &Value, what: &str) -> Value {
    let typed: T = serde_json::from_value(value.clone()).unwrap_or_else(|e| {
        panic!(
            "{what}: does not parse as {}: {e}\n{value}",
            short_type_name::<T>()
        )
    });
    let back = serde_json::to_value(&typed).unwrap();
    assert_subset(&back, value, what);
    back
}

/// Parses client params / results of the typed methods; returns `None` for other methods.
fn typed_round_trip(method: &str, value: &Value, params: bool) -> Option<(Value, &'static str)> {
    macro_rules! dispatch {
        ($($marker:ty),* $(,)?) => {
            $(
                if method == <$marker>::METHOD {
                    return Some(if params {
                        (round_trip::<<$marker as Request>::Params>(value, method), short_type_name::<<$marker as Request>::Params>())
                    } else {
                        (round_trip::<<$marker as Request>::Response>(value, method), short_type_name::<<$marker as Request>::Response>())
                    });
                }
            )*
        };
    }
    dispatch!(
        Initialize,
        ThreadStart,
        ThreadResume,
        ThreadFork,
        ThreadList,
        ThreadRead,
        ThreadArchive,
        ThreadUnarchive,
        ThreadSetName,
        ThreadCompactStart,
        TurnStart,
        TurnSteer,
        TurnInterrupt,
        ReviewStart,
        ModelList,
        AccountRead,
        AccountLoginStart,
        AccountLogout,
        AccountRateLimitsRead,
        ConfigRead,
        CommandExec,
        CommandExecutionRequestApproval,
        FileChangeRequestApproval,
        PermissionsRequestApproval,
        ToolRequestUserInput,
        McpServerElicitationRequest,
    );
    None
}

#[derive(Default)]
struct Seen {
    notifications: BTreeMap<String, usize>,
    raw_notifications: BTreeSet<String>,
    server_requests: Vec<ServerRequest>,
    responses: usize,
    errors: Vec<JsonRpcError>,
}

/// Parses every message of a transcript with the typed surface, checks that nothing we model
/// is lost, and validates our re-serialization against the (experimental) schema bundle.
fn replay(name: &str, bundle: &Schema) -> (Vec<ServerNotification>, Seen) {
    let notif_methods = bundle.methods(&bundle.root["definitions"]["ServerNotification"]);
    let request_methods = bundle.methods(&bundle.root["definitions"]["ServerRequest"]);
    let mut client_pending: BTreeMap<String, (String, Value)> = BTreeMap::new();
    let mut server_pending: BTreeMap<String, String> = BTreeMap::new();
    let mut notifications = Vec::new();
    let mut seen = Seen::default();

    for (n, line) in transcript(name).into_iter().enumerate() {
        let what = format!("{name}:{}", n + 1);
        let msg = &line.msg;
        let method = msg.get("method").and_then(Value::as_str);
        let id = msg
            .get("id")
            .map(|i| serde_json::from_value::<RequestId>(i.clone()).unwrap());
        match (line.out, method, id) {
            // client → server request
            (true, Some(method), Some(id)) => {
                // Checked when the response arrives: some requests are invalid on purpose.
                let params = msg.get("params").cloned().unwrap_or(Value::Null);
                client_pending.insert(id.to_string(), (method.to_owned(), params));
            }
            // client → server notification
            (true, Some(method), None) => assert_eq!(method, INITIALIZED_NOTIFICATION, "{what}"),
            // client → server response to a server request
            (true, None, Some(id)) => {
                let method = server_pending
                    .remove(&id.to_string())
                    .expect("answer to a known request");
                typed_round_trip(&method, &msg["result"], false).expect("typed server request");
            }
            // server → client request
            (false, Some(method), Some(id)) => {
                server_pending.insert(id.to_string(), method.to_owned());
                let params = msg.get("params").cloned().unwrap_or(Value::Null);
                let request = ServerRequest::from_parts(method, params.clone());
                assert_eq!(request.parse_error(), None, "{what}: {method}");
                assert_eq!(request.method(), method);
                if ServerRequest::TYPED_METHODS.contains(&method) {
                    assert!(!matches!(request, ServerRequest::Raw { .. }), "{what}");
                    let ours = request.params();
                    assert_subset(&ours, &params, &what);
                    bundle
                        .validate(&ours, &request_methods[method], &what)
                        .unwrap_or_else(|e| panic!("{e}"));
                }
                seen.server_requests.push(request);
            }
            // server → client notification
            (false, Some(method), None) => {
                let params = msg.get("params").cloned().unwrap_or(Value::Null);
                let note = ServerNotification::from_parts(method, params.clone());
                assert_eq!(note.parse_error(), None, "{what}: {method}");
                assert_eq!(note.method(), method);
                // Deserialize from the whole message too.
                let whole: ServerNotification = serde_json::from_value(msg.clone()).unwrap();
                assert_eq!(whole, note);
                if let ServerNotification::Raw { .. } = note {
                    assert!(!ServerNotification::TYPED_METHODS.contains(&method));
                    seen.raw_notifications.insert(method.to_owned());
                } else {
                    let ours = note.params();
                    assert_subset(&ours, &params, &what);
                    let schema = notif_methods
                        .get(method)
                        .unwrap_or_else(|| panic!("{what}: `{method}` not in the schema"));
                    bundle
                        .validate(&ours, schema, &what)
                        .unwrap_or_else(|e| panic!("{e}"));
                    // Routing helpers agree with the raw params.
                    if let Some(thread) = params.get("threadId").and_then(Value::as_str) {
                        assert_eq!(note.thread_id(), Some(thread), "{what}");
                    }
                    if let Some(turn) = params.get("turnId").and_then(Value::as_str) {
                        assert_eq!(note.turn_id(), Some(turn), "{what}");
                    }
                    *seen.notifications.entry(method.to_owned()).or_default() += 1;
                }
                notifications.push(note);
            }
            // server → client response / error
            (false, None, Some(id)) => {
                let (method, params) = client_pending
                    .remove(&id.to_string())
                    .expect("response to a known request");
                if let Some(error) = msg.get("error") {
                    seen.errors.push(round_trip_error(error, &what));
                } else {
                    if !params.is_null() {
                        typed_round_trip(&method, &params, true);
                    }
                    let result = &msg["result"];
                    if let Some((ours, type_name)) = typed_round_trip(&method, result, false) {
                        seen.responses += 1;
                        if let Some(def) = bundle.def(type_name) {
                            bundle
                                .validate(&ours, def, &what)
                                .unwrap_or_else(|e| panic!("{e}"));
                        }
                    }
                }
            }
            other => panic!("{what}: unexpected message shape {other:?}: {msg}"),
        }
    }
    assert!(
        server_pending.is_empty(),
        "{name}: unanswered server requests"
    );
    (notifications, seen)
}

fn round_trip_error(error: &Value, what: &str) -> JsonRpcError {
    let e: JsonRpcError =
        serde_json::from_value(error.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(&serde_json::to_value(&e).unwrap(), error, "{what}");
    e
}

#[test]
fn transcript_plain_parses_without_loss() {
    let bundle = Schema::experimental_bundle();
    let (notes, seen) = replay("plain", &bundle);
    assert_eq!(seen.responses, 3, "initialize, thread/start, turn/start");
    assert!(seen.errors.is_empty());

    let deltas: String = notes
        .iter()
        .filter_map(|n| match n {
            ServerNotification::AgentMessageDelta(d) => Some(d.delta.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deltas, "Hello world");
    let summary: String = notes
        .iter()
        .filter_map(|n| match n {
            ServerNotification::ReasoningSummaryTextDelta(d) => Some(d.delta.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(summary, "Thinking hard.");

    let completed: Vec<&ThreadItem> = notes
        .iter()
        .filter_map(|n| match n {
            ServerNotification::ItemCompleted(c) => Some(&c.item),
            _ => None,
        })
        .collect();
    assert!(
        matches!(completed[0], ThreadItem::UserMessage(u) if u.content[0].as_text() == Some("Say hello"))
    );
    assert!(matches!(completed[1], ThreadItem::Reasoning(r) if r.summary == ["Thinking hard."]));
    assert!(matches!(completed[2], ThreadItem::AgentMessage(a) if a.text == "Hello world"));

    let last = notes.last().unwrap();
    let ServerNotification::TurnCompleted(done) = last else {
        panic!("{last:?}")
    };
    assert_eq!(done.turn.status, TurnStatus::Completed);
    assert!(done.turn.error.is_none());
    let usage = notes.iter().find_map(|n| match n {
        ServerNotification::ThreadTokenUsageUpdated(u) => Some(&u.token_usage),
        _ => None,
    });
    assert_eq!(usage.unwrap().total.total_tokens, 15);
}

#[test]
fn transcript_approval_parses_without_loss() {
    let bundle = Schema::experimental_bundle();
    let (notes, seen) = replay("approval", &bundle);
    assert_eq!(seen.server_requests.len(), 2);
    let ServerRequest::CommandExecutionApproval(cmd) = &seen.server_requests[0] else {
        panic!("{:?}", seen.server_requests[0])
    };
    assert_eq!(cmd.item_id, "call-1");
    assert_eq!(cmd.command.as_deref(), Some("/bin/bash -c 'touch x'"));
    assert_eq!(
        cmd.proposed_execpolicy_amendment,
        Some(vec!["touch".to_owned(), "x".to_owned()])
    );
    let available = cmd
        .available_decisions
        .as_ref()
        .expect("availableDecisions");
    assert!(available.contains(
        &CommandExecutionApprovalDecision::AcceptWithExecpolicyAmendment {
            execpolicy_amendment: vec!["touch".into(), "x".into()],
        }
    ));
    assert!(matches!(
        cmd.command_actions.as_deref(),
        Some([CommandAction::Unparsed(a)]) if a.command == "touch x"
    ));
    let ServerRequest::FileChangeApproval(file) = &seen.server_requests[1] else {
        panic!("{:?}", seen.server_requests[1])
    };
    assert_eq!(file.item_id, "call-p");

    let items: Vec<&ThreadItem> = notes
        .iter()
        .filter_map(|n| match n {
            ServerNotification::ItemCompleted(c) => Some(&c.item),
            _ => None,
        })
        .collect();
    let command = items
        .iter()
        .find_map(|i| match i {
            ThreadItem::CommandExecution(c) => Some(c),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (command.status.clone(), command.exit_code),
        (CommandExecutionStatus::Completed, Some(0))
    );
    let change = items
        .iter()
        .find_map(|i| match i {
            ThreadItem::FileChange(c) => Some(c),
            _ => None,
        })
        .unwrap();
    assert_eq!(change.status, PatchApplyStatus::Declined);
    assert_eq!(change.changes[0].kind, PatchChangeKind::Add);
    assert_eq!(seen.notifications["serverRequest/resolved"], 2);
    assert!(notes.iter().any(|n| matches!(n,
        ServerNotification::ThreadStatusChanged(s)
            if matches!(&s.status, ThreadStatus::Active(a) if a.active_flags == [ThreadActiveFlag::WaitingOnApproval]))));
}

#[test]
fn transcript_interrupt_parses_without_loss() {
    let bundle = Schema::experimental_bundle();
    let (notes, seen) = replay("interrupt", &bundle);
    let messages: Vec<&str> = seen.errors.iter().map(|e| e.message.as_str()).collect();
    assert!(seen.errors[0].is_not_initialized(), "{messages:?}");
    assert!(
        seen.errors
            .iter()
            .all(|e| e.code == error_codes::INVALID_REQUEST),
        "{messages:?}"
    );
    assert!(
        seen.errors.iter().any(JsonRpcError::is_unknown_method),
        "{messages:?}"
    );
    assert!(messages.contains(&"Already initialized"));
    assert!(messages.contains(&"no active turn to steer"));
    let done = notes
        .iter()
        .find_map(|n| match n {
            ServerNotification::TurnCompleted(c) => Some(c),
            _ => None,
        })
        .unwrap();
    assert_eq!(done.turn.status, TurnStatus::Interrupted);
}

#[test]
fn transcript_lifecycle_parses_without_loss() {
    let bundle = Schema::experimental_bundle();
    let (notes, seen) = replay("lifecycle", &bundle);
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    for method in [
        "thread/name/updated",
        "thread/archived",
        "thread/unarchived",
        "deprecationNotice",
        "account/updated",
        "account/login/completed",
    ] {
        assert!(
            seen.notifications.contains_key(method),
            "{method} not seen: {:?}",
            seen.notifications
        );
    }
    // opted out in initialize
    assert!(
        !seen
            .notifications
            .contains_key("account/rateLimits/updated")
    );
    assert!(notes.iter().any(|n| matches!(n,
        ServerNotification::ItemCompleted(c) if matches!(c.item, ThreadItem::ContextCompaction(_)))));
    assert!(notes.iter().any(|n| matches!(n,
        ServerNotification::ItemCompleted(c) if matches!(c.item, ThreadItem::EnteredReviewMode(_)))));
}
