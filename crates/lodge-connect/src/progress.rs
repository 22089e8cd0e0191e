//! Live progress: one bar per progress token (with the server's message and total), and
//! spinners for waits such as a URL elicitation. Without a terminal on stderr, each update
//! is a line instead.

use super::ui::Ui;
use indicatif::{ProgressBar, ProgressStyle};
use rmcp::RoleClient;
use rmcp::model::{JsonRpcMessage, ServerNotification};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Progress values are floats; bars count in thousandths.
const SCALE: f64 = 1000.0;

pub struct Progress {
    ui: Arc<Ui>,
    /// Key (progress token or wait id) → bar and its last text.
    bars: Mutex<HashMap<String, (ProgressBar, String)>>,
    /// Progress notifications the transport received ([`CountProgress`]) and those
    /// [`update`](Self::update) has shown. rmcp hands each notification to its handler as
    /// a task of its own, so a response can be seen before the updates sent ahead of it.
    arrived: AtomicU64,
    shown: AtomicU64,
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
            arrived: AtomicU64::new(0),
            shown: AtomicU64::new(0),
            highest: Mutex::new(HashMap::new()),
        }
    }

    /// Waits, at most `max`, until every progress notification received so far is shown,
    /// so that the last updates sent before a response ("4/4") are not shown after it.
    /// Returns at once when none is on its way.
    pub async fn settle(&self, max: Duration) {
        let deadline = tokio::time::Instant::now() + max;
        while self.shown.load(Ordering::Acquire) < self.arrived.load(Ordering::Acquire)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// A `notifications/progress` for `token`.
    pub fn update(&self, token: &str, progress: f64, total: Option<f64>, message: Option<&str>) {
        self.show(token, progress, total, message);
        self.shown.fetch_add(1, Ordering::Release);
    }

    fn show(&self, token: &str, progress: f64, total: Option<f64>, message: Option<&str>) {
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

    /// Removes every bar without a line of its own: a 2026-07-28 call's round ended in
    /// `input_required`, and its progress goes on in the next round, under a new token.
    pub fn clear(&self) {
        for (bar, _) in self.take_bars() {
            self.remove(&bar);
        }
    }

    /// Ends every bar (the call they belong to is over), leaving each as a final line.
    pub fn finish_all(&self) {
        // A new session's client numbers its progress tokens from 0 again.
        if let Ok(mut highest) = self.highest.lock() {
            highest.clear();
        }
        for (bar, last) in self.take_bars() {
            self.retire(&bar, last);
        }
    }

    /// Every bar and its last text, no longer tracked.
    fn take_bars(&self) -> Vec<(ProgressBar, String)> {
        self.bars
            .lock()
            .map(|mut bars| bars.drain().map(|(_, entry)| entry).collect())
            .unwrap_or_default()
    }

    fn remove(&self, bar: &ProgressBar) {
        bar.finish_and_clear();
        self.ui.bars().remove(bar);
    }

    fn retire(&self, bar: &ProgressBar, text: String) {
        let full = bar
            .length()
            .is_some_and(|len| len > 0 && bar.position() >= len);
        self.remove(bar);
        let mark = if full { "done" } else { "stopped" };
        self.ui.note(format!("progress {text} [{mark}]"));
    }
}

/// A session's transport that counts the progress notifications it receives, in the
/// order they come and before rmcp dispatches them, for [`Progress::settle`].
pub struct CountProgress<T> {
    inner: T,
    progress: Arc<Progress>,
}

impl<T> CountProgress<T> {
    pub fn new(inner: T, progress: Arc<Progress>) -> Self {
        CountProgress { inner, progress }
    }
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for CountProgress<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        let message = self.inner.receive().await?;
        if let JsonRpcMessage::Notification(n) = &message
            && matches!(n.notification, ServerNotification::ProgressNotification(_))
        {
            self.progress.arrived.fetch_add(1, Ordering::Release);
        }
        Some(message)
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
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

    #[tokio::test]
    async fn settle_waits_for_every_update_received_and_no_longer() {
        let progress = Arc::new(Progress::new(Arc::new(Ui::new())));
        let start = std::time::Instant::now();
        progress.settle(Duration::from_secs(5)).await;
        assert!(start.elapsed() < Duration::from_secs(1), "none on its way");

        // Two updates received, shown later by their handlers.
        progress.arrived.fetch_add(2, Ordering::Release);
        let handlers = progress.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            handlers.update("\"t\"", 1.0, Some(2.0), None);
            tokio::time::sleep(Duration::from_millis(50)).await;
            handlers.update("\"t\"", 2.0, Some(2.0), None);
        });
        let start = std::time::Instant::now();
        progress.settle(Duration::from_secs(5)).await;
        assert!(start.elapsed() >= Duration::from_millis(100));
        assert!(start.elapsed() < Duration::from_secs(4));
        assert_eq!(progress.shown.load(Ordering::Acquire), 2);

        // A handler that never runs holds the result back only so long.
        progress.arrived.fetch_add(1, Ordering::Release);
        let start = std::time::Instant::now();
        progress.settle(Duration::from_millis(100)).await;
        assert!(start.elapsed() >= Duration::from_millis(100));
    }
}
