//! The resident memory of a process, read as the load generator reads it
//! ([`tether_bench::procfs`]).

use tether_bench::procfs;

/// The anonymous resident memory of process `pid` (its heap and stacks,
/// not the mapped binary), in bytes.
pub fn rss_anon_bytes(pid: u32) -> usize {
    procfs::rss_anon_bytes(pid).expect("the process lives") as usize
}

/// The resident memory of this process, in bytes.
pub fn rss_bytes_of_self() -> usize {
    procfs::rss_bytes(std::process::id()).expect("this process lives") as usize
}
