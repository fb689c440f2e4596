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
//! The bundle carries CubeCL's compiled SPIR-V (with `vulkan`), not the graphics driver's
//! machine code: [`prewarm`] after `import` has the driver compile it on all cores before the
//! first forecast instead of one kernel at a time during it.
//!
//! [`location`], [`export`], [`import`] and [`prewarm`] read CubeCL's configuration (with the
//! crate's defaults, as opening a device does), which CubeCL does once per process: an
//! application that sets its own with `CubeClRuntimeConfig::set` must do so before calling them.
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
//! kernel_cache::prewarm()?;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "cache"))]
//! # fn main() {}
//! ```

// One condition for everything on disk: the `cache` feature, on the operating systems where
// CubeCL keeps files (its `std_io`).
cfg_if::cfg_if! {
    if #[cfg(all(
        feature = "cache",
        any(
            target_os = "linux",
            target_os = "windows",
            target_os = "macos",
            target_os = "android"
        )
    ))] {
        mod disk;
        #[cfg(feature = "vulkan")]
        mod prewarm;
        pub(crate) use disk::apply_defaults;
        pub use disk::{Exported, Imported, Prewarmed, export, import, location, prewarm};
    } else {
        /// Nothing to configure without an on-disk cache.
        pub(crate) fn apply_defaults() {}
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
