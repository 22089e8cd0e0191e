//! Live progress: one bar per progress token (with the server's message and total), and
//! spinners for waits such as a URL elicitation. Without a terminal on stderr, each update
//! is a line instead.

use super::ui::Ui;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Progress values are floats; bars count in thousandths.
const SCALE: f64 = 1000.0;

pub struct Progress {
    ui: Arc<Ui>,
    /// Key (progress token or wait id) → bar and its last text.
    bars: Mutex<HashMap<String, (ProgressBar, String)>>,
    /// Progress tokens of the current call whose total is known but not reached yet.
    open: Mutex<HashMap<String, bool>>,
    /// The highest progress seen per token. rmcp runs notification handlers concurrently,
    /// so an earlier update can arrive after a later one; progress only goes up (spec),
    /// so a stale one is dropped instead of moving the bar back.
    highest: Mutex<HashMap<String, f64>>,
}

impl Progress {
    pub fn new(ui: Arc<Ui>) -> Progress {
        Progress {
            ui,
            bars: Mutex::new(HashMap::new()),
            open: Mutex::new(HashMap::new()),
            highest: Mutex::new(HashMap::new()),
        }
    }

    /// Waits, at most `max`, until every progress token with a total reached it. rmcp hands
    /// notifications to their handler concurrently, so the last few sent before a response
    /// may be shown just after it: this keeps "4/4" from turning up after the result.
    pub async fn settle(&self, max: Duration) {
        let deadline = tokio::time::Instant::now() + max;
        loop {
            let pending = self
                .open
                .lock()
                .map(|open| open.values().any(|done| !done))
                .unwrap_or(false);
            if !pending || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A `notifications/progress` for `token`.
    pub fn update(&self, token: &str, progress: f64, total: Option<f64>, message: Option<&str>) {
        if let Ok(mut highest) = self.highest.lock() {
            let last = highest.entry(token.to_owned()).or_insert(f64::NEG_INFINITY);
            if progress <= *last {
                return;
            }
            *last = progress;
        }
        let mut text = match total {
            Some(total) => format!("{}/{}", number(progress), number(total)),
            None => number(progress),
        };
        if let Some(message) = message.filter(|m| !m.is_empty()) {
            text.push(' ');
            text.push_str(message);
        }
        if let (Some(total), Ok(mut open)) = (total, self.open.lock()) {
            open.insert(token.to_owned(), progress >= total);
        }
        if !self.ui.draws_bars() {
            self.ui.note(format!("progress {text}"));
            return;
        }
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        let (bar, last) = bars.entry(token.to_owned()).or_insert_with(|| {
            let bar = match total {
                Some(_) => ProgressBar::new(0).with_style(bar_style()),
                None => spinner(),
            };
            (self.ui.bars().add(bar), String::new())
        });
        if let Some(total) = total {
            bar.set_length(scaled(total));
        }
        bar.set_position(scaled(progress));
        bar.set_message(text.clone());
        *last = text;
    }

    /// A spinner for a wait that has no numbers (e.g. a URL the user is completing).
    pub fn waiting(&self, key: &str, text: String) {
        if !self.ui.draws_bars() {
            self.ui.note(text);
            return;
        }
        if let Ok(mut bars) = self.bars.lock() {
            let bar = self.ui.bars().add(spinner());
            bar.set_message(text.clone());
            bars.insert(key.to_owned(), (bar, text));
        }
    }

    /// Ends one bar or spinner, leaving `text` (or its last text) as a line on stderr.
    pub fn finish(&self, key: &str, text: Option<String>) {
        let entry = self.bars.lock().ok().and_then(|mut bars| bars.remove(key));
        match entry {
            Some((bar, last)) => self.retire(&bar, text.unwrap_or(last)),
            None => {
                if let Some(text) = text {
                    self.ui.note(text);
                }
            }
        }
    }

    /// Ends every bar (the call they belong to is over), leaving each as a final line.
    pub fn finish_all(&self) {
        if let Ok(mut open) = self.open.lock() {
            open.clear();
        }
        // A new session's client numbers its progress tokens from 0 again.
        if let Ok(mut highest) = self.highest.lock() {
            highest.clear();
        }
        let all: Vec<_> = match self.bars.lock() {
            Ok(mut bars) => bars.drain().collect(),
            Err(_) => return,
        };
        for (_, (bar, last)) in all {
            self.retire(&bar, last);
        }
    }

    fn retire(&self, bar: &ProgressBar, text: String) {
        let full = bar
            .length()
            .is_some_and(|len| len > 0 && bar.position() >= len);
        bar.finish_and_clear();
        self.ui.bars().remove(bar);
        let mark = if full { "done" } else { "stopped" };
        self.ui.note(format!("progress {text} [{mark}]"));
    }
}

fn scaled(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        (value * SCALE).round() as u64
    } else {
        0
    }
}

/// 4 → "4", 2.5 → "2.5".
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("[{bar:30}] {msg}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn spinner() -> ProgressBar {
    let style = ProgressStyle::with_template("{spinner} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let bar = ProgressBar::new_spinner().with_style(style);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_scaling() {
        assert_eq!(number(4.0), "4");
        assert_eq!(number(2.5), "2.5");
        assert_eq!(scaled(0.5), 500);
        assert_eq!(scaled(-1.0), 0);
        assert_eq!(scaled(f64::NAN), 0);
    }
}
