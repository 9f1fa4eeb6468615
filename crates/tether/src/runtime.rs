//! The tokio runtime for a process that serves or drives WebSocket
//! connections: what `tether serve`, `tether echo`'s accept loop, `tether
//! bench` and the comparison runner build.

/// A runtime for the cores this process may use: a single-threaded one when
/// that is one core (where work stealing only adds cross-thread hand-offs to
/// every wake-up, which a process pinned to a core pays per message), a
/// work-stealing one otherwise.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let one_core = std::thread::available_parallelism().map_or(true, |n| n.get() == 1);
    if one_core {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
}
