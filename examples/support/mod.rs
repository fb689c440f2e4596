//! What the examples share.

/// Quiets Mesa's `device_select` Vulkan layer on a machine without a display server: it looks
/// for a Wayland or X11 display to order the GPUs by, and on a headless machine prints
/// "error: XDG_RUNTIME_DIR is invalid or not set in the environment." for every Vulkan instance.
/// It orders GPUs for a display only, so with none it has nothing to do: `NODEVICE_SELECT=1` (the
/// layer's own switch) turns it off. An explicit `NODEVICE_SELECT` is left as it is.
///
/// Call it first in `main`, before any thread exists (it writes the process environment).
pub fn quiet_headless_vulkan() {
    let unset = |var: &str| std::env::var_os(var).is_none_or(|v| v.is_empty());
    if cfg!(target_os = "linux")
        && unset("WAYLAND_DISPLAY")
        && unset("DISPLAY")
        && unset("NODEVICE_SELECT")
    {
        // SAFETY: called as the first statement of `main`, while the program has one thread,
        // so nothing reads the environment concurrently.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}
