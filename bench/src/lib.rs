//! The comparison benchmark: tether's echo server against the same server
//! written with tokio-tungstenite and with fastwebsockets, under identical load
//! from `tether-bench`, each server pinned to one core and the load to another.
//!
//! - [`room`]: the `/broadcast` contract the peers share with `tether echo`.
//! - [`server`]: starting a server binary pinned to a core, stopping it by PID.
//! - [`plan`]: the measurements, their loads, and the table of ratios.
//! - `src/bin/peer-*.rs`: the peer servers; `src/bin/compare.rs`: the runner.

#![deny(missing_docs)]

pub mod plan;
pub mod room;
pub mod server;

/// The address flag every server in the comparison takes.
pub fn listen_arg() -> std::net::SocketAddr {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--listen" {
            if let Some(addr) = args.next().and_then(|a| a.parse().ok()) {
                return addr;
            }
        }
    }
    "127.0.0.1:9001".parse().expect("valid default")
}
