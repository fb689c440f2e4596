//! Checkpoints from the Hugging Face Hub (feature `hub`): [`download`] puts the files a
//! directory load needs into the Hub's cache and returns their snapshot directory, from which
//! `Toto::from_pretrained`, `Toto2::from_pretrained` and `AutoToto::from_pretrained` load with
//! their `from_dir`.
//!
//! The files a load needs: `config.json`, then `model.safetensors`, or, for a sharded
//! checkpoint, `model.safetensors.index.json` and every shard its `weight_map` names.
//!
//! The cache is the one Python's `huggingface_hub` uses (`models--{org}--{name}/` holding
//! `blobs/`, `refs/{revision}` and `snapshots/{commit}/`), so that a model downloaded by
//! either is found by the other. Its directory is the first of [`HubOptions::cache_dir`],
//! `HF_HUB_CACHE`, `$HF_HOME/hub`, `$XDG_CACHE_HOME/huggingface/hub` and
//! `~/.cache/huggingface/hub`, as `huggingface_hub.constants` resolves it. A file already in
//! the snapshot of the revision is used without asking the Hub; a revision that moved on is
//! fetched again only once the cached file is deleted.
//!
//! Downloads go through hf-hub's blocking client (ureq over rustls; `HTTPS_PROXY`/`ALL_PROXY`
//! are honoured), with a progress bar on stderr when it is a terminal.

use std::fmt;
use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};

use crate::error::{Error, HubError, HubProblem, Result};
use crate::nn::checkpoint::shard_names;

/// The Hub's address, used when neither [`HubOptions::endpoint`] nor `HF_ENDPOINT` is set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

const CONFIG: &str = "config.json";
const WEIGHTS: &str = "model.safetensors";
const INDEX: &str = "model.safetensors.index.json";

/// Where and how [`download`] fetches a repository. Every `None` is resolved from the
/// environment when a download starts, as Python's `huggingface_hub` does.
///
/// ```
/// use toto_fallback::hub::HubOptions;
///
/// let options = HubOptions::default()
///     .with_revision("main")
///     .with_cache_dir("models/hf-cache")
///     .with_offline(true)
///     .with_progress(false);
/// assert_eq!(options.offline, Some(true));
/// assert_eq!(options.endpoint, None); // HF_ENDPOINT, else https://huggingface.co
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubOptions {
    /// The branch, tag or commit hash to fetch (default `main`).
    pub revision: String,
    /// The cache directory; `None`: `HF_HUB_CACHE`, `$HF_HOME/hub`,
    /// `$XDG_CACHE_HOME/huggingface/hub`, `~/.cache/huggingface/hub`.
    pub cache_dir: Option<PathBuf>,
    /// Read only from the cache, never the network; `None`: whether `HF_HUB_OFFLINE` is `1`,
    /// `ON`, `YES` or `TRUE` (any case), as in Python.
    pub offline: Option<bool>,
    /// Whether downloads draw a progress bar on stderr (only when stderr is a terminal;
    /// default `true`).
    pub progress: bool,
    /// The Hub's address; `None`: `HF_ENDPOINT`, else [`DEFAULT_ENDPOINT`].
    pub endpoint: Option<String>,
    /// An access token for private or gated repositories; `None`: `HF_TOKEN`, else the token
    /// file `huggingface-cli login` writes (`$HF_HOME/token`).
    pub token: Option<String>,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            revision: "main".to_owned(),
            cache_dir: None,
            offline: None,
            progress: true,
            endpoint: None,
            token: None,
        }
    }
}

