//! A connector over a local directory tree: list, read, stat, write and delete
//! files, find them by extension or modification time, and sync them into
//! a search index.
//!
//! ```text
//! export FILES_ROOT=.
//! cargo run --example files -- call list '{"glob": "*.rs", "recursive": true}'
//! cargo run --example files -- call read '{"path": "Cargo.toml"}'
//! cargo run --example files -- sync --state files.state --out docs.jsonl
//! ```
//!
//! The `files` sync walks the tree in path order, a page of 50 files at a
//! time, and stores a checkpoint after every page: a run killed half-way
//! resumes after the last page it stored. A full run emits every file and,
//! when it completes, reports the files that are gone as deleted; an
//! incremental run emits only the files modified since the last completed
//! run. A file that cannot be read is reported with `fail_item` (up to 10%
//! of the files may fail before the run does).
//!
//! Every path a caller gives is relative to `root` (`""` and `"."` name the
//! root itself). Absolute paths, `..` that climbs out of the root and symbolic
//! links that lead out of it are refused with `unauthorized`. The check and the
//! file operation are separate system calls, so someone who can rename files
//! inside the root at that very moment could race them: serve trees that only
//! trusted users change.

use std::fs::{self, Metadata};
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use glob::Pattern;
use schemars::JsonSchema;
use serde::Serialize;
use spoke::CancellationToken;
use spoke::prelude::*;
use spoke::sync::{Document, Permissions, SyncMode, Timestamp};

/// Files per page of the `files` sync: a checkpoint after each.
const SYNC_PAGE: usize = 50;

/// Where the `files` sync got to.
#[derive(Debug, Default, Clone, Serialize, Deserialize, JsonSchema)]
struct FilesCursor {
    /// Files modified after this changed since the last completed run.
    modified_after: Option<Timestamp>,
    /// Mid-run: the last path of the last page stored; the walk goes on after it.
    last_path: Option<String>,
    /// Mid-run: the newest modification seen so far.
    newest: Option<Timestamp>,
}

/// What the `files` sync puts in a document's attributes: the values the
/// `ext` and `modified_after` search operators filter on.
#[derive(Serialize, JsonSchema)]
struct FileAttributes {
    /// Its extension without the dot (`rs`), lower-cased, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    extension: Option<String>,
    /// When it last changed, RFC 3339 in UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    modified: Option<String>,
}

/// What the `files` sync keeps in a document's `metadata.extra`.
#[derive(Serialize, JsonSchema)]
struct FileExtra {
    /// The directory that holds it, relative to the root (`.` for the root).
    directory: String,
}

/// Entries per `list` page when the caller does not say.
const DEFAULT_LIMIT: usize = 100;
/// The most entries one `list` page may hold.
const MAX_LIMIT: usize = 1000;

/// Files in a local directory tree.
#[connector(name = "files", init = Self::init)]
pub struct Files {
    /// The directory served; every path is relative to it.
    #[config_field(
        env = "FILES_ROOT",
        label = "Root directory",
        placeholder = "/path/to/served/dir",
        example = "/srv/shared"
    )]
    root: PathBuf,
    /// The largest file, in bytes, that `read` returns and `write` accepts.
    #[config_field(env = "FILES_MAX_BYTES", default = 1_048_576, advanced)]
    max_bytes: u64,
}

/// What an entry is. Symbolic links are reported as such, never followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Kind {
    File,
    Dir,
    Symlink,
}

impl Kind {
    fn of(meta: &Metadata) -> Kind {
        if meta.is_symlink() {
            Kind::Symlink
        } else if meta.is_dir() {
            Kind::Dir
        } else {
            Kind::File
        }
    }
}

/// One file, directory or symbolic link.
#[derive(Debug, Serialize, JsonSchema)]
struct Entry {
    /// Relative to the root, `/`-separated.
    path: String,
    kind: Kind,
    /// Size in bytes (0 for directories).
    size: u64,
    /// Last modification, RFC 3339 in UTC (`null` where the platform has none).
    modified: Option<String>,
}

