//! Deployment logs: what one line may weigh and how fast one log may be written.
//!
//! Every tenant's logs share the `LOGS` stream, and the app writing them is a stranger's code.
//! Three bounds keep one app from crowding out the others: a line is cut at [`MAX_LOG_LINE`]
//! bytes (the stream refuses larger messages as a backstop), a log keeps its last 1000 lines
//! (`max_msgs_per_subject`, which discards that log's own oldest lines, never another's), and
//! a [`LogSink`] writes at most [`LogRate::DEFAULT`]: lines beyond it are dropped and counted,
//! and one line says how many.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use events::{DeploymentId, LogKind, LogLine};

use crate::Bus;

/// The longest line a log keeps, in bytes once written as JSON (what the stream stores): the
/// sandbox cuts an app's lines at the same length.
pub const MAX_LOG_LINE: usize = 8 * 1024;

/// Lines a failure reason quotes.
pub const FAILURE_TAIL: usize = 30;

/// Lines the `LOGS` stream keeps per log (its `max_msgs_per_subject`).
pub const LOG_LINES_KEPT: u64 = 1000;

/// The shortest time between two "lines dropped" notices of one log.
const NOTICE_EVERY: Duration = Duration::from_secs(1);

/// How fast one deployment's log may be written: a token bucket.
///
/// The default, 500 lines at once and then 50 a second, lets a build print the few hundred
/// lines an install prints at once, and a server log a line per request at a steady 50
/// requests a second; an app writing without pause is held to 50 lines a second (at most
/// 400 KiB/s at the longest lines), and its last 1000 lines still span 20 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRate {
    /// Lines written at once after a quiet spell (the bucket's size).
    pub burst: u32,
    /// Lines a second, sustained (the bucket's refill); at least 1.
    pub per_second: u32,
}

impl LogRate {
    pub const DEFAULT: Self = Self { burst: 500, per_second: 50 };
}

impl Default for LogRate {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What to do with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Admission {
    /// Write the line (else drop it).
    pub write: bool,
    /// Write first a notice that this many lines were dropped.
    pub notice: Option<u64>,
}

/// A token bucket that counts what it refuses. Pure: the caller passes the time.
#[derive(Debug, Clone)]
pub(crate) struct Limiter {
    rate: LogRate,
    tokens: f64,
    last: Instant,
    /// Lines dropped since the last notice.
    dropped: u64,
    last_notice: Option<Instant>,
}

impl Limiter {
    pub fn new(rate: LogRate, now: Instant) -> Self {
        Self { rate, tokens: f64::from(rate.burst), last: now, dropped: 0, last_notice: None }
    }

    /// Takes a token for one line, or counts it as dropped. When a line is written after
    /// some were dropped, a notice goes first, at most one every [`NOTICE_EVERY`]: a log
    /// flooded without pause gets one notice a second, not one per line.
    pub fn admit(&mut self, now: Instant) -> Admission {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * f64::from(self.rate.per_second.max(1))).min(f64::from(self.rate.burst));
        if self.tokens < 1.0 {
            self.dropped += 1;
            return Admission { write: false, notice: None };
        }
        self.tokens -= 1.0;
        let due = self.last_notice.is_none_or(|t| now.saturating_duration_since(t) >= NOTICE_EVERY);
        let notice = (self.dropped > 0 && due).then(|| self.take_dropped(now));
        Admission { write: true, notice }
    }

    /// The dropped lines not yet told, when the log ends or is flushed.
    pub fn pending(&mut self, now: Instant) -> Option<u64> {
        (self.dropped > 0).then(|| self.take_dropped(now))
    }

    fn take_dropped(&mut self, now: Instant) -> u64 {
        self.last_notice = Some(now);
        std::mem::take(&mut self.dropped)
    }

    pub fn notice(&self, what: &str, dropped: u64) -> String {
        let LogRate { burst, per_second } = self.rate;
        let s = if dropped == 1 { "" } else { "s" };
        format!(
            "{dropped} {what} line{s} dropped (rate limit: {burst} lines at once, then {per_second} lines/s per \
             deployment log): log less, or write details to a file"
        )
    }
}

