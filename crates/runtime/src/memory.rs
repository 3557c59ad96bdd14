//! Giving back the memory that only start-up needed, and the allocator's settings for heavy allocation.
//!
//! A long-running process's resident set keeps every page start-up touched: the code and read-only data of
//! configuration loading, connection set-up and the like, mapped from the executable and never needed again, and
//! the heap that start-up freed but the allocator kept. [`release_startup_pages`] gives both back once a role has
//! settled. [`without_fast_bins`] sets glibc's allocator for a process that allocates and frees many small
//! objects between larger buffers (the alerting service).

use std::io::{BufRead, BufReader};

/// Returns the heap start-up freed to the kernel (glibc's `malloc_trim`) and drops from the resident set the
/// clean pages of the executable's read-only mappings (its code and constants). A dropped page that is needed
/// again is mapped back from the page cache (a minor fault), as after the kernel reclaimed it under memory
/// pressure: nothing is lost, and the resident set shrinks to what the process keeps using. Only the executable's
/// own mappings are touched, and of them only those that are neither writable nor hold a copy-on-write page (its
/// data and relocated constants stay). Returns the kilobytes of code and constants dropped.
pub fn release_startup_pages() -> std::io::Result<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of glibc's arenas to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    let executable = std::fs::metadata("/proc/self/exe")?;
    let smaps = std::fs::File::open("/proc/self/smaps")?;
    let mut released = 0;
    for mapping in clean_read_only(
        BufReader::new(smaps),
        std::os::unix::fs::MetadataExt::ino(&executable),
    )? {
        // SAFETY: the range is one whole mapping of the executable that is not writable and holds no private
        // (copy-on-write) page: every resident page is the file's own content, which MADV_DONTNEED drops from
        // this process's page tables and the next access maps again from the same file.
        let dropped = unsafe {
            libc::madvise(
                mapping.start as *mut libc::c_void,
                mapping.end - mapping.start,
                libc::MADV_DONTNEED,
            )
        };
        if dropped == 0 {
            released += mapping.resident_kb;
        }
    }
    Ok(released)
}

/// Turns off glibc's fast bins (`mallopt(M_MXFAST, 0)`), for the whole process. A freed small block then joins
/// its free neighbours at once, rather than waiting in a fast bin until a request of a kilobyte or more merges
/// every waiting block of the arena (`malloc_consolidate`). A request of alerts frees thousands of small blocks
/// (labels, strings, maps) between such buffers: with fast bins, the merging and the unlinking it does were 9% of
/// the alerting service's CPU under batches of 64 new alerts, and without them the service spent 7% to 16% less
/// CPU per alert (four interleaved runs). The per-thread cache in front of the bins is unchanged. Elsewhere than
/// glibc, nothing.
pub fn without_fast_bins() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a tunable of glibc's allocator; blocks already in fast bins are merged by it.
    unsafe {
        libc::mallopt(libc::M_MXFAST, 0);
    }
}

/// One mapping of `/proc/self/smaps` that [`release_startup_pages`] may drop.
#[derive(Debug, PartialEq)]
struct Mapping {
    start: usize,
    end: usize,
    resident_kb: u64,
}

