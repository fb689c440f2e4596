//! The kernel cache on disk: the crate's CubeCL defaults, and the bundle export and import.

use std::path::{Path, PathBuf};

use cubecl::bundle::{self, BundleFormat};
use cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
use cubecl::environment;

use crate::error::{Error, Result};

/// The files CubeCL reads its configuration from, in each directory from the current up.
const FILES: [&str; 4] = ["cubecl.toml", "CubeCL.toml", "burn.toml", "Burn.toml"];

/// Applies the crate's CubeCL defaults once, before any device opens. Does nothing when
/// CubeCL's configuration was already read (an application that used burn's wgpu device
/// first) or when a configuration file exists.
pub(crate) fn apply_defaults() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(configure);
}

fn configure() {
    if let Some(file) = configuration_file() {
        log::debug!(
            "CubeCL reads its configuration from {}; the kernel-cache default is not applied",
            file.display()
        );
        return;
    }
    let mut config = CubeClRuntimeConfig::default();
    config.compilation.cache = true;
    // CubeCL's environment variables (CUBECL_AUTOTUNE_LEVEL, …) still apply.
    let config = config.override_from_env();
    if CubeClRuntimeConfig::try_set(config) {
        log::debug!("CubeCL configured by toto-fallback: compiled kernels are kept on disk");
    }
}

/// The first configuration file CubeCL would read, from the current directory up: one that
/// parses as TOML (CubeCL skips one that does not), and for a `burn.toml` one with a
/// `cubecl` table (`[cubecl]`, `[cubecl.…]`, dotted `cubecl.… =` keys or an inline table).
fn configuration_file() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors().find_map(|dir| {
        FILES
            .iter()
            .map(|name| dir.join(name))
            .find(|path| is_configuration(path))
    })
}

pub(super) fn is_configuration(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let Ok(table) = text.parse::<toml::Table>() else {
        return false;
    };
    let burn = path
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.eq_ignore_ascii_case("burn.toml"));
    !burn || table.get("cubecl").is_some_and(toml::Value::is_table)
}

/// Loads CubeCL's configuration (with the crate's defaults when no file chooses), which
/// decides where the cache lives.
pub(super) fn configured() {
    apply_defaults();
    let _ = CubeClRuntimeConfig::get();
}

/// The database file holding this process's kernel cache: `<root>/default.db`, where
/// `<root>` is `target/environment` of the outermost Cargo project above the current
/// directory, else `$XDG_CACHE_HOME/cubecl` or `~/.cache/cubecl`, unless a `cubecl.toml`
/// says otherwise (docs/troubleshooting.md). The file may not exist yet: CubeCL creates it
/// at the first autotune.
pub fn location() -> PathBuf {
    configured();
    environment::path()
}

/// What [`export`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Exported {
    /// The bundle file.
    pub file: PathBuf,
    /// Entries (tuned kernels, compiled shaders, probe results) in the cache when it was
    /// exported.
    pub entries: u64,
    /// The cache's namespaces (`autotune/…`, `vulkan/…`, `throughput/…`).
    pub namespaces: Vec<String>,
}

/// What [`import`] copied.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Imported {
    /// Entries written into this machine's cache.
    pub imported: usize,
    /// Entries the cache already had (a local entry is never overwritten).
    pub skipped: usize,
    /// Entries the cache could not store (a full disk, an unwritable directory): they are
    /// tuned or compiled again when first needed.
    pub failed: usize,
    /// The bundle's namespaces.
    pub namespaces: Vec<String>,
}