impl fmt::Debug for HubOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a secret: say whether there is one, never print it.
        f.debug_struct("HubOptions")
            .field("revision", &self.revision)
            .field("cache_dir", &self.cache_dir)
            .field("offline", &self.offline)
            .field("progress", &self.progress)
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl HubOptions {
    /// With the revision (branch, tag or commit hash) to fetch.
    pub fn with_revision(mut self, revision: impl Into<String>) -> Self {
        self.revision = revision.into();
        self
    }

    /// With the cache directory (the Hub layout; see the [module docs](self)).
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Offline (`true`: only the cache) or online (`false`), whatever `HF_HUB_OFFLINE` says.
    pub fn with_offline(mut self, offline: bool) -> Self {
        self.offline = Some(offline);
        self
    }

    /// With or without a progress bar.
    pub fn with_progress(mut self, progress: bool) -> Self {
        self.progress = progress;
        self
    }

    /// With the Hub's address (a mirror, or a local server in tests), whatever `HF_ENDPOINT`
    /// says.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// With an access token, whatever `HF_TOKEN` says.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
}

/// Fetches the files a directory load needs from the Hub repository `repo_id` (or finds them
/// in the cache) and returns the snapshot directory that holds them: what Python's
/// `snapshot_download` returns, restricted to `config.json` and the weights.
///
/// ```no_run
/// use toto_fallback::hub::{self, HubOptions};
///
/// let dir = hub::download("Datadog/Toto-Open-Base-1.0", &HubOptions::default())?;
/// assert!(dir.join("config.json").exists());
/// # Ok::<(), toto_fallback::Error>(())
/// ```
///
/// # Errors
/// [`Error::Hub`] naming the repository and the file, with a [`HubProblem`]: `InvalidName`
/// for an id or revision the Hub does not accept, `NotFound` (no such repository, revision or
/// file), `AccessDenied`, `NotCached` (offline and not in the cache), `Network`, `Server`,
/// `Cache`; [`Error::Io`] or [`Error::Checkpoint`] if a cached index cannot be read.
pub fn download(repo_id: &str, options: &HubOptions) -> Result<PathBuf> {
    let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
    let fetcher = Fetcher::new(repo_id, options, &env)?;
    let config = fetcher.get(CONFIG)?;
    let dir = config
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| fetcher.error(CONFIG, HubProblem::Cache, "no snapshot directory"))?;
    for path in fetcher.weights()? {
        if path.parent() != Some(dir.as_path()) {
            let reason = format!(
                "the revision moved to another commit during the download ({} then {}); \
                 run it again",
                dir.display(),
                path.display()
            );
            return Err(fetcher.error(file_name(&path), HubProblem::Server, reason));
        }
    }
    Ok(dir)
}

/// One repository at one revision: its cache, and the client unless offline.
struct Fetcher {
    repo: String,
    revision: String,
    cache: PathBuf,
    api: Option<ApiRepo>,
}

impl Fetcher {
    fn new(
        repo_id: &str,
        options: &HubOptions,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let mut fetcher = Fetcher {
            repo: repo_id.to_owned(),
            revision: options.revision.clone(),
            cache: PathBuf::new(),
            api: None,
        };
        if let Err(reason) = check_repo_id(repo_id).and_then(|()| check_revision(&options.revision))
        {
            return Err(fetcher.error(CONFIG, HubProblem::InvalidName, reason));
        }
        let home = std::env::home_dir();
        fetcher.cache =
            cache_dir(options.cache_dir.as_deref(), env, home.as_deref()).ok_or_else(|| {
                fetcher.error(
                    CONFIG,
                    HubProblem::Cache,
                    "no cache directory: there is no home directory; set HF_HOME or \
                     HubOptions::cache_dir",
                )
            })?;
        let offline = options
            .offline
            .unwrap_or_else(|| env("HF_HUB_OFFLINE").is_some_and(|v| is_true(&v)));
        if !offline {
            let endpoint = options
                .endpoint
                .clone()
                .or_else(|| env("HF_ENDPOINT"))
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
            let token = options
                .token
                .clone()
                .or_else(|| env("HF_TOKEN"))
                .or_else(|| token_file(env, home.as_deref()));
            let api = ApiBuilder::from_cache(Cache::new(fetcher.cache.clone()))
                .with_endpoint(endpoint.trim_end_matches('/').to_owned())
                .with_progress(options.progress)
                .with_token(token)
                .build()
                .map_err(|e| fetcher.api_error(CONFIG, e))?;
            fetcher.api = Some(api.repo(Repo::with_revision(
                fetcher.repo.clone(),
                RepoType::Model,
                fetcher.revision.clone(),
            )));
        }
        Ok(fetcher)
    }

