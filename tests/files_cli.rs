//! The `files` example, run as a process against a temporary directory tree.
#![cfg(unix)]

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, UNIX_EPOCH};

use common::{example, run, stderr, stdout, stdout_json};
use serde_json::{Value, json};
use tempfile::TempDir;

/// 2024-05-01T12:34:56Z.
const KNOWN_MTIME: u64 = 1_714_566_896;

/// A temporary directory holding `root/` (served) and `outside/` (not served):
///
/// ```text
/// root/a.txt               "alpha\n"  (modified at KNOWN_MTIME)
/// root/b.md                "# bee\n"
/// root/bin.dat             not UTF-8
/// root/docs/guide.md       "guide\n"
/// root/docs/notes.txt      "notes\n"
/// root/empty/
/// root/link.txt         -> a.txt
/// root/escape           -> ../outside
/// root/escape.txt       -> ../outside/secret.txt
/// root/src/lib.rs          "pub fn x() {}\n"
/// root/src/main.rs         "fn main() {}\n"
/// outside/secret.txt       "top secret\n"
/// ```
struct Tree {
    tmp: TempDir,
}

impl Tree {
    fn new() -> Tree {
        let tmp = TempDir::new().expect("temp dir");
        let tree = Tree { tmp };
        for (path, content) in [
            ("root/a.txt", "alpha\n"),
            ("root/b.md", "# bee\n"),
            ("root/docs/guide.md", "guide\n"),
            ("root/docs/notes.txt", "notes\n"),
            ("root/src/lib.rs", "pub fn x() {}\n"),
            ("root/src/main.rs", "fn main() {}\n"),
            ("outside/secret.txt", "top secret\n"),
        ] {
            let path = tree.tmp.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
        fs::write(tree.root().join("bin.dat"), [0xff, 0xfe, 0x00]).unwrap();
        fs::create_dir(tree.root().join("empty")).unwrap();
        symlink("a.txt", tree.root().join("link.txt")).unwrap();
        symlink("../outside", tree.root().join("escape")).unwrap();
        symlink("../outside/secret.txt", tree.root().join("escape.txt")).unwrap();
        let a = fs::File::options()
            .write(true)
            .open(tree.root().join("a.txt"))
            .unwrap();
        a.set_modified(UNIX_EPOCH + Duration::from_secs(KNOWN_MTIME))
            .unwrap();
        tree
    }

    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    fn outside(&self) -> PathBuf {
        self.tmp.path().join("outside")
    }

    /// The example with `FILES_ROOT` set to the served directory.
    fn cmd(&self) -> Command {
        let mut cmd = example("files");
        cmd.env("FILES_ROOT", self.root());
        cmd
    }

    fn call_with(&self, mut cmd: Command, action: &str, input: Value) -> Output {
        run(cmd.args(["call", action, &input.to_string()]))
    }

    /// Calls an action that must succeed; its JSON output.
    fn ok(&self, action: &str, input: Value) -> Value {
        let out = self.call_with(self.cmd(), action, input);
        assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
        stdout_json(&out)
    }

    /// Calls an action that must fail; its error.
    fn err(&self, action: &str, input: Value) -> ActionErr {
        ActionErr::of(&self.call_with(self.cmd(), action, input))
    }
}

/// An action error as the CLI prints it: exit code 1, then
/// `error[<code>]: <message>` and an optional `details: <json>` line on stderr.
#[derive(Debug, PartialEq)]
struct ActionErr {
    code: String,
    message: String,
    details: Option<Value>,
}

impl ActionErr {
    fn of(out: &Output) -> ActionErr {
        let text = stderr(out);
        assert_eq!(out.status.code(), Some(1), "stderr: {text}");
        assert_eq!(stdout(out), "", "an error prints nothing on stdout");
        let mut lines = text.lines();
        let first = lines.next().expect("an error line");
        let (code, message) = first
            .strip_prefix("error[")
            .and_then(|rest| rest.split_once("]: "))
            .unwrap_or_else(|| panic!("not an action error line: {first}"));
        let details = lines.next().map(|line| {
            let json = line.strip_prefix("details: ").expect("a details line");
            serde_json::from_str(json).expect("details are JSON")
        });
        assert_eq!(lines.next(), None, "unexpected stderr: {text}");
        ActionErr {
            code: code.to_owned(),
            message: message.to_owned(),
            details,
        }
    }