/// Saves this machine's kernel cache to `file` (one SQLite file), for [`import`] on
/// machines with the same GPU, driver and crate version. Run it after the forecasts whose
/// kernels you want to ship (the process's own entries are written as they are made).
///
/// # Errors
/// [`Error::Io`] when the cache cannot be read (no forecast has run on a GPU on this machine
/// yet: the cache is empty) or `file` cannot be written.
pub fn export(file: impl AsRef<Path>) -> Result<Exported> {
    let file = file.as_ref();
    configured();
    let summary = environment::namespaces();
    let entries = summary.iter().map(|n| n.entries).sum();
    if entries == 0 {
        return Err(Error::Io {
            path: location().display().to_string(),
            source: "the kernel cache is empty: run a forecast on a GPU first (for example \
                     `AutoToto::warm_up`), then export"
                .into(),
        });
    }
    environment::bundle()
        .save(file, BundleFormat::Sqlite)
        .map_err(|e| Error::Io {
            path: file.display().to_string(),
            source: format!("exporting the kernel cache: {e}").into(),
        })?;
    Ok(Exported {
        file: file.to_path_buf(),
        entries,
        namespaces: summary.into_iter().map(|n| n.namespace).collect(),
    })
}

/// Copies the entries of a bundle written by [`export`] into this machine's kernel cache.
/// Call it before the first forecast of the process, with a bundle from the same GPU model
/// and driver (autotune entries do not name the GPU model; see the module docs); entries of
/// another CubeCL version are stored but never looked up.
///
/// # Errors
/// [`Error::Io`] when `file` cannot be opened or is not a bundle.
pub fn import(file: impl AsRef<Path>) -> Result<Imported> {
    let file = file.as_ref();
    configured();
    let opened = bundle::open(file).map_err(|e| Error::Io {
        path: file.display().to_string(),
        source: format!("not a kernel-cache bundle ({e}); make one with `kernel_cache::export`")
            .into(),
    })?;
    let report = bundle::import(&*opened);
    Ok(Imported {
        imported: report.imported,
        skipped: report.skipped,
        failed: report.failed,
        namespaces: report.namespaces,
    })
}

/// What [`prewarm`] handed to the graphics driver.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Prewarmed {
    /// The adapters whose stored kernels were compiled (name and driver).
    pub adapters: Vec<String>,
    /// Pipelines the driver created.
    pub pipelines: usize,
    /// Pipelines the driver refused: CubeCL compiles those kernels itself when they first
    /// launch, as it would without `prewarm`.
    pub failed: usize,
    /// Threads that created them.
    pub threads: usize,
    /// Wall time of the whole call, in seconds.
    pub seconds: f64,
}

/// Has the graphics driver compile every kernel stored in this machine's kernel cache, on all
/// cores, so that a first forecast finds them in the driver's own shader cache instead of
/// waiting for ~100 compilations one after the other.
///
/// For a machine whose kernel cache came from a bundle ([`import`]): CubeCL then needs neither
/// to tune nor to compile SPIR-V, but the driver has compiled none of the kernels (on an H100
/// that was 11–19 s of the first forecast; docs/PERFORMANCE.md, "Cold start"). Call it after
/// `import` and before the first forecast; it opens its own Vulkan device on each discrete or
/// integrated adapter (software rasterizers are skipped), creates the pipelines of the kernels
/// stored for that adapter by this build of the application, and closes it. On a machine that
/// has run the crate before, the driver's cache has them already and this only costs the
/// lookups (0.5 s on the H100): call it when `import` imported something.
///
/// Only SPIR-V is stored: without the `vulkan` feature (WGSL, which the driver compiles in
/// every process) there is nothing to hand over, and the report is empty.
///
/// ```no_run
/// # #[cfg(feature = "cache")]
/// # fn main() -> toto_fallback::Result<()> {
/// use toto_fallback::kernel_cache;
///
/// kernel_cache::import("kernels-h100.db")?;
/// let warmed = kernel_cache::prewarm()?;
/// println!("{} kernels compiled in {:.1} s", warmed.pipelines, warmed.seconds);
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "cache"))]
/// # fn main() {}
/// ```
///
/// # Errors
/// None today; the `Result` leaves room for a driver that cannot be asked at all. A kernel the
/// driver refuses is counted in [`Prewarmed::failed`], not an error.
pub fn prewarm() -> Result<Prewarmed> {
    #[cfg(feature = "vulkan")]
    {
        super::prewarm::prewarm()
    }
    #[cfg(not(feature = "vulkan"))]
    {
        Ok(Prewarmed {
            adapters: Vec::new(),
            pipelines: 0,
            failed: 0,
            threads: 0,
            seconds: 0.0,
        })
    }
}
