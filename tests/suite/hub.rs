//! `from_pretrained` (feature `hub`) against a local HTTP server that answers as the Hugging
//! Face Hub does, never the internet: the fixture models as Hub repositories, a sharded copy of
//! the Toto 2.0 one, the cache layout Python's `huggingface_hub` shares, offline mode and the
//! typed errors.
//!
//! The server answers the requests hf-hub 0.4's blocking client makes (its `api/sync.rs`): a
//! `GET {endpoint}/{repo}/resolve/{revision}/{file}` with `Range: bytes=0-0` for the metadata
//! (`ETag`, `X-Repo-Commit`, `Content-Range`), then one with `Range: bytes={start}-` for the
//! bytes; unknown repositories, revisions and files are 404s with the Hub's `X-Error-Code`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use burn::tensor::{Tensor, TensorData};
use toto_fallback::hub::HubOptions;
use toto_fallback::toto::Toto;
use toto_fallback::toto2::Toto2;
use toto_fallback::{AutoToto, Backend, Error, Generation, HubProblem, NdArray};
#[allow(unused_imports)]
use toto_fallback::{ForecastOptions, Forecaster};

/// The commit every served repository is at (any 40 hex digits).
const COMMIT: &str = "4f6a0c0de0e1b2c3d4e5f60718293a4b5c6d7e8f";
const TOTO1: &str = "test-org/toto-1-tiny";
const TOTO2: &str = "test-org/toto-2-tiny";
const TOTO2_SHARDED: &str = "test-org/toto-2-tiny-sharded";

