//! The terminal: notes and server logs on stderr, prompts, and progress bars that step
//! aside while a prompt is open.

use indicatif::{MultiProgress, ProgressDrawTarget};
use std::io::IsTerminal;

pub struct Ui {
    /// Prompts are allowed: stdin and stderr are terminals and this is not a one-shot run
    /// with `--answers`-only automation in mind (one-shot runs still prompt on a terminal).
    interactive: bool,
    /// stderr is a terminal: draw progress bars (else progress is printed as lines).
    stderr_tty: bool,
    bars: MultiProgress,
    /// One prompt at a time, even when a sampling and an elicitation request race.
    prompt_lock: tokio::sync::Mutex<()>,
}

impl Ui {
    pub fn new() -> Ui {
        let stderr_tty = std::io::stderr().is_terminal();
        let interactive = stderr_tty && std::io::stdin().is_terminal();
        Ui {
            interactive,
            stderr_tty,
            bars: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            prompt_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether a person can be asked (a terminal on stdin and stderr).
    pub fn interactive(&self) -> bool {
        self.interactive
    }

    /// Whether progress is drawn as bars (stderr is a terminal).
    pub fn draws_bars(&self) -> bool {
        self.stderr_tty
    }

    pub fn bars(&self) -> &MultiProgress {
        &self.bars
    }

    /// Prints a line on stderr without tearing the progress bars.
    pub fn note(&self, line: impl AsRef<str>) {
        let line = line.as_ref();
        self.bars.suspend(|| eprintln!("{line}"));
    }

    /// Runs a blocking prompt (inquire) on a blocking thread, with the bars hidden.
    /// `None` means the prompt thread died, which callers treat like a cancelled prompt.
    pub async fn prompt<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let _one_at_a_time = self.prompt_lock.lock().await;
        let _ = self.bars.clear();
        self.bars.set_draw_target(ProgressDrawTarget::hidden());
        let result = tokio::task::spawn_blocking(f).await.ok();
        self.bars.set_draw_target(ProgressDrawTarget::stderr());
        result
    }
}

/// `xdg-open URL` when a graphical session is there; false when there is no browser.
pub fn open_in_browser(url: &str) -> bool {
    let graphical = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    if !graphical {
        return false;
    }
    std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(|mut child| {
            // Reap it so it does not linger as a zombie.
            std::thread::spawn(move || child.wait());
        })
        .is_ok()
}
