//! A progress bar on stderr while a scenario runs; silent off a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar, or nothing when output is not a terminal.
#[derive(Debug, Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar counting to `total` (or a spinner counting up when `None`),
    /// shown only when `enabled` and stderr is a terminal.
    pub fn new(label: &str, total: Option<u64>, enabled: bool) -> Self {
        if !(enabled && std::io::stderr().is_terminal()) {
            return Self {
                bar: ProgressBar::hidden(),
            };
        }
        let bar = match total {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template(
                    "{prefix:>12} [{bar:30}] {pos}/{len} {per_sec} {elapsed}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{prefix:>12} {spinner} {pos} {per_sec} {elapsed}")
                    .expect("valid template"),
            ),
        };
        bar.set_prefix(label.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        Self { bar }
    }

    /// A bar that never shows.
    pub fn hidden() -> Self {
        Self {
            bar: ProgressBar::hidden(),
        }
    }

    /// Counts `n` more.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Sets the count.
    pub fn set(&self, n: u64) {
        self.bar.set_position(n);
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
