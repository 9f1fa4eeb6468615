//! Where `tether connect` reads and writes: a line editor with history on a
//! terminal (received messages printed above the prompt), or plain stdout.

use std::io::Write;
use std::sync::{Arc, Mutex};

use rustyline::ExternalPrinter;
use tokio::sync::mpsc;

use super::Input;

type Printer = Arc<Mutex<Option<Box<dyn ExternalPrinter + Send>>>>;

/// Prints above the prompt when there is one.
#[derive(Clone)]
pub struct Notes(Printer);

impl Notes {
    /// Prints a line for the user (stderr when there is no prompt).
    pub fn note(&self, text: &str) {
        let mut printer = self.0.lock().expect("printer lock");
        match printer.as_mut() {
            Some(printer) => {
                let _ = printer.print(format!("{text}\n"));
            }
            None => eprintln!("{text}"),
        }
    }
}

/// The output side, and the terminal state to restore.
pub struct Screen {
    printer: Printer,
    saved: Option<libc::termios>,
}

impl Screen {
    /// Plain stdout, for pipes.
    pub fn plain() -> Self {
        Self {
            printer: Arc::default(),
            saved: None,
        }
    }

    /// A line editor on the terminal, in a thread of its own: each line goes to
    /// `lines`; Ctrl-D or Ctrl-C ends the input.
    pub fn interactive(lines: mpsc::Sender<Input>) -> anyhow::Result<Self> {
        let saved = save_terminal();
        let mut editor = rustyline::DefaultEditor::new()?;
        let printer: Box<dyn ExternalPrinter + Send> = Box::new(editor.create_external_printer()?);
        std::thread::spawn(move || loop {
            match editor.readline("> ") {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    if lines.blocking_send(Input::Line(line)).is_err() {
                        return;
                    }
                }
                Err(_) => {
                    let _ = lines.blocking_send(Input::End);
                    return;
                }
            }
        });
        Ok(Self {
            printer: Arc::new(Mutex::new(Some(printer))),
            saved,
        })
    }

    /// A handle for notes from other tasks.
    pub fn printer(&self) -> Notes {
        Notes(self.printer.clone())
    }

    /// Shows a received message, with the time if asked.
    pub fn show(&self, text: &str, timestamps: bool) {
        let line = if timestamps {
            format!("{} {text}", clock())
        } else {
            text.to_owned()
        };
        let mut printer = self.printer.lock().expect("printer lock");
        match printer.as_mut() {
            Some(printer) => {
                let _ = printer.print(format!("{line}\n"));
            }
            None => {
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "{line}");
                let _ = stdout.flush();
            }
        }
    }

    /// Puts the terminal back as it was: the editor thread may still be
    /// blocked in raw mode when the connection ends.
    pub fn finish(&mut self) {
        if let Some(saved) = self.saved.take() {
            // SAFETY: restores a termios read from the same descriptor.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &saved);
            }
            eprintln!();
        }
    }
}

fn save_terminal() -> Option<libc::termios> {
    // SAFETY: tcgetattr fills the zeroed termios it is given.
    unsafe {
        let mut termios: libc::termios = std::mem::zeroed();
        (libc::tcgetattr(libc::STDIN_FILENO, &mut termios) == 0).then_some(termios)
    }
}

/// The wall-clock time of day, UTC, to the millisecond.
fn clock() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ms = now.as_millis() % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}