    /// The file from the cache, else from the Hub.
    fn get(&self, file: &str) -> Result<PathBuf> {
        if let Some(path) = self.cached(file) {
            return Ok(path);
        }
        let Some(api) = &self.api else {
            let reason = format!(
                "offline (HubOptions::offline or HF_HUB_OFFLINE) and not in the cache {}; \
                 fetch it once online, or by hand with `hf download {} --revision {} \
                 --cache-dir {}` (`huggingface-cli download` in older versions)",
                self.cache.display(),
                self.repo,
                self.revision,
                self.cache.display()
            );
            return Err(self.error(file, HubProblem::NotCached, reason));
        };
        log::info!("downloading {file} of {} ({})", self.repo, self.revision);
        api.download(file).map_err(|e| self.api_error(file, e))
    }

    /// The weights: the shards of a cached index, a cached `model.safetensors`, else
    /// `model.safetensors` from the Hub, else the index and its shards.
    fn weights(&self) -> Result<Vec<PathBuf>> {
        let index = match (self.cached(INDEX), self.cached(WEIGHTS)) {
            (Some(index), _) => index,
            (None, Some(weights)) => return Ok(vec![weights]),
            (None, None) => match self.get(WEIGHTS) {
                Ok(weights) => return Ok(vec![weights]),
                Err(Error::Hub(e)) if e.problem == HubProblem::NotFound => {
                    self.get(INDEX).map_err(|e| match e {
                        Error::Hub(mut e) if e.problem == HubProblem::NotFound => {
                            e.reason = format!(
                                "the repository has neither `{WEIGHTS}` nor `{INDEX}`: is it a \
                                 Toto checkpoint? ({})",
                                e.reason
                            );
                            Error::Hub(e)
                        }
                        e => e,
                    })?
                }
                Err(e) => return Err(e),
            },
        };
        let label = index.display().to_string();
        let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&label, e))?;
        let shards = shard_names(&text).map_err(|reason| {
            crate::error::CheckpointProblems::unreadable(label, format!("bad index: {reason}"))
        })?;
        let mut paths = vec![index];
        for shard in shards {
            paths.push(self.get(&shard)?);
        }
        Ok(paths)
    }

    /// The file in the cache's snapshot of the revision, as Python lays it out.
    fn cached(&self, file: &str) -> Option<PathBuf> {
        let repo_dir = self
            .cache
            .join(format!("models--{}", self.repo.replace('/', "--")));
        let commit = std::fs::read_to_string(repo_dir.join("refs").join(&self.revision))
            .ok()
            .map(|c| c.trim().to_owned())
            // A revision given as a commit hash has no ref: its snapshot has its name.
            .or_else(|| is_commit(&self.revision).then(|| self.revision.clone()))?;
        let path = repo_dir.join("snapshots").join(commit).join(file);
        path.is_file().then_some(path)
    }

    fn error(&self, file: &str, problem: HubProblem, reason: impl Into<String>) -> Error {
        self.error_from(file, problem, reason.into(), None)
    }

    fn error_from(
        &self,
        file: &str,
        problem: HubProblem,
        reason: String,
        source: Option<crate::error::BoxedSource>,
    ) -> Error {
        Error::Hub(Box::new(HubError {
            repo: self.repo.clone(),
            revision: self.revision.clone(),
            file: file.to_owned(),
            problem,
            reason,
            source,
        }))
    }

    /// [`Error::Hub`] for what hf-hub said while fetching `file`.
    fn api_error(&self, file: &str, e: ApiError) -> Error {
        let (problem, reason, source) = match e {
            ApiError::RequestError(e) => match *e {
                ureq::Error::Status(status, response) => {
                    let (problem, reason) = status_problem(status, &self.repo);
                    let said = response
                        .header("x-error-message")
                        .or_else(|| response.header("x-error-code"))
                        .map(|m| format!(" (the Hub says: {m})"))
                        .unwrap_or_default();
                    (problem, format!("HTTP {status}: {reason}{said}"), None)
                }
                ureq::Error::Transport(t) => (
                    HubProblem::Network,
                    format!(
                        "could not reach the Hub ({t}); check the connection, HF_ENDPOINT and \
                         HTTPS_PROXY, or load a cached copy with HF_HUB_OFFLINE=1"
                    ),
                    Some(Box::new(t) as crate::error::BoxedSource),
                ),
            },
            ApiError::TooManyRetries(e) => (
                HubProblem::Network,
                format!("the download kept failing: {e}; run it again"),
                Some(e as crate::error::BoxedSource),
            ),
            ApiError::IoError(e) => (
                HubProblem::Cache,
                format!("cannot write the cache {}: {e}", self.cache.display()),
                Some(Box::new(e) as crate::error::BoxedSource),
            ),
            ApiError::LockAcquisition(path) => (
                HubProblem::Cache,
                format!(
                    "{} is locked: another process is downloading this file; wait for it, or \
                     delete the lock if no process is",
                    path.display()
                ),
                None,
            ),
            e => (
                HubProblem::Server,
                format!(
                    "the endpoint did not answer as the Hugging Face Hub does ({e}); check \
                     HF_ENDPOINT or HubOptions::endpoint"
                ),
                Some(Box::new(e) as crate::error::BoxedSource),
            ),
        };
        self.error_from(file, problem, reason, source)
    }
}

