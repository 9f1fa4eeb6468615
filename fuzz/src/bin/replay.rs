//! Replays a fuzz corpus through every target on stable Rust, as CI does:
//! `cargo run -p tether-fuzz --bin replay -- fuzz/corpus`. Each target reads
//! `CORPUS/<target>/*`; a panic fails the run and names the input.

use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    let mut total = 0;
    for (name, target) in tether_fuzz::TARGETS {
        let dir = root.join(name);
        let mut entries: Vec<_> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries.filter_map(Result::ok).map(|e| e.path()).collect(),
            Err(e) => panic!("{}: {e}", dir.display()),
        };
        entries.sort();
        assert!(!entries.is_empty(), "{} has no seeds", dir.display());
        for path in &entries {
            let data = std::fs::read(path).unwrap();
            let result = std::panic::catch_unwind(|| target(&data));
            if result.is_err() {
                eprintln!("{name}: input {} panicked", path.display());
                std::process::exit(1);
            }
        }
        println!("{name}: {} inputs replayed", entries.len());
        total += entries.len();
    }
    println!("fuzz replay: {total} passed, 0 failed");
}