/// `text` cut so that, written as a JSON string, it takes at most [`MAX_LOG_LINE`] bytes (a
/// cut line ends in `…`).
pub fn cap_line(text: String) -> String {
    fn escaped(c: char) -> usize {
        match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        }
    }
    if text.len() * 6 <= MAX_LOG_LINE {
        return text;
    }
    let budget = MAX_LOG_LINE - '…'.len_utf8();
    let (mut used, mut cut_at) = (0, None);
    for (i, c) in text.char_indices() {
        used += escaped(c);
        if used > budget && cut_at.is_none() {
            cut_at = Some(i);
        }
        if let (true, Some(at)) = (used > MAX_LOG_LINE, cut_at) {
            let mut cut = text;
            cut.truncate(at);
            cut.push('…');
            return cut;
        }
    }
    text
}

/// Writes one deployment log: every line goes to JetStream as it happens, within the log's
/// [`LogRate`], and the last few stay in memory so that a failure can quote them.
#[derive(Debug)]
pub struct LogSink {
    bus: Bus,
    deployment: DeploymentId,
    kind: LogKind,
    tail: VecDeque<String>,
    /// The app's lines and the platform's own have a bucket each: a flooding app cannot
    /// crowd out the platform's account of what happened. A lock, not a field, because
    /// `flush` (which tells what was dropped) takes `&self`.
    limits: std::sync::Mutex<Limits>,
}

#[derive(Debug)]
struct Limits {
    app: Limiter,
    platform: Limiter,
}

impl Limits {
    fn of(&mut self, stream: &str) -> (&mut Limiter, &'static str) {
        if stream == "platform" { (&mut self.platform, "platform") } else { (&mut self.app, "output") }
    }
}

impl LogSink {
    pub fn new(bus: Bus, deployment: DeploymentId, kind: LogKind) -> Self {
        Self::with_rate(bus, deployment, kind, LogRate::DEFAULT)
    }

    pub fn with_rate(bus: Bus, deployment: DeploymentId, kind: LogKind, rate: LogRate) -> Self {
        let now = Instant::now();
        let limits = Limits { app: Limiter::new(rate, now), platform: Limiter::new(rate, now) };
        Self { bus, deployment, kind, tail: VecDeque::new(), limits: std::sync::Mutex::new(limits) }
    }

    /// Writes one line of `stream` (`stdout`, `stderr`, `platform`), cut at [`MAX_LOG_LINE`];
    /// beyond the log's rate it is dropped (and still kept in the in-memory tail).
    pub async fn line(&mut self, stream: &str, text: impl Into<String>) {
        let text = cap_line(text.into());
        if self.tail.len() == FAILURE_TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(text.clone());
        let (admission, notice) = {
            let limits = self.limits.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
            let (limiter, what) = limits.of(stream);
            let admission = limiter.admit(Instant::now());
            (admission, admission.notice.map(|n| limiter.notice(what, n)))
        };
        if let Some(notice) = notice {
            self.publish("platform", notice).await;
        }
        if admission.write {
            self.publish(stream, text).await;
        }
    }

    async fn publish(&self, stream: &str, text: String) {
        let line = LogLine { at: chrono::Utc::now(), stream: stream.to_owned(), text };
        if let Err(e) = self.bus.publish_log(self.deployment, self.kind, &line).await {
            tracing::warn!(deployment = %self.deployment, error = %e, "a log line was not published");
        }
    }

    /// A line written by the platform itself (plan, commands, outcome).
    pub async fn platform(&mut self, text: impl Into<String>) {
        self.line("platform", text).await;
    }

    /// The last lines written (at most [`FAILURE_TAIL`]), dropped or not.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }

    /// Says how many lines were dropped since the last notice, then waits until everything
    /// written reached the server.
    pub async fn flush(&self) {
        let notices: Vec<String> = {
            let mut limits = self.limits.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            let Limits { app, platform } = &mut *limits;
            [(app, "output"), (platform, "platform")]
                .into_iter()
                .filter_map(|(limiter, what)| limiter.pending(now).map(|n| limiter.notice(what, n)))
                .collect()
        };
        for notice in notices {
            self.publish("platform", notice).await;
        }
        let _ = self.bus.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: LogRate = LogRate { burst: 5, per_second: 10 };

    fn run(limiter: &mut Limiter, now: Instant, lines: usize) -> (usize, Vec<u64>) {
        let mut written = 0;
        let mut notices = vec![];
        for _ in 0..lines {
            let a = limiter.admit(now);
            written += usize::from(a.write);
            notices.extend(a.notice);
        }
        (written, notices)
    }

    #[test]
    fn given_a_fresh_log_when_a_burst_arrives_then_the_bucket_passes_its_size_and_drops_the_rest() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(RATE, t0);
        assert_eq!(run(&mut limiter, t0, 12), (5, vec![]));
        assert_eq!(limiter.pending(t0), Some(7));
        assert_eq!(limiter.pending(t0), None, "told once");
    }

    #[test]
    fn given_dropped_lines_when_writing_resumes_then_one_notice_counts_them() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(RATE, t0);
        run(&mut limiter, t0, 12);
        // 100 ms refill one token at 10 lines/s.
        let a = limiter.admit(t0 + Duration::from_millis(100));
        assert_eq!(a, Admission { write: true, notice: Some(7) });
        assert_eq!(limiter.admit(t0 + Duration::from_millis(100)), Admission { write: false, notice: None });
    }

    #[test]
    fn given_an_endless_flood_then_notices_come_at_most_once_a_second() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(RATE, t0);
        let (mut written, mut notices) = (0, vec![]);
        // 10 s of 1000 lines a second.
        for ms in 0..10_000u64 {
            let (w, n) = run(&mut limiter, t0 + Duration::from_millis(ms), 1);
            written += w;
            notices.extend(n);
        }
        notices.extend(limiter.pending(t0 + Duration::from_secs(10)));
        assert!((100..=106).contains(&written), "burst + 10 lines/s for 10 s: {written}");
        assert!((9..=11).contains(&notices.len()), "{notices:?}");
        assert_eq!(notices.iter().sum::<u64>() + written as u64, 10_000, "every dropped line is counted once");
    }

    #[test]
    fn given_a_quiet_spell_then_the_bucket_refills_only_to_its_size() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(RATE, t0);
        run(&mut limiter, t0, 5);
        assert_eq!(run(&mut limiter, t0 + Duration::from_secs(3600), 20).0, 5);
    }

    #[test]
    fn given_a_long_line_then_it_is_cut_to_the_limit_as_json() {
        assert_eq!(cap_line("short".into()), "short");
        let exact = "x".repeat(MAX_LOG_LINE);
        assert_eq!(cap_line(exact.clone()), exact);
        let long = cap_line("é".repeat(MAX_LOG_LINE));
        assert!(long.len() <= MAX_LOG_LINE && long.ends_with('…'), "{}", long.len());
        // Control characters take six bytes each in JSON.
        let controls = cap_line("\u{1}".repeat(MAX_LOG_LINE));
        let json = serde_json::to_string(&controls).unwrap();
        assert!(json.len() <= MAX_LOG_LINE + 2, "{}", json.len());
    }

    #[test]
    fn given_dropped_lines_then_the_notice_names_the_count_and_the_limit() {
        let limiter = Limiter::new(LogRate::DEFAULT, Instant::now());
        let text = limiter.notice("output", 4500);
        assert!(
            text.starts_with("4500 output lines dropped (rate limit: 500 lines at once, then 50 lines/s"),
            "{text}"
        );
        assert!(limiter.notice("platform", 1).starts_with("1 platform line dropped"));
    }
}
