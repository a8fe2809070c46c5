//! How the window's WebKit view draws, on Linux.
//!
//! WebKitGTK composites pages with OpenGL when it can ("accelerated
//! compositing"). For a window of text that changes a figure every few
//! seconds that costs more than it saves: every change goes through the GL
//! compositor, and where there is no GPU (Mesa's software renderer: a VM,
//! a remote desktop, Xvfb) each one redraws the whole surface on the CPU.
//! Measured with `scripts/bench-app-idle` on this machine, window open with
//! three idle tunnels (60 s windows, same run conditions): the WebKit web
//! process went from 0.82 % to 0.10 % of a core, and the window's process
//! tree from 313 MB to 237 MB PSS, with compositing off. A page this size
//! scrolls without a GPU.
//!
//! WebKit reads `WEBKIT_DISABLE_COMPOSITING_MODE` when its first view is
//! made. Setting the equivalent `hardware-acceleration-policy` on a view
//! that exists already was tried first: its web process ended and the
//! window stayed blank, so the environment it is.
#![allow(unsafe_code)] // one `set_var`, with its SAFETY argument

/// The variable WebKitGTK reads.
const VARIABLE: &str = "WEBKIT_DISABLE_COMPOSITING_MODE";

/// Turns WebKit's accelerated compositing off for this process, unless
/// the user chose otherwise (the variable is set). Call it first in
/// `main`, before any thread exists.
pub fn draw_without_gl() {
    if std::env::var_os(VARIABLE).is_none() {
        // SAFETY: `main` calls this before anything else, so no other
        // thread exists that could read or write the environment at the
        // same time (the reason `set_var` is unsafe).
        unsafe { std::env::set_var(VARIABLE, "1") };
    }
}
