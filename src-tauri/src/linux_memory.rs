//! Linux: giving back what the window used once it is closed.
//!
//! The WebKit processes end with the window, but the app process itself
//! still holds the pages it touched while showing it: the code and data of
//! WebKitGTK, JavaScriptCore, the GL stack (Mesa's LLVM), GTK and ICU,
//! file-backed and clean, and freed heap. They would stay resident, and
//! counted against the app, for as long as it sits in the tray. So, a
//! moment after the window closed, the app returns free heap to the system
//! (`malloc_trim`) and asks the kernel to reclaim its read-only file-backed
//! pages (`MADV_PAGEOUT`, Linux 5.4+): a hint that never changes memory's
//! contents; the kernel takes only pages no other process maps, and what is
//! needed again is read back from the file on its next use (a new window
//! does so). Both are best effort: a failure only leaves the pages where
//! they were.
#![allow(unsafe_code)] // two libc calls, each with its SAFETY argument

use nix::libc;

/// What [`release`] gave back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// Bytes of read-only file mappings the kernel was asked to reclaim.
    pub advised: usize,
    /// Mappings the kernel refused the hint for.
    pub refused: usize,
    /// Whether `malloc_trim` gave memory back.
    pub trimmed: bool,
}

/// The read-only mappings of regular files in a `/proc/PID/maps` text, as
/// `(start, end)` address pairs. Pure.
pub fn read_only_file_mappings(maps: &str) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            // "start-end perms offset dev inode [path]"
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            let path = fields.skip(3).collect::<Vec<_>>().join(" ");
            let file =
                path.starts_with('/') && !path.starts_with("/dev/") && !path.starts_with("/memfd:");
            if !file || perms.contains('w') || path.ends_with("(deleted)") {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (end > start).then_some((start, end))
        })
        .collect()
}

/// Returns free heap and reclaimable file pages to the system.
pub fn release() -> Released {
    let mut released = Released::default();
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: malloc_trim takes no pointer; it only hands free memory at
        // the top of glibc's heaps back to the kernel, under the allocator's
        // own lock, and is safe to call from any thread at any time.
        released.trimmed = unsafe { libc::malloc_trim(0) } == 1;
    }
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return released;
    };
    for (start, end) in read_only_file_mappings(&maps) {
        // SAFETY: MADV_PAGEOUT is nondestructive (madvise(2)): it never
        // changes the contents of memory, whatever the range holds; here a
        // whole read-only file mapping of this process as the kernel just
        // listed it. Had it been unmapped meanwhile, the call fails
        // (ENOMEM) and nothing happens; had something else been mapped
        // there, its contents stay as they are too.
        let rc =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT) };
        if rc == 0 {
            released.advised += end - start;
        } else {
            released.refused += 1;
        }
    }
    released
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_read_only_regular_file_mappings_are_released() {
        let maps = "\
5581a000-5581c000 r--p 00000000 fd:00 123 /usr/bin/sallyport-app
5581c000-5581f000 r-xp 00002000 fd:00 123 /usr/bin/sallyport-app
5581f000-55820000 rw-p 00005000 fd:00 123 /usr/bin/sallyport-app
55820000-55840000 rw-p 00000000 00:00 0 [heap]
7f00000000-7f00001000 rw-s 00000000 00:05 9 /SYSV00000000 (deleted)
7f00002000-7f00003000 r--s 00000000 00:05 10 /memfd:wayland (deleted)
7f00004000-7f00005000 rw-s 00000000 00:06 11 /dev/dri/renderD128
7f00006000-7f00007000 r--p 00000000 00:00 0
7ffd000000-7ffd001000 r-xp 00000000 00:00 0 [vdso]
";
        assert_eq!(
            read_only_file_mappings(maps),
            [(0x5581_a000, 0x5581_c000), (0x5581_c000, 0x5581_f000)]
        );
    }

    #[test]
    fn releasing_leaves_this_process_working() {
        let released = release();
        assert!(released.advised > 0, "{released:?}");
        // The code just paged out runs on, read back from its file.
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        assert!(!read_only_file_mappings(&maps).is_empty());
    }
}