impl Entry {
    fn new(path: String, meta: &Metadata) -> Entry {
        let kind = Kind::of(meta);
        Entry {
            path,
            kind,
            size: if kind == Kind::Dir { 0 } else { meta.len() },
            modified: meta.modified().ok().map(format_rfc3339),
        }
    }
}

/// One page of `list`.
#[derive(Debug, Serialize, JsonSchema)]
struct Listing {
    /// Sorted by path.
    entries: Vec<Entry>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// A text file's content.
#[derive(Debug, Serialize, JsonSchema)]
struct FileContent {
    path: String,
    /// Size in bytes.
    size: u64,
    content: String,
}

/// What `stat` reports.
#[derive(Debug, Serialize, JsonSchema)]
struct Stat {
    #[serde(flatten)]
    entry: Entry,
    /// Whether the entry's permissions forbid writing.
    readonly: bool,
}

/// What `write` did.
#[derive(Debug, Serialize, JsonSchema)]
struct Written {
    path: String,
    bytes_written: u64,
}

/// What `delete` removed.
#[derive(Debug, Serialize, JsonSchema)]
struct Deleted {
    path: String,
    kind: Kind,
}

/// A caller's path that passed the sandbox check.
#[derive(Debug, Clone)]
struct Resolved {
    /// Relative to the root, normalised and `/`-separated; `.` for the root.
    rel: String,
    /// The same path under the canonical root.
    abs: PathBuf,
}

#[connector]
impl Files {
    /// List a directory, sorted by path, one page at a time.
    ///
    /// # Arguments
    /// * `dir` - Directory to list, relative to the root (default: the root).
    /// * `glob` - Only entries whose name matches this pattern, e.g. `*.rs`.
    /// * `recursive` - Also list every subdirectory (default false). Symbolic links are not followed.
    /// * `limit` - At most this many entries, 1 to 1000 (default 100).
    /// * `cursor` - The `next_cursor` of the previous page.
    #[action(read)]
    fn list(
        &self,
        ctx: &Context,
        dir: Option<String>,
        glob: Option<String>,
        recursive: Option<bool>,
        limit: Option<usize>,
        cursor: Option<String>,
    ) -> Result<Listing, ActionError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            let why = format!("must be between 1 and {MAX_LIMIT}, got {limit}");
            return Err(ActionError::invalid_input_at("$.limit", why));
        }
        let pattern = glob
            .map(|glob| {
                Pattern::new(&glob).map_err(|e| {
                    let why = format!("invalid pattern `{glob}`: {e}");
                    ActionError::invalid_input_at("$.glob", why)
                })
            })
            .transpose()?;
        let after = cursor
            .map(|cursor| {
                decode_cursor(&cursor).ok_or_else(|| {
                    ActionError::invalid_input_at("$.cursor", "not a cursor returned by `list`")
                })
            })
            .transpose()?;
        let dir = self.resolve("$.dir", dir.as_deref().unwrap_or("."))?;
        let meta = fs::metadata(&dir.abs).map_err(|e| io_error(&dir.rel, e))?;
        if !meta.is_dir() {
            let why = format!("`{}` is not a directory", dir.rel);
            return Err(ActionError::invalid_input_at("$.dir", why));
        }

