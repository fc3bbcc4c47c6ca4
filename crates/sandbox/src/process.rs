//! A process started in a sandbox: its output as lines, its exit.

use std::os::unix::process::ExitStatusExt as _;

use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::Child;
use tokio::sync::mpsc;

use crate::Error;

/// Longer lines are cut here (the rest up to the newline is dropped): an app printing without newlines
/// must not grow the platform's memory.
pub const MAX_LINE: usize = 8 * 1024;
/// Lines buffered before the app blocks writing to its pipe (until the receiver catches up).
const BUFFERED_LINES: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`, as logs name them.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub stream: Stream,
    /// Without its line ending; invalid UTF-8 replaced by U+FFFD.
    pub text: String,
}

/// How a sandboxed command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// The command's exit code. A command killed by a signal inside the sandbox (an OOM kill included) shows as
    /// 128 + the signal, because bwrap, not the command, is what the platform waits for.
    Code(i32),
    /// The sandbox's launcher itself was killed with this signal (e.g. by [`Process::kill`]).
    Signal(i32),
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }
}

#[derive(Debug)]
pub struct Process {
    child: Child,
    lines: Option<mpsc::Receiver<LogLine>>,
}

impl Process {
    pub(crate) fn new(mut child: Child) -> Process {
        let (tx, rx) = mpsc::channel(BUFFERED_LINES);
        // Each reader holds a sender: the channel closes when both streams have closed.
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(read_lines(stdout, Stream::Stdout, tx.clone()));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(read_lines(stderr, Stream::Stderr, tx));
        }
        Process { child, lines: Some(rx) }
    }

    /// The output, stdout and stderr interleaved as they arrive; the receiver ends when both streams are closed
    /// (which may be after `wait` returns, if the command left background processes holding them).
    /// The first call takes the receiver; later calls get one that is already closed. Dropping the receiver is
    /// fine: the output is then read and discarded, so the app never blocks on a full pipe.
    pub fn lines(&mut self) -> mpsc::Receiver<LogLine> {
        self.lines.take().unwrap_or_else(|| mpsc::channel(1).1)
    }

    /// Waits for the command to end; may be called again, returning the same status.
    pub async fn wait(&mut self) -> Result<ExitStatus, Error> {
        let status = self.child.wait().await.map_err(|e| Error::io("waiting for a sandboxed process", e))?;
        Ok(match (status.code(), status.signal()) {
            (Some(code), _) => ExitStatus::Code(code),
            (None, Some(signal)) => ExitStatus::Signal(signal),
            (None, None) => ExitStatus::Code(-1),
        })
    }

    /// Kills this command and whatever it started inside the sandbox (SIGKILL to its launcher, which takes the
    /// sandbox's processes down through bwrap's `--die-with-parent`). Other commands of the sandbox keep running.
    pub fn kill(&mut self) -> Result<(), Error> {
        self.child.start_kill().map_err(|e| Error::io("killing a sandboxed process", e))
    }

    /// The pid (host view) of the launcher: a root shell in the sandbox's cgroups whose child is the outer bwrap;
    /// the command itself runs further down, in the sandbox's pid namespace. `None` once it was waited for.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// Sends `pipe`'s lines to `tx`, each cut at [`MAX_LINE`] bytes, so that output without line
/// breaks cannot grow memory; also for host commands whose output goes to a log.
pub async fn read_lines(pipe: impl AsyncRead + Unpin, stream: Stream, tx: mpsc::Sender<LogLine>) {
    let mut reader = BufReader::with_capacity(2 * MAX_LINE, pipe);
    let mut line = Vec::with_capacity(256);
    let mut receiver_gone = false;
    loop {
        let buf = match reader.fill_buf().await {
            Ok(buf) => buf,
            Err(e) => {
                tracing::debug!(error = %e, ?stream, "reading sandbox output failed");
                break;
            }
        };
        if buf.is_empty() {
            if !line.is_empty() && !receiver_gone {
                let _ = tx.send(to_line(stream, &line)).await;
            }
            break;
        }
        let newline = buf.iter().position(|&b| b == b'\n');
        let chunk = &buf[..newline.unwrap_or(buf.len())];
        let room = MAX_LINE.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let consumed = chunk.len() + usize::from(newline.is_some());
        reader.consume(consumed);
        if newline.is_some() {
            if !receiver_gone && tx.send(to_line(stream, &line)).await.is_err() {
                receiver_gone = true;
            }
            line.clear();
        }
    }
}

fn to_line(stream: Stream, bytes: &[u8]) -> LogLine {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    LogLine { stream, text: String::from_utf8_lossy(bytes).into_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(input: &'static [u8]) -> Vec<String> {
        let (tx, mut rx) = mpsc::channel(16);
        read_lines(input, Stream::Stdout, tx).await;
        let mut out = Vec::new();
        while let Some(line) = rx.recv().await {
            out.push(line.text);
        }
        out
    }

    #[tokio::test]
    async fn lines_are_split_cut_and_made_valid_utf8() {
        assert_eq!(lines_of(b"a\r\nb\n\nlast").await, ["a", "b", "", "last"]);
        assert_eq!(lines_of(b"caf\xe9\n").await, ["caf\u{fffd}"]);
        let long: &'static [u8] = Box::leak([vec![b'x'; 3 * MAX_LINE], b"\nnext\n".to_vec()].concat().into());
        let lines = lines_of(long).await;
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), MAX_LINE);
        assert_eq!(lines[1], "next");
    }
}