    fn new(code: &str, message: &str) -> ActionErr {
        ActionErr {
            code: code.to_owned(),
            message: message.to_owned(),
            details: None,
        }
    }

    /// An `invalid_input` error at `path`.
    fn invalid(path: &str, why: &str) -> ActionErr {
        ActionErr {
            code: "invalid_input".to_owned(),
            message: format!("{path}: {why}"),
            details: Some(json!({ "path": path })),
        }
    }
}

/// `(path, kind, size)` of every entry of a `list` output.
fn entries(listing: &Value) -> Vec<(String, String, u64)> {
    listing["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            let text = |k: &str| e[k].as_str().expect(k).to_owned();
            (
                text("path"),
                text("kind"),
                e["size"].as_u64().expect("size"),
            )
        })
        .collect()
}

fn entry(path: &str, kind: &str, size: u64) -> (String, String, u64) {
    (path.to_owned(), kind.to_owned(), size)
}

fn paths(listing: &Value) -> Vec<String> {
    entries(listing).into_iter().map(|(p, _, _)| p).collect()
}

/// Every path of the tree under `root/`, sorted as `list` sorts them.
const ALL_PATHS: [&str; 13] = [
    "a.txt",
    "b.md",
    "bin.dat",
    "docs",
    "docs/guide.md",
    "docs/notes.txt",
    "empty",
    "escape",
    "escape.txt",
    "link.txt",
    "src",
    "src/lib.rs",
    "src/main.rs",
];

// ---- describe, actions, check -------------------------------------------

#[test]
fn describe_lists_every_action_operator_and_config_field() {
    // No config is needed to describe.
    let manifest = stdout_json(&run(example("files").arg("describe")));
    assert_eq!(manifest["name"], "files");

    let actions: Vec<Value> = manifest["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| json!([a["name"], a["mode"], a["admin_only"], a["hidden"]]))
        .collect();
    assert_eq!(
        actions,
        vec![
            json!(["delete", "write", false, true]),
            json!(["list", "read", false, false]),
            json!(["read", "read", false, false]),
            json!(["stat", "read", false, false]),
            json!(["write", "write", true, false]),
        ]
    );
    let operators: Vec<Value> = manifest["search_operators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| json!([o["operator"], o["attribute_key"], o["value_type"]]))
        .collect();
    assert_eq!(
        operators,
        vec![
            json!(["ext", "extension", "text"]),
            json!(["modified_after", "modified", "datetime"]),
        ]
    );

    let config = &manifest["config"];
    assert_eq!(config["required"], json!(["root"]));
    let root = &config["properties"]["root"];
    assert_eq!(
        (&root["type"], &root["x-env"], root.get("default")),
        (&json!("string"), &json!("FILES_ROOT"), None)
    );
    let max = &config["properties"]["max_bytes"];
    assert_eq!(
        (&max["type"], &max["x-env"], &max["default"]),
        (
            &json!("integer"),
            &json!("FILES_MAX_BYTES"),
            &json!(1_048_576)
        )
    );
    // The form metadata of `#[config_field(...)]`, as the config schema maps
    // it: `label` is the `title`, `example` one of the `examples`,
    // `placeholder` and `advanced` the `x-placeholder` and `x-advanced`
    // extensions. What a field does not set is absent, not empty or false.
    assert_eq!(
        *root,
        json!({
            "type": "string",
            "description": "The directory served; every path is relative to it.",
            "title": "Root directory",
            "x-placeholder": "/path/to/served/dir",
            "examples": ["/srv/shared"],
            "x-env": "FILES_ROOT",
        })
    );
    assert_eq!(
        *max,
        json!({
            "type": "integer",
            "format": "uint64",
            "minimum": 0,
            "description": "The largest file, in bytes, that `read` returns and `write` accepts.",
            "default": 1_048_576,
            "x-advanced": true,
            "x-env": "FILES_MAX_BYTES",
        })
    );
    // LibreFang's form carries the same metadata.
    assert_eq!(
        manifest["fields"],
        json!([
            {"key": "FILES_ROOT", "label": "Root directory", "type": "text", "required": true, "placeholder": "/path/to/served/dir", "advanced": false},
            {"key": "FILES_MAX_BYTES", "label": "Max Bytes", "type": "number", "required": false, "placeholder": "1048576", "advanced": true},
        ])
    );

    let list = &manifest["actions"][1]["input_schema"];
    let mut params: Vec<&String> = list["properties"].as_object().unwrap().keys().collect();
    params.sort();
    assert_eq!(params, ["cursor", "dir", "glob", "limit", "recursive"]);
    assert_eq!(
        list.get("required"),
        None,
        "every `list` parameter is optional"
    );
    let write = &manifest["actions"][4]["input_schema"];
    assert_eq!(write["required"], json!(["path", "content"]));
    assert_eq!(
        write["properties"]["create_dirs"]["description"],
        "Create missing parent directories (default false)."
    );
}

/// `(name, flags)` of each line of one section of `actions` output.
fn listed(out: &str, section: &str) -> Vec<(String, String)> {
    out.lines()
        .skip_while(|l| *l != section)
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next().unwrap().to_owned();
            (name, words.next().unwrap().to_owned())
        })
        .collect()
}