        // Every page walks the tree again and sorts it: simple and stateless,
        // and quick enough for tens of thousands of entries.
        let mut entries: Vec<Entry> = walk(ctx.cancellation(), &dir, recursive.unwrap_or(false))?
            .into_iter()
            .filter(|(path, _)| pattern.as_ref().is_none_or(|p| p.matches(file_name(path))))
            .filter(|(path, _)| after.as_ref().is_none_or(|after| path > after))
            .map(|(path, meta)| Entry::new(path, &meta))
            .collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let more = entries.len() > limit;
        entries.truncate(limit);
        let next_cursor = entries
            .last()
            .filter(|_| more)
            .map(|e| encode_cursor(&e.path));
        Ok(Listing {
            entries,
            next_cursor,
        })
    }

    /// Read a UTF-8 text file.
    ///
    /// A file larger than `max_bytes`, or one that is not valid UTF-8, fails
    /// with `failed_precondition`: the request is fine, but the file cannot be
    /// returned as text.
    ///
    /// # Arguments
    /// * `path` - The file, relative to the root.
    #[action(read)]
    fn read(&self, path: String) -> Result<FileContent, ActionError> {
        let file = self.resolve("$.path", &path)?;
        let meta = fs::metadata(&file.abs).map_err(|e| io_error(&file.rel, e))?;
        if meta.is_dir() {
            let why = format!("`{}` is a directory; use `list`", file.rel);
            return Err(ActionError::invalid_input_at("$.path", why));
        }
        if !meta.is_file() {
            let why = format!("`{}` is not a regular file", file.rel);
            return Err(ActionError::failed_precondition(why));
        }
        if meta.len() > self.max_bytes {
            return Err(ActionError::failed_precondition(format!(
                "`{}` is {} bytes, over the limit of {} bytes (max_bytes)",
                file.rel,
                meta.len(),
                self.max_bytes
            )));
        }
        let bytes = fs::read(&file.abs).map_err(|e| io_error(&file.rel, e))?;
        let content = String::from_utf8(bytes).map_err(|_| {
            ActionError::failed_precondition(format!("`{}` is not UTF-8 text", file.rel))
        })?;
        Ok(FileContent {
            path: file.rel,
            size: content.len() as u64,
            content,
        })
    }

    /// Describe a file, directory or symbolic link (a link itself, not its target).
    ///
    /// # Arguments
    /// * `path` - The entry, relative to the root.
    #[action(read)]
    fn stat(&self, path: String) -> Result<Stat, ActionError> {
        let target = self.resolve("$.path", &path)?;
        let meta = fs::symlink_metadata(&target.abs).map_err(|e| io_error(&target.rel, e))?;
        let readonly = meta.permissions().readonly();
        Ok(Stat {
            entry: Entry::new(target.rel, &meta),
            readonly,
        })
    }

    /// Write a UTF-8 text file, replacing it if it exists.
    ///
    /// # Arguments
    /// * `path` - The file, relative to the root.
    /// * `content` - The new content, at most `max_bytes` bytes.
    /// * `create_dirs` - Create missing parent directories (default false).
    #[action(write, admin_only, idempotent)]
    fn write(
        &self,
        path: String,
        content: String,
        create_dirs: Option<bool>,
    ) -> Result<Written, ActionError> {
        let size = content.len() as u64;
        if size > self.max_bytes {
            let why = format!("{size} bytes is over the limit of {} bytes", self.max_bytes);
            return Err(ActionError::invalid_input_at("$.content", why));
        }
        let file = self.resolve("$.path", &path)?;
        if file.abs.is_dir() {
            let why = format!("`{}` is a directory", file.rel);
            return Err(ActionError::invalid_input_at("$.path", why));
        }
        if let Some(parent) = file.abs.parent() {
            if create_dirs.unwrap_or(false) {
                fs::create_dir_all(parent).map_err(|e| io_error(&file.rel, e))?;
            } else if !parent.is_dir() {
                return Err(ActionError::not_found(format!(
                    "the directory of `{}` does not exist; pass `create_dirs: true` to create it",
                    file.rel
                )));
            }
        }
        fs::write(&file.abs, &content).map_err(|e| io_error(&file.rel, e))?;
        Ok(Written {
            path: file.rel,
            bytes_written: size,
        })
    }

    /// Delete a file, a symbolic link or an empty directory.
    ///
    /// A directory that still has entries fails with `failed_precondition`:
    /// delete what is inside first. Hidden: hosts do not offer it by default.
    ///
    /// # Arguments
    /// * `path` - The entry, relative to the root.
    #[action(write, hidden)]
    fn delete(&self, path: String) -> Result<Deleted, ActionError> {
        let target = self.resolve("$.path", &path)?;
        if target.rel == "." {
            return Err(ActionError::invalid_input_at(
                "$.path",
                "cannot delete the root",
            ));
        }
        let meta = fs::symlink_metadata(&target.abs).map_err(|e| io_error(&target.rel, e))?;
        let kind = Kind::of(&meta);
        let removed = match kind {
            Kind::Dir => fs::remove_dir(&target.abs),
            Kind::File | Kind::Symlink => fs::remove_file(&target.abs),
        };
        removed.map_err(|e| match e.kind() {
            ErrorKind::DirectoryNotEmpty => {
                ActionError::failed_precondition(format!("directory `{}` is not empty", target.rel))
            }
            _ => io_error(&target.rel, e),
        })?;
        Ok(Deleted {
            path: target.rel,
            kind,
        })
    }

    /// Files with this extension (ASCII case-insensitive), anywhere under the root.
    ///
    /// # Arguments
    /// * `value` - The extension, with or without its dot: `rs` or `.rs`.
    #[search_operator(attribute = "extension", value_type = "text")]
    fn ext(&self, ctx: &Context, value: String) -> Result<Vec<String>, ActionError> {
        let wanted = value.trim().trim_start_matches('.');
        if wanted.is_empty() {
            return Err(ActionError::invalid_input_at(
                "$.value",
                "expected an extension, e.g. `rs`",
            ));
        }
        self.find_files(ctx, |path, _| {
            Path::new(path)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case(wanted))
        })
    }

    /// Files modified after a moment, anywhere under the root.
    ///
    /// # Arguments
    /// * `value` - An RFC 3339 date-time (`2024-05-01T12:00:00Z`) or a date (`2024-05-01`, midnight UTC).
    #[search_operator(attribute = "modified", value_type = "datetime")]
    fn modified_after(&self, ctx: &Context, value: String) -> Result<Vec<String>, ActionError> {
        let since = parse_moment(&value).ok_or_else(|| {
            let why = format!(
                "expected an RFC 3339 date-time (`2024-05-01T12:00:00Z`) or a date, got `{value}`"
            );
            ActionError::invalid_input_at("$.value", why)
        })?;
        self.find_files(ctx, |_, meta| meta.modified().is_ok_and(|m| m > since))
    }
}

