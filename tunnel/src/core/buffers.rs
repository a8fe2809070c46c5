//! The in-tunnel sockets' buffers: allocated when a connection opens,
//! resident only as far as data has passed through them, and given back to
//! the operating system when it closes.
//!
//! smoltcp takes a socket's buffers when the socket is made and cannot
//! resize them (the window scale it offers is also fixed at the SYN, from
//! the buffer's size), so a TCP connection gets its full `tcp_buffer`
//! (1 MiB by default) each way when it opens. What keeps that cheap is the
//! memory under the buffer: a zeroed allocation of that size is fresh pages
//! from the kernel, which cost nothing until first written, and smoltcp's
//! ring buffer neither touches its storage when made nor wanders around it
//! needlessly (an empty ring writes from its start again). So the pages a
//! connection makes resident are about the most data it ever held queued at
//! once: they grow with use up to `tcp_buffer`, and they are unmapped when
//! the socket is freed at the close.
//!
//! That holds only while the allocator serves such sizes with `mmap` and
//! gives them back with `munmap`. glibc does so above its mmap threshold,
//! but it raises that threshold at run time to the size of any mapped block
//! the process frees (up to 32 MiB): after the first closed connection (or
//! any other large block freed), 1 MiB buffers come from the heap, where
//! `calloc` writes every byte of a reused block (all of it resident at
//! once) and `free` keeps it. [`zeroed`] therefore fixes glibc's threshold
//! at its starting value, 128 KiB, once per process, before the first
//! buffer (`glibc.rs`; a fixed threshold is what `mallopt(3)` offers for
//! this, and it turns the run-time adjustment off). The cost for the rest
//! of the process: every block of 128 KiB or more is its own mapping (one
//! `mmap` and one `munmap`), as it is in a glibc process that never freed
//! one. Buffers smaller than the threshold (`tcp_buffer` below 128 KiB)
//! come from the heap and are resident in full. Each buffer is a mapping of
//! its own; past Linux's limit of mappings per process
//! (`vm.max_map_count`, 65,530 by default: about 30,000 open connections)
//! glibc serves them from the heap again.
//!
//! Elsewhere nothing is changed: musl, macOS and Windows serve blocks of
//! this size from fresh mappings without a run-time threshold (not
//! measured here). The test is `core/tests.rs`
//! `tcp_buffers_grow_with_use_and_are_released_on_close` (Linux).

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc;

/// A zeroed buffer of `len` bytes whose pages become resident only when
/// written and are returned to the system when it is dropped (for sizes of
/// 128 KiB and more; see the module's text).
pub(crate) fn zeroed(len: usize) -> Vec<u8> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    glibc::fix_mmap_threshold();
    vec![0u8; len]
}