#[test]
fn actions_hides_delete_unless_all() {
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    let visible = [
        ("list", "read"),
        ("read", "read"),
        ("stat", "read"),
        ("write", "write,admin"),
    ];
    let operators = pairs(&[("ext", "text"), ("modified_after", "datetime")]);

    let out = run(example("files").arg("actions"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(listed(&text, "actions:"), pairs(&visible));
    assert_eq!(listed(&text, "search operators:"), operators);

    let out = run(example("files").args(["actions", "--all"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let mut all = vec![("delete", "write,hidden")];
    all.extend(visible);
    assert_eq!(listed(&text, "actions:"), pairs(&all));
    assert_eq!(listed(&text, "search operators:"), operators);
}

#[test]
fn check_passes_with_a_root() {
    let tree = Tree::new();
    let out = run(tree.cmd().arg("check"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        text.lines().next(),
        Some("config ok: connector `files`, 2 field(s)")
    );
    assert_eq!(lines[1], ["root", "FILES_ROOT", "set"]);
    assert_eq!(lines[2], ["max_bytes", "FILES_MAX_BYTES", "default"]);
    // The init hook ran too: the connector can start.
    assert_eq!(lines[3], ["init", "ok"]);
    assert_eq!(lines.len(), 4);

    // --no-init: the configuration alone.
    let out = run(tree.cmd().args(["check", "--no-init"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 3, "{}", stdout(&out));
    assert!(!stdout(&out).contains("init ok"));
}

#[test]
fn check_runs_the_init_hook_and_fails_as_the_connector_would_start() {
    let tree = Tree::new();
    let missing = tree.root().join("nope");
    // The init hook refuses a root that does not exist.
    let check = run(tree.cmd().env("FILES_ROOT", &missing).arg("check"));
    let start = run(tree
        .cmd()
        .env("FILES_ROOT", &missing)
        .args(["call", "list"]));
    assert_eq!(check.status.code(), Some(2), "{}", stderr(&check));
    assert_eq!(
        stdout(&check),
        "",
        "no \"config ok\" for a connector that cannot start"
    );
    assert_eq!(
        stderr(&check),
        format!(
            "error: connector `files` failed to initialise: `root` directory `{}` cannot be opened: \
             No such file or directory (os error 2)\n",
            missing.display()
        )
    );
    // Word for word what starting it says, with the same exit code.
    assert_eq!(check.status.code(), start.status.code());
    assert_eq!(stderr(&check), stderr(&start));

    // --no-init checks the configuration alone, which is valid.
    let out = run(tree
        .cmd()
        .env("FILES_ROOT", &missing)
        .args(["check", "--no-init"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("config ok: connector `files`, 2 field(s)\n"));
    // `--init`, the old opt-in, is still accepted (and is the default).
    let out = run(tree.cmd().args(["check", "--init"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).ends_with("init ok\n"), "{}", stdout(&out));
}

#[test]
fn check_without_a_root_names_files_root() {
    let out = run(example("files").arg("check"));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out),
        "error: invalid configuration for connector `files` (1 problem):\n  \
         - `root` (env FILES_ROOT): required but not set\n"
    );
}

#[test]
fn check_reports_every_problem_at_once() {
    let out = run(example("files").env("FILES_MAX_BYTES", "abc").arg("check"));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: invalid configuration for connector `files` (2 problems):\n  \
         - `root` (env FILES_ROOT): required but not set\n  \
         - `max_bytes` (env FILES_MAX_BYTES): invalid value \"abc\": invalid digit found in string\n"
    );
}

#[test]
fn a_root_that_is_not_a_directory_stops_the_connector() {
    let tree = Tree::new();
    let file = tree.root().join("a.txt");
    let out = run(tree.cmd().env("FILES_ROOT", &file).args(["call", "list"]));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "error: connector `files` failed to initialise: `root` `{}` is not a directory\n",
            file.display()
        )
    );

    let missing = tree.root().join("nope");
    let out = run(tree
        .cmd()
        .env("FILES_ROOT", &missing)
        .args(["call", "list"]));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "error: connector `files` failed to initialise: `root` directory `{}` cannot be opened: \
             No such file or directory (os error 2)\n",
            missing.display()
        )
    );
}

#[test]
fn a_config_file_replaces_the_environment() {
    let tree = Tree::new();
    let config = tree.tmp.path().join("files.json");
    fs::write(
        &config,
        json!({ "root": tree.root(), "max_bytes": 4 }).to_string(),
    )
    .unwrap();
    // No FILES_ROOT in the environment: everything comes from the file.
    let with_file = || {
        let mut cmd = example("files");
        cmd.arg("--config").arg(&config);
        cmd
    };
    let out = run(with_file().arg("check"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("config ok: connector `files`, 2 field(s)\n"));

    let out = tree.call_with(with_file(), "read", json!({"path": "a.txt"}));
    assert_eq!(
        ActionErr::of(&out),
        ActionErr::new(
            "failed_precondition",
            "`a.txt` is 6 bytes, over the limit of 4 bytes (max_bytes)"
        )
    );
    let out = tree.call_with(with_file(), "list", json!({"dir": "docs"}));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        paths(&stdout_json(&out)),
        ["docs/guide.md", "docs/notes.txt"]
    );

    fs::write(
        &config,
        json!({ "root": tree.root(), "max_byte": 4 }).to_string(),
    )
    .unwrap();
    let out = run(with_file().arg("check"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("  - `max_byte`: unknown config key; did you mean `max_bytes`?\n"),
        "{}",
        stderr(&out)
    );
}

// ---- list ---------------------------------------------------------------

#[test]
fn list_shows_the_top_level_sorted_with_kinds_and_sizes() {
    let tree = Tree::new();
    let listing = tree.ok("list", json!({}));
    assert_eq!(
        entries(&listing),
        [
            entry("a.txt", "file", 6),
            entry("b.md", "file", 6),
            entry("bin.dat", "file", 3),
            entry("docs", "dir", 0),
            entry("empty", "dir", 0),
            entry("escape", "symlink", 10),
            entry("escape.txt", "symlink", 21),
            entry("link.txt", "symlink", 5),
            entry("src", "dir", 0),
        ]
    );
    assert_eq!(listing["next_cursor"], Value::Null);
    assert_eq!(listing["entries"][0]["modified"], "2024-05-01T12:34:56Z");
    // `dir` is relative to the root, and so are the paths returned.
    assert_eq!(
        entries(&tree.ok("list", json!({"dir": "src/"}))),
        [
            entry("src/lib.rs", "file", 14),
            entry("src/main.rs", "file", 13)
        ]
    );
    assert_eq!(
        paths(&tree.ok("list", json!({"dir": "empty"}))),
        Vec::<String>::new()
    );
}

#[test]
fn list_recursive_walks_every_directory_without_following_links() {
    let tree = Tree::new();
    let listing = tree.ok("list", json!({"recursive": true}));
    assert_eq!(paths(&listing), ALL_PATHS);
    let listing = tree.ok("list", json!({"dir": "docs", "recursive": true}));
    assert_eq!(paths(&listing), ["docs/guide.md", "docs/notes.txt"]);
}

#[test]
fn list_glob_filters_on_names() {
    let tree = Tree::new();
    assert_eq!(paths(&tree.ok("list", json!({"glob": "*.md"}))), ["b.md"]);
    assert_eq!(
        paths(&tree.ok("list", json!({"glob": "*.md", "recursive": true}))),
        ["b.md", "docs/guide.md"]
    );
    assert_eq!(
        paths(&tree.ok("list", json!({"glob": "*.rs", "recursive": true}))),
        ["src/lib.rs", "src/main.rs"]
    );
    assert_eq!(
        paths(&tree.ok("list", json!({"glob": "[ab]*"}))),
        ["a.txt", "b.md", "bin.dat"]
    );
}

#[test]
fn list_pages_through_everything_with_the_cursor() {
    let tree = Tree::new();
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut input = json!({"recursive": true, "limit": 5});
    loop {
        let page = tree.ok("list", input.clone());
        pages += 1;
        let got = paths(&page);
        assert_eq!(got.len(), if pages < 3 { 5 } else { 3 }, "page {pages}");
        seen.extend(got);
        match &page["next_cursor"] {
            Value::Null => break,
            Value::String(cursor) => input["cursor"] = json!(cursor),
            other => panic!("next_cursor is {other}"),
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ALL_PATHS);

    // The same cursor gives the same page again, and works with a filter.
    let first = tree.ok("list", json!({"recursive": true, "limit": 5}));
    let cursor = first["next_cursor"].clone();
    let again = tree.ok(
        "list",
        json!({"recursive": true, "limit": 5, "cursor": cursor}),
    );
    assert_eq!(paths(&again), ALL_PATHS[5..10]);
    let filtered = tree.ok(
        "list",
        json!({"recursive": true, "glob": "*.rs", "cursor": cursor}),
    );
    assert_eq!(paths(&filtered), ["src/lib.rs", "src/main.rs"]);
    assert_eq!(filtered["next_cursor"], Value::Null);
    // A page that ends exactly at the last entry has no next page.
    let exact = tree.ok("list", json!({"limit": 9}));
    assert_eq!(
        (paths(&exact).len(), &exact["next_cursor"]),
        (9, &Value::Null)
    );
}

#[test]
fn list_limit_is_between_1_and_1000() {
    let tree = Tree::new();
    for limit in [0, 1001] {
        assert_eq!(
            tree.err("list", json!({ "limit": limit })),
            ActionErr::invalid(
                "$.limit",
                &format!("must be between 1 and 1000, got {limit}")
            )
        );
    }
    assert_eq!(paths(&tree.ok("list", json!({"limit": 1000}))).len(), 9);
    let one = tree.ok("list", json!({"limit": 1}));
    assert_eq!(paths(&one), ["a.txt"]);
    assert!(one["next_cursor"].is_string());
    // A negative limit is not a usize: the decoder rejects it.
    assert_eq!(
        tree.err("list", json!({"limit": -1})).details,
        Some(json!({"path": "$.limit"}))
    );
}

#[test]
fn list_rejects_bad_globs_cursors_and_dirs() {
    let tree = Tree::new();
    assert_eq!(
        tree.err("list", json!({"glob": "[a"})),
        ActionErr::invalid(
            "$.glob",
            "invalid pattern `[a`: Pattern syntax error near position 0: invalid range pattern"
        )
    );
    for cursor in ["zz", "abc", ""] {
        assert_eq!(
            tree.err("list", json!({ "cursor": cursor })),
            ActionErr::invalid("$.cursor", "not a cursor returned by `list`"),
            "cursor {cursor:?}"
        );
    }
    assert_eq!(
        tree.err("list", json!({"dir": "a.txt"})),
        ActionErr::invalid("$.dir", "`a.txt` is not a directory")
    );
    assert_eq!(
        tree.err("list", json!({"dir": "nope"})),
        ActionErr::new("not_found", "`nope` does not exist")
    );
}

// ---- read, stat -----------------------------------------------------------

#[test]
fn read_returns_utf8_text() {
    let tree = Tree::new();
    assert_eq!(
        tree.ok("read", json!({"path": "docs/guide.md"})),
        json!({"path": "docs/guide.md", "size": 6, "content": "guide\n"})
    );
    // Paths are normalised; a link inside the root is followed.
    assert_eq!(
        tree.ok("read", json!({"path": "./docs/../a.txt"})),
        json!({"path": "a.txt", "size": 6, "content": "alpha\n"})
    );
    assert_eq!(
        tree.ok("read", json!({"path": "link.txt"})),
        json!({"path": "link.txt", "size": 6, "content": "alpha\n"})
    );
}

#[test]
fn read_refuses_large_binary_missing_and_directory_paths() {
    let tree = Tree::new();
    let out = tree.call_with(
        {
            let mut cmd = tree.cmd();
            cmd.env("FILES_MAX_BYTES", "5");
            cmd
        },
        "read",
        json!({"path": "a.txt"}),
    );
    assert_eq!(
        ActionErr::of(&out),
        ActionErr::new(
            "failed_precondition",
            "`a.txt` is 6 bytes, over the limit of 5 bytes (max_bytes)"
        )
    );
    assert_eq!(
        tree.err("read", json!({"path": "bin.dat"})),
        ActionErr::new("failed_precondition", "`bin.dat` is not UTF-8 text")
    );
    assert_eq!(
        tree.err("read", json!({"path": "docs/missing.md"})),
        ActionErr::new("not_found", "`docs/missing.md` does not exist")
    );
    assert_eq!(
        tree.err("read", json!({"path": "a.txt/x"})),
        ActionErr::new("not_found", "`a.txt/x` does not exist")
    );
    assert_eq!(
        tree.err("read", json!({"path": "docs"})),
        ActionErr::invalid("$.path", "`docs` is a directory; use `list`")
    );
    // A named pipe would block a reader forever: refused up front.
    let fifo = run(Command::new("mkfifo").arg(tree.root().join("pipe")));
    assert!(fifo.status.success(), "mkfifo: {}", stderr(&fifo));
    assert_eq!(
        tree.err("read", json!({"path": "pipe"})),
        ActionErr::new("failed_precondition", "`pipe` is not a regular file")
    );
}

#[test]
fn stat_describes_files_directories_and_links() {
    let tree = Tree::new();
    assert_eq!(
        tree.ok("stat", json!({"path": "a.txt"})),
        json!({
            "path": "a.txt",
            "kind": "file",
            "size": 6,
            "modified": "2024-05-01T12:34:56Z",
            "readonly": false,
        })
    );
    let dir = tree.ok("stat", json!({"path": "docs"}));
    assert_eq!((&dir["kind"], &dir["size"]), (&json!("dir"), &json!(0)));
    let link = tree.ok("stat", json!({"path": "link.txt"}));
    assert_eq!(
        (&link["kind"], &link["size"]),
        (&json!("symlink"), &json!(5))
    );
    let root = tree.ok("stat", json!({"path": "."}));
    assert_eq!((&root["path"], &root["kind"]), (&json!("."), &json!("dir")));

    let mut perms = fs::metadata(tree.root().join("b.md"))
        .unwrap()
        .permissions();
    perms.set_readonly(true);
    fs::set_permissions(tree.root().join("b.md"), perms).unwrap();
    assert_eq!(tree.ok("stat", json!({"path": "b.md"}))["readonly"], true);

    assert_eq!(
        tree.err("stat", json!({"path": "nope"})),
        ActionErr::new("not_found", "`nope` does not exist")
    );
}

// ---- write, delete ----------------------------------------------------------

#[test]
fn write_then_read_back() {
    let tree = Tree::new();
    assert_eq!(
        tree.ok(
            "write",
            json!({"path": "docs/new.md", "content": "héllo\n"})
        ),
        json!({"path": "docs/new.md", "bytes_written": 7})
    );
    assert_eq!(
        tree.ok("read", json!({"path": "docs/new.md"})),
        json!({"path": "docs/new.md", "size": 7, "content": "héllo\n"})
    );
    // Overwrites.
    tree.ok("write", json!({"path": "a.txt", "content": ""}));
    assert_eq!(fs::read_to_string(tree.root().join("a.txt")).unwrap(), "");

    // Missing parents are created only when asked.
    let input = json!({"path": "x/y/z.txt", "content": "deep"});
    assert_eq!(
        tree.err("write", input.clone()),
        ActionErr::new(
            "not_found",
            "the directory of `x/y/z.txt` does not exist; pass `create_dirs: true` to create it"
        )
    );
    assert!(!tree.root().join("x").exists());
    let mut input = input;
    input["create_dirs"] = json!(true);
    assert_eq!(
        tree.ok("write", input),
        json!({"path": "x/y/z.txt", "bytes_written": 4})
    );
    assert_eq!(
        fs::read_to_string(tree.root().join("x/y/z.txt")).unwrap(),
        "deep"
    );
}

#[test]
fn write_refuses_too_much_content_and_directories() {
    let tree = Tree::new();
    let mut cmd = tree.cmd();
    cmd.env("FILES_MAX_BYTES", "3");
    let out = tree.call_with(cmd, "write", json!({"path": "n.txt", "content": "four"}));
    assert_eq!(
        ActionErr::of(&out),
        ActionErr::invalid("$.content", "4 bytes is over the limit of 3 bytes")
    );
    assert!(!tree.root().join("n.txt").exists());
    assert_eq!(
        tree.err("write", json!({"path": "docs", "content": "x"})),
        ActionErr::invalid("$.path", "`docs` is a directory")
    );
}

#[test]
fn delete_removes_files_links_and_empty_directories() {
    let tree = Tree::new();
    assert_eq!(
        tree.ok("delete", json!({"path": "b.md"})),
        json!({"path": "b.md", "kind": "file"})
    );
    assert!(!tree.root().join("b.md").exists());
    assert_eq!(
        tree.ok("delete", json!({"path": "link.txt"})),
        json!({"path": "link.txt", "kind": "symlink"})
    );
    assert!(
        tree.root().join("a.txt").exists(),
        "the link's target stays"
    );
    assert_eq!(
        tree.ok("delete", json!({"path": "empty"})),
        json!({"path": "empty", "kind": "dir"})
    );
    assert!(!tree.root().join("empty").exists());

    assert_eq!(
        tree.err("delete", json!({"path": "docs"})),
        ActionErr::new("failed_precondition", "directory `docs` is not empty")
    );
    assert!(tree.root().join("docs/guide.md").exists());
    assert_eq!(
        tree.err("delete", json!({"path": "b.md"})),
        ActionErr::new("not_found", "`b.md` does not exist")
    );
    for root in [".", "", "docs/.."] {
        assert_eq!(
            tree.err("delete", json!({ "path": root })),
            ActionErr::invalid("$.path", "cannot delete the root"),
            "path {root:?}"
        );
    }
}

// ---- the sandbox, input errors ------------------------------------------------

#[test]
fn paths_outside_the_root_are_unauthorized() {
    let tree = Tree::new();
    let cases = [
        (
            "../outside/secret.txt",
            "`../outside/secret.txt` is outside the root",
        ),
        (
            "docs/../../outside/secret.txt",
            "`docs/../../outside/secret.txt` is outside the root",
        ),
        (
            "/etc/passwd",
            "`/etc/passwd` is absolute; paths are relative to the root",
        ),
        ("escape.txt", "`escape.txt` leads outside the root"),
        (
            "escape/secret.txt",
            "`escape/secret.txt` leads outside the root",
        ),
    ];
    for (path, message) in cases {
        for action in ["read", "stat", "delete"] {
            assert_eq!(
                tree.err(action, json!({ "path": path })),
                ActionErr::new("unauthorized", message),
                "{action} {path}"
            );
        }
    }
    assert_eq!(
        tree.err("list", json!({"dir": "escape"})),
        ActionErr::new("unauthorized", "`escape` leads outside the root")
    );
    assert_eq!(
        tree.err("list", json!({"dir": ".."})),
        ActionErr::new("unauthorized", "`..` is outside the root")
    );
    // Writing through a link to a directory outside, even to a new file.
    assert_eq!(
        tree.err(
            "write",
            json!({"path": "escape/new.txt", "content": "x", "create_dirs": true})
        ),
        ActionErr::new("unauthorized", "`escape/new.txt` leads outside the root")
    );
    assert_eq!(
        tree.err("write", json!({"path": "escape.txt", "content": "x"})),
        ActionErr::new("unauthorized", "`escape.txt` leads outside the root")
    );
    let mut outside: Vec<_> = fs::read_dir(tree.outside())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    outside.sort();
    assert_eq!(outside, ["secret.txt"]);
    assert_eq!(
        fs::read_to_string(tree.outside().join("secret.txt")).unwrap(),
        "top secret\n"
    );
}

#[test]
fn bad_inputs_are_invalid_input_with_their_json_path() {
    let tree = Tree::new();
    assert_eq!(
        tree.err("read", json!({"path": 5})),
        ActionErr::invalid(
            "$.path",
            "invalid type: integer `5`, expected a string at line 1 column 9"
        )
    );
    assert_eq!(
        tree.err("read", json!({"path": "a.txt", "bogus": 1})),
        ActionErr::invalid(
            "$.bogus",
            "unknown field `bogus`, expected `path` at line 1 column 8"
        )
    );
    let missing = tree.err("write", json!({"path": "a.txt"}));
    assert_eq!(
        (missing.code.as_str(), &missing.details),
        ("invalid_input", &Some(json!({"path": "$.content"})))
    );
    assert!(
        missing.message.contains("missing field `content`"),
        "{missing:?}"
    );
    assert_eq!(
        tree.err("list", json!({"recursive": "yes"})).details,
        Some(json!({"path": "$.recursive"}))
    );
    assert_eq!(
        tree.err("read", json!({"path": "a\u{0}b"})),
        ActionErr::invalid("$.path", "a path cannot contain NUL")
    );
}

#[test]
fn a_root_given_through_a_link_is_canonicalised() {
    // FILES_ROOT itself may be given through a link and with `..`: the init
    // hook canonicalises it, so paths inside still resolve.
    let tree = Tree::new();
    let alias = tree.tmp.path().join("alias");
    symlink(tree.root(), &alias).unwrap();
    let mut cmd = example("files");
    cmd.env("FILES_ROOT", Path::new(&alias).join("../alias"));
    let out = tree.call_with(cmd, "read", json!({"path": "a.txt"}));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)["content"], "alpha\n");
}

fn resolve(tree: &Tree, operator: &str, value: &str) -> Output {
    run(tree.cmd().args(["resolve", operator, value]))
}

#[test]
fn ext_resolves_to_matching_files_with_or_without_the_dot() {
    let tree = Tree::new();
    for value in ["rs", ".rs", "RS"] {
        let out = resolve(&tree, "ext", value);
        assert_eq!(out.status.code(), Some(0), "{value}: {}", stderr(&out));
        assert_eq!(
            stdout_json(&out),
            json!(["src/lib.rs", "src/main.rs"]),
            "{value}"
        );
    }
    let out = resolve(&tree, "ext", "zip");
    assert_eq!(stdout_json(&out), json!([]));
}

#[test]
fn modified_after_filters_by_time_and_rejects_bad_dates() {
    let tree = Tree::new();
    // a.txt is dated KNOWN_MTIME (2024-05-01); every other file was written just now.
    let out = resolve(&tree, "modified_after", "2025-01-01");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let files = stdout_json(&out);
    let files: Vec<&str> = files
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(!files.contains(&"a.txt"), "{files:?}");
    assert!(
        files.contains(&"b.md") && files.contains(&"src/main.rs"),
        "{files:?}"
    );
    let all = stdout_json(&resolve(&tree, "modified_after", "1970-01-02T00:00:00Z"));
    assert!(all.as_array().unwrap().contains(&json!("a.txt")), "{all}");

    let bad = ActionErr::of(&resolve(&tree, "modified_after", "yesterday"));
    assert_eq!(bad.code, "invalid_input");
    assert_eq!(bad.details, Some(json!({"path": "$.value"})));
    let unknown = ActionErr::of(&resolve(&tree, "nope", "x"));
    assert_eq!(unknown.code, "not_found");
    assert!(
        unknown.message.contains("search operator `nope`"),
        "{}",
        unknown.message
    );
}