#[connector]
impl Files {
    /// Index every file under the root: full, or only what changed since
    /// the last completed run.
    #[sync(
        modes = "full, incremental",
        // Both modes walk every file (an unchanged one is marked seen).
        sweep = "full, incremental",
        error_budget = "10%",
        source_type = "file_system",
        attributes = FileAttributes,
        extra = FileExtra
    )]
    async fn files(&self, ctx: &SyncContext<FilesCursor>) -> Result<(), ActionError> {
        let last = ctx.last_checkpoint().cloned().unwrap_or_default();
        // Only a resumed run goes on after the last page stored.
        let resume_after = last.last_path.clone().filter(|_| ctx.is_resume());
        // Files modified after this are emitted (incremental only).
        let since = match ctx.mode() {
            SyncMode::Incremental => last.modified_after,
            _ => None,
        };
        let root = Resolved {
            rel: ".".to_owned(),
            abs: self.root.clone(),
        };
        let mut files: Vec<(String, Metadata)> = walk(ctx.cancellation(), &root, true)?
            .into_iter()
            .filter(|(path, meta)| {
                // Regular files and links (a FIFO would block the read).
                !meta.is_dir()
                    && (meta.is_file() || meta.is_symlink())
                    && resume_after.as_ref().is_none_or(|after| path > after)
            })
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        let mut cursor = FilesCursor {
            modified_after: last.modified_after,
            last_path: None,
            newest: last.newest.max(last.modified_after),
        };
        for page in files.chunks(SYNC_PAGE) {
            for (path, meta) in page {
                ctx.count_scanned(1);
                let modified = meta.modified().ok().map(Timestamp::from);
                cursor.newest = cursor.newest.max(modified);
                if since.is_some() && modified <= since {
                    ctx.mark_seen(path);
                    continue;
                }
                match self.document(path, meta) {
                    Ok(document) => {
                        ctx.count_updated(1);
                        match ctx.mode() {
                            SyncMode::Full => ctx.created(document).await?,
                            _ => ctx.updated(document).await?,
                        }
                    }
                    Err(e) => ctx.fail_item(path.as_str(), e),
                }
            }
            cursor.last_path = page.last().map(|(path, _)| path.clone());
            ctx.checkpoint(&cursor).await?;
        }
        // The walk is done: the next run starts from what this one saw.
        ctx.checkpoint(&FilesCursor {
            modified_after: cursor.newest,
            last_path: None,
            newest: None,
        })
        .await
    }
}

