//! Starting the real `tether` binary on a free loopback port for a test.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;
use std::process::Stdio;

#[allow(unused_imports)] // each test binary uses a different subset
pub use tether_testing::{free_port, Child};

/// Runs `tether ARGS --listen 127.0.0.1:PORT` and waits until it accepts
/// connections (see [`tether_testing::spawn_listening`]).
pub async fn spawn(args: &[&str], stderr: Stdio) -> (Child, u16) {
    tether_testing::spawn_listening(Path::new(env!("CARGO_BIN_EXE_tether")), args, stderr).await
}
