//! The GPU kernel cache: CubeCL's on-disk record of tuned and compiled kernels, so that only the
//! first process on a machine pays for autotuning and shader compilation.
//!
//! With the `cache` feature (a default), CubeCL keeps in one database per machine: the
//! autotune results (which kernel variant is fastest for each shape), its memory-throughput
//! probe, and, with the `vulkan` feature, the compiled SPIR-V. This crate turns the compiled-kernel
//! store on (CubeCL's default leaves it off) unless a `cubecl.toml` or a `burn.toml` with a
//! `[cubecl]` section exists in the current directory or a parent, which is then CubeCL's to read
//! as it is.
//!
//! On an H100 (Vulkan) the first W-eval forecast of a process took 26 s on a machine that never
//! ran the crate and 1.1 s in every later process (docs/PERFORMANCE.md, "Cold start").
//!
//! A fleet of identical machines need not pay the first run on each: tune once, [`export`] the
//! cache to a file, ship it with the application and [`import`] it on each machine before the
//! first forecast. Ship it only between machines with the same GPU model and driver: compiled
//! SPIR-V and the throughput probe are keyed by the adapter, but autotune entries only by the
//! runtime, compiler and device index, so another GPU would use this one's kernel choices
//! (correct, possibly slower). Every entry carries the CubeCL version: another build ignores it.
//!
//! [`location`], [`export`] and [`import`] read CubeCL's configuration (with the crate's
//! defaults, as opening a device does), which CubeCL does once per process: an application that
//! sets its own with `CubeClRuntimeConfig::set` must do so before calling them.
//!
//! ```no_run
//! # #[cfg(feature = "cache")]
//! # fn main() -> toto_fallback::Result<()> {
//! use toto_fallback::kernel_cache;
//!
//! // On a machine that has forecast the shapes you serve (AutoToto::warm_up, say):
//! let saved = kernel_cache::export("kernels-h100.db")?;
//! println!("{} entries", saved.entries);
//! // On each new machine with the same GPU, before the first forecast:
//! let report = kernel_cache::import("kernels-h100.db")?;
//! println!("{} entries imported into {}", report.imported, kernel_cache::location().display());
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "cache"))]
//! # fn main() {}
//! ```

/// Applies the crate's CubeCL defaults once, before any device opens. Does nothing without the
/// `cache` feature, when CubeCL's configuration was already read (an application that used
/// burn's wgpu device first) or when a configuration file exists.
pub(crate) fn apply_defaults() {
    #[cfg(all(
        feature = "cache",
        any(
            target_os = "linux",
            target_os = "windows",
            target_os = "macos",
            target_os = "android"
        )
    ))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(disk::configure);
    }
}

#[cfg(all(
    feature = "cache",
    any(
        target_os = "linux",
        target_os = "windows",
        target_os = "macos",
        target_os = "android"
    )
))]
pub use disk::{Exported, Imported, export, import, location};

#[cfg(all(
    feature = "cache",
    any(
        target_os = "linux",
        target_os = "windows",
        target_os = "macos",
        target_os = "android"
    )
))]
mod disk {
    use std::path::{Path, PathBuf};

    use cubecl::bundle::{self, BundleFormat};
    use cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
    use cubecl::environment;

    use crate::error::{Error, Result};

    /// The files CubeCL reads its configuration from, in each directory from the current up.
    const FILES: [&str; 4] = ["cubecl.toml", "CubeCL.toml", "burn.toml", "Burn.toml"];

    pub(super) fn configure() {
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
    fn configured() {
        super::apply_defaults();
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
            source: format!(
                "not a kernel-cache bundle ({e}); make one with `kernel_cache::export`"
            )
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
}

#[cfg(all(test, feature = "cache", target_os = "linux"))]
mod tests {
    use super::disk::is_configuration;

    #[test]
    fn configuration_files_are_recognised_as_cubecl_reads_them() {
        let dir = std::env::temp_dir().join(format!("toto-kc-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        assert!(is_configuration(&write("cubecl.toml", "")));
        assert!(!is_configuration(&dir.join("CubeCL.toml")), "absent");
        assert!(
            !is_configuration(&write("CubeCL.toml", "[broken")),
            "CubeCL skips it"
        );
        assert!(!is_configuration(&write("burn.toml", "[other]\nx = 1\n")));
        assert!(!is_configuration(&write(
            "burn.toml",
            "[cubecl_extra]\nx = 1\n"
        )));
        assert!(is_configuration(&write(
            "burn.toml",
            "cubecl.compilation.cache = false\n"
        )));
        assert!(is_configuration(&write(
            "burn.toml",
            "cubecl = { autotune = {} }\n"
        )));
        assert!(is_configuration(&write(
            "Burn.toml",
            "[other]\n  [cubecl.compilation]\ncache = false\n"
        )));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