impl Files {
    /// The document of the file at `path`: its text when it is UTF-8 and at
    /// most `max_bytes`, a `files:` reference otherwise.
    fn document(&self, path: &str, meta: &Metadata) -> Result<Document, String> {
        // A link that leads out of the root, or nowhere, is refused here.
        let file = self
            .resolve("$.path", path)
            .map_err(|e| e.message().to_owned())?;
        let bytes = fs::read(&file.abs).map_err(|e| format!("cannot read `{path}`: {e}"))?;
        let size = bytes.len() as u64;
        let modified = meta.modified().ok();
        let attributes = FileAttributes {
            extension: Path::new(path)
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase()),
            modified: modified.map(format_rfc3339),
        };
        let extra = FileExtra {
            directory: path.rsplit_once('/').map_or(".", |(dir, _)| dir).to_owned(),
        };
        let document = Document::new(path)
            .title(file_name(path))
            .path(path)
            .size(size)
            .permissions(Permissions::public())
            .attributes_from(&attributes)
            .and_then(|d| d.extra_from(&extra))
            .map_err(|e| e.message().to_owned())?;
        let document = match modified {
            Some(modified) => document.updated_at(modified),
            None => document,
        };
        Ok(match String::from_utf8(bytes) {
            Ok(text) if size <= self.max_bytes => document.text(text).mime_type("text/plain"),
            _ => document.content_ref(format!("files:{path}")),
        })
    }

    /// The init hook: the root must be an existing directory. Stores its
    /// canonical form, against which every resolved path is checked.
    async fn init(&mut self) -> Result<(), String> {
        let shown = self.root.display();
        let root = fs::canonicalize(&self.root)
            .map_err(|e| format!("`root` directory `{shown}` cannot be opened: {e}"))?;
        if !root.is_dir() {
            return Err(format!("`root` `{shown}` is not a directory"));
        }
        self.root = root;
        Ok(())
    }

    /// Resolves `raw`, the input at JSON path `field`, inside the root, or refuses it.
    fn resolve(&self, field: &str, raw: &str) -> Result<Resolved, ActionError> {
        if raw.contains('\0') {
            return Err(ActionError::invalid_input_at(
                field,
                "a path cannot contain NUL",
            ));
        }
        // Normalise lexically first, so `a/../b` is `b` and `../x` never leaves the root.
        let mut parts = Vec::new();
        for component in Path::new(raw).components() {
            match component {
                Component::Normal(name) => parts.push(name.to_string_lossy()),
                Component::CurDir => {}
                Component::ParentDir => {
                    if parts.pop().is_none() {
                        let why = format!("`{raw}` is outside the root");
                        return Err(ActionError::unauthorized(why));
                    }
                }
                Component::RootDir | Component::Prefix(_) => {
                    let why = format!("`{raw}` is absolute; paths are relative to the root");
                    return Err(ActionError::unauthorized(why));
                }
            }
        }
        let rel = if parts.is_empty() {
            ".".to_owned()
        } else {
            parts.join("/")
        };
        let abs = parts
            .iter()
            .fold(self.root.clone(), |abs, part| abs.join(&**part));

        // Then follow symbolic links: the deepest part of the path that exists
        // decides where it really leads (for a new file, its parent).
        for existing in abs.ancestors() {
            match fs::symlink_metadata(existing) {
                Ok(_) => {
                    let real = fs::canonicalize(existing).map_err(|_| {
                        ActionError::unauthorized(format!("`{rel}` goes through a broken link"))
                    })?;
                    if !real.starts_with(&self.root) {
                        let why = format!("`{rel}` leads outside the root");
                        return Err(ActionError::unauthorized(why));
                    }
                    return Ok(Resolved { rel, abs });
                }
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {}
                Err(e) => return Err(io_error(&rel, e)),
            }
        }
        Err(ActionError::failed_precondition(
            "the root directory no longer exists",
        ))
    }

    /// Relative paths of the files under the root that pass `keep`, sorted.
    fn find_files(
        &self,
        ctx: &Context,
        keep: impl Fn(&str, &Metadata) -> bool,
    ) -> Result<Vec<String>, ActionError> {
        let root = Resolved {
            rel: ".".to_owned(),
            abs: self.root.clone(),
        };
        let mut paths: Vec<String> = walk(ctx.cancellation(), &root, true)?
            .into_iter()
            .filter(|(path, meta)| meta.is_file() && keep(path, meta))
            .map(|(path, _)| path)
            .collect();
        paths.sort();
        Ok(paths)
    }
}