/// The mappings of the file with inode `inode` that are private, not writable, and hold no anonymous
/// (copy-on-write) page, with some page resident.
fn clean_read_only(smaps: impl BufRead, inode: u64) -> std::io::Result<Vec<Mapping>> {
    let mut found = Vec::new();
    // The mapping being read, while it qualifies: (start, end, resident kB, anonymous kB).
    let mut current: Option<(usize, usize, u64, u64)> = None;
    let mut finish = |current: Option<(usize, usize, u64, u64)>| {
        if let Some((start, end, resident_kb, 0)) = current
            && resident_kb > 0
        {
            found.push(Mapping {
                start,
                end,
                resident_kb,
            });
        }
    };
    for line in smaps.lines() {
        let line = line?;
        let mut fields = line.split_ascii_whitespace();
        let Some(first) = fields.next() else {
            continue;
        };
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            )
        {
            // A mapping's header: "start-end perms offset dev inode [path]".
            finish(current.take());
            let perms = fields.next().unwrap_or("");
            let mapped_inode = fields.nth(2).and_then(|i| i.parse::<u64>().ok());
            let eligible = perms.len() == 4
                && perms.starts_with('r')
                && perms.as_bytes()[1] == b'-'
                && perms.ends_with('p')
                && mapped_inode == Some(inode)
                && end > start;
            current = eligible.then_some((start, end, 0, u64::MAX));
            continue;
        }
        let Some((_, _, resident, anonymous)) = current.as_mut() else {
            continue;
        };
        let kb = fields.next().and_then(|v| v.parse::<u64>().ok());
        match first {
            "Rss:" => *resident = kb.unwrap_or(0),
            // Unknown (unread, or unreadable) means not clean: the mapping is left alone.
            "Anonymous:" => *anonymous = kb.unwrap_or(u64::MAX),
            _ => {}
        }
    }
    finish(current);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0a0000000-55d0a0200000 r--p 00000000 fd:01 4242                       /usr/bin/gomon
Size:               2048 kB
Rss:                 812 kB
Anonymous:             0 kB
55d0a0200000-55d0a0900000 r-xp 00200000 fd:01 4242                       /usr/bin/gomon
Size:               7168 kB
Rss:                2100 kB
Anonymous:             0 kB
55d0a0900000-55d0a0a00000 r--p 00900000 fd:01 4242                       /usr/bin/gomon
Size:               1024 kB
Rss:                1024 kB
Anonymous:           400 kB
55d0a0a00000-55d0a0a10000 rw-p 00a00000 fd:01 4242                       /usr/bin/gomon
Size:                 64 kB
Rss:                  64 kB
Anonymous:            64 kB
55d0a0a10000-55d0a0a20000 r-xp 00000000 fd:01 4243                       /usr/lib/libssl.so.3
Size:                 64 kB
Rss:                  64 kB
Anonymous:             0 kB
55d0a0a20000-55d0a0a30000 r--p 00000000 fd:01 4242                       /usr/bin/gomon
Size:                 64 kB
Rss:                   0 kB
Anonymous:             0 kB
7ffd1000-7ffd3000 r-xp 00000000 00:00 0                                  [vdso]
Size:                  8 kB
Rss:                   8 kB
Anonymous:             0 kB
";

    #[test]
    fn only_the_executables_clean_read_only_mappings_are_dropped() {
        let found = clean_read_only(SMAPS.as_bytes(), 4242).expect("in memory");
        assert_eq!(
            found,
            vec![
                Mapping {
                    start: 0x55d0a0000000,
                    end: 0x55d0a0200000,
                    resident_kb: 812
                },
                Mapping {
                    start: 0x55d0a0200000,
                    end: 0x55d0a0900000,
                    resident_kb: 2100
                },
            ]
        );
    }

    #[test]
    fn a_mapping_without_its_anonymous_count_is_left_alone() {
        let smaps =
            "55d0a0000000-55d0a0200000 r-xp 00000000 fd:01 4242 /usr/bin/gomon\nRss: 812 kB\n";
        assert_eq!(
            clean_read_only(smaps.as_bytes(), 4242).expect("in memory"),
            vec![]
        );
    }

    #[test]
    fn garbage_is_ignored() {
        let smaps = "not-a-mapping\n\u{0}\nRss: 12 kB\nzz-yy r-xp 0 0 4242 /x\nAnonymous: 0 kB\n";
        assert_eq!(
            clean_read_only(smaps.as_bytes(), 4242).expect("in memory"),
            vec![]
        );
    }

    #[test]
    fn released_pages_are_mapped_back_when_used() {
        // This test binary's own code and constants: after the release it keeps running, and its constants read
        // the same, mapped back from the file.
        let checksum = || SMAPS.bytes().map(u64::from).sum::<u64>();
        let before = checksum();
        let released = release_startup_pages().expect("reads /proc/self");
        assert!(released > 0, "nothing released");
        assert_eq!(checksum(), before);
        assert_eq!(
            clean_read_only(SMAPS.as_bytes(), 4242)
                .expect("in memory")
                .len(),
            2
        );
    }
}
