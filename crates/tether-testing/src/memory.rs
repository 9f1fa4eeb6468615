//! The resident memory of a process, from `/proc`.

/// The anonymous resident memory of process `pid` (its heap and stacks,
/// not the mapped binary), in bytes.
pub fn rss_anon_bytes(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process lives");
    let line = status
        .lines()
        .find(|line| line.starts_with("RssAnon:"))
        .expect("an RssAnon line");
    let kib: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|kib| kib.parse().ok())
        .expect("a number of KiB");
    kib * 1024
}

/// The resident memory of this process, in bytes.
pub fn rss_bytes_of_self() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|pages| pages.parse().ok())
        .expect("resident pages");
    pages * 4096
}