/// Every entry in `dir` (and below it when `recursive`), unsorted, with its
/// own metadata (links are not followed). Stops if the call is cancelled.
fn walk(
    cancel: &CancellationToken,
    dir: &Resolved,
    recursive: bool,
) -> Result<Vec<(String, Metadata)>, ActionError> {
    let mut found = Vec::new();
    let mut pending = vec![dir.clone()];
    while let Some(Resolved { rel, abs }) = pending.pop() {
        if cancel.is_cancelled() {
            return Err(ActionError::cancelled(
                "stopped walking the tree: the call was cancelled",
            ));
        }
        for entry in fs::read_dir(&abs).map_err(|e| io_error(&rel, e))? {
            let entry = entry.map_err(|e| io_error(&rel, e))?;
            // A name that is not UTF-8 cannot be passed back in JSON: skip it.
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            // An entry deleted since `read_dir` saw it is simply gone.
            let Ok(meta) = entry.metadata() else { continue };
            let path = if rel == "." {
                name
            } else {
                format!("{rel}/{name}")
            };
            if recursive && meta.is_dir() {
                pending.push(Resolved {
                    rel: path.clone(),
                    abs: entry.path(),
                });
            }
            found.push((path, meta));
        }
    }
    Ok(found)
}

/// The last component of a `/`-separated path.
fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// An I/O error about `rel`, with the closest code and the path in the message.
fn io_error(rel: &str, err: std::io::Error) -> ActionError {
    match err.kind() {
        ErrorKind::NotFound | ErrorKind::NotADirectory => {
            ActionError::not_found(format!("`{rel}` does not exist"))
        }
        ErrorKind::PermissionDenied => ActionError::unauthorized(format!("`{rel}`: {err}")),
        _ => ActionError::internal(format!("`{rel}`: {err}")),
    }
}

/// Cursors are the last path of a page, hex-encoded: opaque to callers, and
/// stable because pages are sorted by path.
fn encode_cursor(path: &str) -> String {
    path.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The path a cursor stands for, or `None` if it is not a cursor.
fn decode_cursor(cursor: &str) -> Option<String> {
    if cursor.is_empty()
        || !cursor.len().is_multiple_of(2)
        || !cursor.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&cursor[i..i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// `2024-05-01T12:34:56Z`: RFC 3339 in UTC, whole seconds.
fn format_rfc3339(time: SystemTime) -> String {
    DateTime::<Utc>::from(time).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Parses an RFC 3339 date-time (`2024-05-01T12:00:00Z`, `2024-05-01T14:00:00+02:00`)
/// or a date (`2024-05-01`, meaning midnight UTC).
fn parse_moment(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let moment = match DateTime::parse_from_rfc3339(text) {
        Ok(moment) => moment.to_utc(),
        Err(_) => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()?
            .and_hms_opt(0, 0, 0)?
            .and_utc(),
    };
    Some(moment.into())
}

fn main() -> std::process::ExitCode {
    spoke::main()
}
