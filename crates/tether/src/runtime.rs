//! The tokio runtime for a process that serves or drives WebSocket
//! connections: what `tether serve`, `tether echo`'s accept loop, `tether
//! bench` and the comparison runner build.

/// A runtime for the cores this process may use: a single-threaded one when
/// that is one core (where work stealing only adds cross-thread hand-offs to
/// every wake-up, which a process pinned to a core pays per message), a
/// work-stealing one otherwise.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    builder().build()
}

/// The builder [`runtime`] uses, for a process that adds hooks of its own
/// (such as `on_thread_park`) before building.
pub fn builder() -> tokio::runtime::Builder {
    let one_core = std::thread::available_parallelism().map_or(true, |n| n.get() == 1);
    let mut builder = if one_core {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all();
    builder
}