type Repos = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// A Hub on 127.0.0.1 serving `repos` at revision `main` (commit [`COMMIT`]) until dropped.
struct LocalHub {
    endpoint: String,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LocalHub {
    fn serve(repos: Repos) -> LocalHub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a local port");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, halt) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    answer(stream, &repos, &log);
                }
            }
        });
        LocalHub {
            endpoint,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// The `METHOD path range` of every request so far.
    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for LocalHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect(self.endpoint.trim_start_matches("http://"));
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

/// Reads one request and answers it, closing the connection.
fn answer(mut stream: TcpStream, repos: &Repos, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("range")
        {
            range = Some(value.trim().to_owned());
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    log.lock().unwrap().push(format!(
        "{method} {path} {}",
        range.as_deref().unwrap_or("-")
    ));
    let response = respond(path, range.as_deref(), repos);
    let (status, headers, body) = response;
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let _ = stream.write_all(head.as_bytes());
    if method != "HEAD" {
        let _ = stream.write_all(&body);
    }
}

/// Status line, headers and body for `GET /{org}/{name}/resolve/{revision}/{file}`.
fn respond(
    path: &str,
    range: Option<&str>,
    repos: &Repos,
) -> (String, Vec<(String, String)>, Vec<u8>) {
    let not_found = |code: &str| {
        let headers = vec![("X-Error-Code".to_owned(), code.to_owned())];
        ("404 Not Found".to_owned(), headers, Vec::new())
    };
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    let [org, name, "resolve", revision, file] = segments[..] else {
        return not_found("EntryNotFound");
    };
    let Some(files) = repos.get(&format!("{org}/{name}")) else {
        return not_found("RepoNotFound");
    };
    if revision != "main" && revision != COMMIT {
        return not_found("RevisionNotFound");
    }
    let Some(bytes) = files.get(file) else {
        return not_found("EntryNotFound");
    };
    let len = bytes.len();
    let mut headers = vec![
        ("X-Repo-Commit".to_owned(), COMMIT.to_owned()),
        ("ETag".to_owned(), format!("\"{}\"", etag(bytes))),
    ];
    let Some(spec) = range.and_then(|r| r.strip_prefix("bytes=")) else {
        return ("200 OK".to_owned(), headers, bytes.clone());
    };
    let (start, end) = spec.split_once('-').unwrap();
    let start: usize = start.parse().unwrap();
    let end: usize = if end.is_empty() {
        len - 1
    } else {
        end.parse().unwrap()
    };
    let end = end.min(len - 1);
    headers.push((
        "Content-Range".to_owned(),
        format!("bytes {start}-{end}/{len}"),
    ));
    let body = bytes[start..=end].to_vec();
    ("206 Partial Content".to_owned(), headers, body)
}

/// A content hash standing in for the Hub's (git or sha256) ETag: FNV-1a, 64 bits.
fn etag(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}{:08x}", bytes.len())
}

fn fixture(dir: &str, file: &str) -> Vec<u8> {
    std::fs::read(Path::new("tests/fixtures").join(dir).join(file)).unwrap()
}

/// A model directory's files as a Hub repository holds them: the config and the weights, not
/// the fixtures' reference outputs.
fn repo_of(dir: &str) -> BTreeMap<String, Vec<u8>> {
    ["config.json", "model.safetensors"]
        .into_iter()
        .map(|f| (f.to_owned(), fixture(dir, f)))
        .collect()
}

/// toto2-tiny's weights as two shards and the index naming them, as `save_pretrained` writes
/// a checkpoint over its shard size.
fn sharded_toto2() -> BTreeMap<String, Vec<u8>> {
    let bytes = fixture("toto2-tiny", "model.safetensors");
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors = file.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let half = tensors.len() / 2;
    let mut files = BTreeMap::new();
    let mut weight_map = serde_json::Map::new();
    for (i, part) in [&tensors[..half], &tensors[half..]].into_iter().enumerate() {
        let name = format!("model-0000{}-of-00002.safetensors", i + 1);
        for (tensor, _) in part {
            weight_map.insert(tensor.clone(), name.clone().into());
        }
        let views = part.iter().map(|(n, v)| (n.clone(), v.clone()));
        files.insert(name, safetensors::serialize(views, None).unwrap());
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    files.insert(
        "model.safetensors.index.json".to_owned(),
        index.to_string().into_bytes(),
    );
    files.insert(
        "config.json".to_owned(),
        fixture("toto2-tiny", "config.json"),
    );
    files
}

fn repos() -> Repos {
    let mut repos = Repos::new();
    repos.insert(TOTO1.to_owned(), repo_of("tiny"));
    repos.insert(TOTO2.to_owned(), repo_of("toto2-tiny"));
    repos.insert(TOTO2_SHARDED.to_owned(), sharded_toto2());
    let mut config_only = repo_of("toto2-tiny");
    config_only.remove("model.safetensors");
    repos.insert("test-org/no-weights".to_owned(), config_only);
    repos
}

/// An empty cache directory of its own for one test.
fn scratch(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "toto-fallback-hub-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Options for `hub` at `endpoint` with the cache `cache`, online, without a progress bar.
fn options(endpoint: &str, cache: &Path) -> HubOptions {
    HubOptions::default()
        .with_endpoint(endpoint)
        .with_cache_dir(cache)
        .with_offline(false)
        .with_progress(false)
}

/// An address where nothing listens (a port just freed).
fn dead_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

/// The median of a 12-step forecast of two fixed series, as values.
fn median(model: &AutoToto<NdArray>) -> Vec<f64> {
    let device = model_device(model);
    let values: Vec<f32> = (0..80)
        .map(|i| (i as f32 * 0.3).sin() + 0.01 * i as f32)
        .collect();
    let series = Tensor::<3>::from_data(TensorData::new(values, [1, 2, 40]), &device);
    let mut options = toto_fallback::ForecastOptions::new(12);
    options.num_samples = Some(8);
    options.v1.samples_per_batch = 8;
    let forecast = model.forecast(series, None, None, &options).unwrap();
    crate::common::values(forecast.median().unwrap())
}

fn model_device(model: &AutoToto<NdArray>) -> burn::tensor::Device {
    match model {
        AutoToto::V1(m) => m.backend().device().clone(),
        AutoToto::V2(m) => m.backend().device().clone(),
        _ => unreachable!("two generations"),
    }
}

/// The [`toto_fallback::HubError`] of `result`.
fn hub_error<T: std::fmt::Debug>(result: Result<T, Error>) -> Box<toto_fallback::HubError> {
    match result {
        Err(Error::Hub(e)) => e,
        other => panic!("expected Error::Hub, got {other:?}"),
    }
}

#[test]
fn toto_1_0_from_the_hub_forecasts_as_from_dir() {
    let hub = LocalHub::serve(repos());
    let cache = scratch("toto1");
    let model =
        Toto::from_pretrained_with(&NdArray::seeded(7), TOTO1, &options(&hub.endpoint, &cache))
            .unwrap();
    let reference = Toto::from_dir(&NdArray::seeded(7), "tests/fixtures/tiny").unwrap();
    assert_eq!(
        median(&AutoToto::V1(Box::new(model))),
        median(&AutoToto::V1(Box::new(reference)))
    );
    // The layout of huggingface_hub's cache ("Manage huggingface_hub cache-system" guide):
    // refs/main holds the commit, snapshots/{commit}/ the files, and only what a load needs.
    let repo_dir = cache.join("models--test-org--toto-1-tiny");
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        COMMIT
    );
    let snapshot = repo_dir.join("snapshots").join(COMMIT);
    let mut files: Vec<String> = std::fs::read_dir(&snapshot)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["config.json", "model.safetensors"]);
    assert_eq!(
        std::fs::read(snapshot.join("model.safetensors")).unwrap(),
        fixture("tiny", "model.safetensors")
    );
    std::fs::remove_dir_all(cache).unwrap();
}

#[test]
fn toto_2_0_from_a_sharded_repository_forecasts_as_from_dir() {
    let hub = LocalHub::serve(repos());
    let cache = scratch("sharded");
    let options = options(&hub.endpoint, &cache);
    let model = Toto2::from_pretrained_with(&NdArray::seeded(0), TOTO2_SHARDED, &options).unwrap();
    let reference = Toto2::from_dir(&NdArray::seeded(0), "tests/fixtures/toto2-tiny").unwrap();
    assert_eq!(
        median(&AutoToto::V2(Box::new(model))),
        median(&AutoToto::V2(Box::new(reference)))
    );
    // model.safetensors is asked for first (a 404 here), then the index and both shards.
    let gets: Vec<String> = hub
        .requests()
        .iter()
        .filter(|r| r.ends_with("bytes=0-"))
        .map(|r| {
            r.split('/')
                .next_back()
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        gets,
        [
            "config.json",
            "model.safetensors.index.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors"
        ]
    );
    assert!(
        hub.requests()
            .iter()
            .any(|r| r.contains("/model.safetensors bytes=0-0")),
        "{:?}",
        hub.requests()
    );
    std::fs::remove_dir_all(cache).unwrap();
}

#[test]
fn auto_toto_loads_either_generation_from_the_hub() {
    let hub = LocalHub::serve(repos());
    let cache = scratch("auto");
    let options = options(&hub.endpoint, &cache);
    for (repo, dir, generation) in [
        (TOTO1, "tests/fixtures/tiny", Generation::V1),
        (TOTO2, "tests/fixtures/toto2-tiny", Generation::V2),
    ] {
        let model = AutoToto::from_pretrained_with(&NdArray::seeded(3), repo, &options).unwrap();
        assert_eq!(model.generation(), generation);
        let reference = AutoToto::from_dir(&NdArray::seeded(3), dir).unwrap();
        assert_eq!(median(&model), median(&reference), "{repo}");
    }
    std::fs::remove_dir_all(cache).unwrap();
}

#[test]
fn a_cached_model_loads_with_the_server_gone_online_or_offline() {
    let cache = scratch("cached");
    {
        let hub = LocalHub::serve(repos());
        Toto2::from_pretrained_with(&NdArray::new(), TOTO2, &options(&hub.endpoint, &cache))
            .unwrap();
    }
    // Nothing listens at the endpoint now: cached files are used without a request.
    let online = options(&dead_endpoint(), &cache);
    Toto2::from_pretrained_with(&NdArray::new(), TOTO2, &online).unwrap();
    let offline = online.clone().with_offline(true);
    Toto2::from_pretrained_with(&NdArray::new(), TOTO2, &offline).unwrap();
    // A commit hash as the revision finds the same snapshot (it has no ref of its own).
    let pinned = offline.with_revision(COMMIT);
    Toto2::from_pretrained_with(&NdArray::new(), TOTO2, &pinned).unwrap();
    std::fs::remove_dir_all(cache).unwrap();
}

#[test]
fn a_cache_laid_out_by_python_is_reused() {
    // What huggingface_hub writes for `hf download`: blobs named by ETag, snapshot entries
    // pointing at them (symlinks where the OS allows, copies elsewhere), refs/main.
    let cache = scratch("python");
    let repo_dir = cache.join("models--Datadog--Toto-Open-Base-1.0");
    let snapshot = repo_dir.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(repo_dir.join("blobs")).unwrap();
    std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::write(repo_dir.join("refs/main"), COMMIT).unwrap();
    for file in ["config.json", "model.safetensors"] {
        let bytes = fixture("tiny", file);
        let blob = repo_dir.join("blobs").join(etag(&bytes));
        std::fs::write(&blob, &bytes).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(
            Path::new("../../blobs").join(etag(&bytes)),
            snapshot.join(file),
        )
        .unwrap();
        #[cfg(not(unix))]
        std::fs::copy(&blob, snapshot.join(file)).unwrap();
    }
    let options = options(&dead_endpoint(), &cache).with_offline(true);
    let model =
        AutoToto::from_pretrained_with(&NdArray::seeded(1), "Datadog/Toto-Open-Base-1.0", &options)
            .unwrap();
    let reference = AutoToto::from_dir(&NdArray::seeded(1), "tests/fixtures/tiny").unwrap();
    assert_eq!(median(&model), median(&reference));
    std::fs::remove_dir_all(cache).unwrap();
}

#[test]
fn offline_without_the_files_names_the_repository_and_the_file() {
    let cache = scratch("offline");
    let options = options(&dead_endpoint(), &cache).with_offline(true);
    let e = hub_error(Toto::from_pretrained_with(&NdArray::new(), TOTO1, &options));
    assert_eq!(e.problem, HubProblem::NotCached);
    assert_eq!((e.repo.as_str(), e.file.as_str()), (TOTO1, "config.json"));
    let message = Error::Hub(e).to_string();
    assert!(
        message.contains(TOTO1) && message.contains("hf download"),
        "{message}"
    );
    // With the config cached but not the weights, the weights are named.
    let snapshot = cache
        .join("models--test-org--toto-1-tiny/snapshots")
        .join(COMMIT);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::write(snapshot.join("config.json"), fixture("tiny", "config.json")).unwrap();
    std::fs::create_dir_all(cache.join("models--test-org--toto-1-tiny/refs")).unwrap();
    std::fs::write(
        cache.join("models--test-org--toto-1-tiny/refs/main"),
        COMMIT,
    )
    .unwrap();
    let e = hub_error(Toto::from_pretrained_with(&NdArray::new(), TOTO1, &options));
    assert_eq!(
        (e.problem, e.file.as_str()),
        (HubProblem::NotCached, "model.safetensors")
    );
    std::fs::remove_dir_all(cache).unwrap();
}

#[test]
fn unknown_repositories_revisions_and_files_are_not_found() {
    let hub = LocalHub::serve(repos());
    let cache = scratch("missing");
    let options = options(&hub.endpoint, &cache);
    let e = hub_error(AutoToto::from_pretrained_with(
        &NdArray::new(),
        "test-org/nope",
        &options,
    ));
    assert_eq!(e.problem, HubProblem::NotFound);
    assert_eq!(
        (e.repo.as_str(), e.file.as_str()),
        ("test-org/nope", "config.json")
    );
    assert!(
        e.reason.contains("404") && e.reason.contains("RepoNotFound"),
        "{}",
        e.reason
    );
    let other = options.clone().with_revision("v9");
    let e = hub_error(AutoToto::from_pretrained_with(
        &NdArray::new(),
        TOTO1,
        &other,
    ));
    assert_eq!(
        (e.problem, e.revision.as_str()),
        (HubProblem::NotFound, "v9")
    );
    let e = hub_error(Toto2::from_pretrained_with(
        &NdArray::new(),
        "test-org/no-weights",
        &options,
    ));
    assert_eq!(
        (e.problem, e.file.as_str()),
        (HubProblem::NotFound, "model.safetensors.index.json")
    );
    assert!(
        e.reason.contains("neither `model.safetensors`"),
        "{}",
        e.reason
    );
    std::fs::remove_dir_all(cache).unwrap();
}

#[test]
fn an_unreachable_endpoint_is_a_network_error() {
    let cache = scratch("network");
    let result =
        Toto::from_pretrained_with(&NdArray::new(), TOTO1, &options(&dead_endpoint(), &cache));
    let e = hub_error(result);
    assert_eq!(
        (e.problem, e.file.as_str()),
        (HubProblem::Network, "config.json")
    );
    assert!(
        std::error::Error::source(&*e).is_some(),
        "keeps the client's error"
    );
    std::fs::remove_dir_all(cache).unwrap();
}

#[test]
fn malformed_names_are_refused_before_any_request() {
    let hub = LocalHub::serve(repos());
    let cache = scratch("names");
    for (repo, revision) in [
        ("../etc", "main"),
        ("a b/c", "main"),
        (TOTO1, "main branch"),
    ] {
        let options = options(&hub.endpoint, &cache).with_revision(revision);
        let e = hub_error(Toto::from_pretrained_with(&NdArray::new(), repo, &options));
        assert_eq!(e.problem, HubProblem::InvalidName, "{repo} {revision}");
    }
    assert_eq!(hub.requests(), Vec::<String>::new());
    std::fs::remove_dir_all(cache).unwrap();
}
