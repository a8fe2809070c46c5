//! glibc: fix the mmap threshold so that large buffers are always their
//! own mappings (see `core/buffers.rs`). With `core/buffers.rs`'s caller,
//! `local_owner/windows.rs` is the only other place of `unsafe` in this
//! crate.
#![allow(unsafe_code)]

use std::sync::Once;

use nix::libc;

/// glibc's own starting threshold (`DEFAULT_MMAP_THRESHOLD_MIN`).
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Set `M_MMAP_THRESHOLD` once per process. Setting it also turns off
/// glibc's run-time raising of the threshold.
pub(super) fn fix_mmap_threshold() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: `mallopt` takes two integers and changes only a tuning
        // parameter of glibc's allocator, under the allocator's own lock;
        // no pointer or Rust-visible memory is involved. Blocks allocated
        // before keep their kind: `free` tells a mapped block from a heap
        // block by the block's own header, not by the threshold.
        let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
        if ok != 1 {
            tracing::warn!("mallopt(M_MMAP_THRESHOLD) refused; TCP buffers may stay resident");
        }
    });
}