/// The problem an HTTP error status means, and what to do about it.
fn status_problem(status: u16, repo: &str) -> (HubProblem, String) {
    match status {
        404 => (
            HubProblem::NotFound,
            format!(
                "no such repository, revision or file; check the id (`org/name`, as on \
                 https://huggingface.co/{repo}) and the revision"
            ),
        ),
        // The Hub answers 401 for a repository that does not exist as for a private one, so
        // that names of private repositories do not leak.
        401 => (
            HubProblem::NotFound,
            "no such repository, or a private one: check the id, or give a token (HF_TOKEN, \
             HubOptions::token, or `hf auth login`)"
                .to_owned(),
        ),
        403 => (
            HubProblem::AccessDenied,
            format!(
                "access refused: the repository is gated or private; accept its terms on \
                 https://huggingface.co/{repo} and give a token with access"
            ),
        ),
        _ => (
            HubProblem::Server,
            "unexpected answer; run it again later".to_owned(),
        ),
    }
}

/// The cache directory as `huggingface_hub.constants` resolves it, from `explicit`, the
/// environment `env` and the home directory `home`.
fn cache_dir(
    explicit: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> Option<PathBuf> {
    if let Some(dir) = explicit {
        return Some(dir.to_path_buf());
    }
    if let Some(dir) = env("HF_HUB_CACHE") {
        return Some(PathBuf::from(dir));
    }
    hf_home(env, home).map(|home| home.join("hub"))
}

/// `HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
fn hf_home(env: &dyn Fn(&str) -> Option<String>, home: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = env("HF_HOME") {
        return Some(PathBuf::from(dir));
    }
    let base = env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| home.map(|h| h.join(".cache")))?;
    Some(base.join("huggingface"))
}

/// The token `huggingface-cli login` saved (`$HF_HOME/token`), if any.
fn token_file(env: &dyn Fn(&str) -> Option<String>, home: Option<&Path>) -> Option<String> {
    let text = std::fs::read_to_string(hf_home(env, home)?.join("token")).ok()?;
    let token = text.trim();
    (!token.is_empty()).then(|| token.to_owned())
}

/// Python's `huggingface_hub.constants._is_true`.
fn is_true(value: &str) -> bool {
    ["1", "ON", "YES", "TRUE"].contains(&value.to_ascii_uppercase().as_str())
}

fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `Ok` for an id the Hub accepts (`huggingface_hub.utils.validate_repo_id`: `name` or
/// `org/name` of ASCII letters, digits, `-`, `_` and `.`, no `--` or `..`, at most 96
/// characters a part), else what is wrong.
fn check_repo_id(id: &str) -> std::result::Result<(), String> {
    let parts: Vec<&str> = id.split('/').collect();
    let part_ok = |p: &&str| {
        !p.is_empty()
            && p.len() <= 96
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && !p.starts_with(['-', '.'])
            && !p.ends_with(['-', '.'])
            && !p.contains("--")
            && !p.contains("..")
    };
    if parts.len() <= 2 && parts.iter().all(part_ok) {
        Ok(())
    } else {
        Err(format!(
            "`{id}` is not a repository id: write `org/name` (as `Datadog/Toto-Open-Base-1.0`) \
             of letters, digits, `-`, `_` and `.`, without `--` or `..`"
        ))
    }
}

/// `Ok` for a revision that is a plain branch, tag or commit name, else what is wrong.
fn check_revision(revision: &str) -> std::result::Result<(), String> {
    let ok = !revision.is_empty()
        && revision
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
        && !revision.contains("..")
        && !revision.starts_with('/')
        && !revision.ends_with('/');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{revision}` is not a revision: give a branch, tag or commit hash (as `main`) of \
             letters, digits, `-`, `_`, `.` and `/`"
        ))
    }
}

fn file_name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::{cache_dir, check_repo_id, check_revision, is_true};

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |key| {
            vars.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_cache_directory_is_resolved_as_huggingface_hub_does() {
        // The order of huggingface_hub/constants.py: HF_HUB_CACHE, then HF_HOME/hub, then
        // XDG_CACHE_HOME/huggingface/hub, then ~/.cache/huggingface/hub.
        let home = Some(Path::new("/home/u"));
        let all = env_of(&[
            ("HF_HUB_CACHE", "/a"),
            ("HF_HOME", "/b"),
            ("XDG_CACHE_HOME", "/c"),
        ]);
        assert_eq!(
            cache_dir(Some(Path::new("/x")), &all, home),
            Some("/x".into())
        );
        assert_eq!(cache_dir(None, &all, home), Some("/a".into()));
        let rows: [(&'static [(&str, &str)], &str); 3] = [
            (&[("HF_HOME", "/b"), ("XDG_CACHE_HOME", "/c")], "/b/hub"),
            (&[("XDG_CACHE_HOME", "/c")], "/c/huggingface/hub"),
            (&[], "/home/u/.cache/huggingface/hub"),
        ];
        for (vars, expected) in rows {
            assert_eq!(
                cache_dir(None, &env_of(vars), home),
                Some(PathBuf::from(expected)),
                "{vars:?}"
            );
        }
        assert_eq!(
            cache_dir(None, &env_of(&[]), None),
            None,
            "no home, no variable"
        );
    }

    #[test]
    fn offline_values_are_pythons() {
        // huggingface_hub.constants.ENV_VARS_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}.
        for v in ["1", "on", "ON", "yes", "True", "TRUE"] {
            assert!(is_true(v), "{v}");
        }
        for v in ["0", "", "off", "no", "false", "2"] {
            assert!(!is_true(v), "{v}");
        }
    }

    #[test]
    fn repository_ids_and_revisions_are_checked() {
        for ok in [
            "Datadog/Toto-Open-Base-1.0",
            "Datadog/Toto-2.0-2.5B",
            "gpt2",
            "a_b/c.d",
        ] {
            assert_eq!(check_repo_id(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", "/x", "a/", "a/b/c", "a b/c", "../x", "a/b--c", "a/..", "a/-b", "ä/b",
        ] {
            assert!(check_repo_id(bad).is_err(), "{bad}");
        }
        for ok in [
            "main",
            "v1.0",
            "refs/pr/1",
            "0123456789abcdef0123456789abcdef01234567",
        ] {
            assert_eq!(check_revision(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a b", "../main", "main/", "a?b"] {
            assert!(check_revision(bad).is_err(), "{bad}");
        }
    }
}
