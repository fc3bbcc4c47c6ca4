//! Just enough of git's pkt-line framing to watch a push go by without buffering it: where the
//! commands of a push end (and the pack begins), whether the client reads side-band messages,
//! and whether an answer ended on a flush, so that a message can be slipped in before it.

/// Follows the top-level pkt-lines of a stream fed in pieces: `LLLL` (hex length, header
/// included) then the payload; `0000` is a flush, `0001` and `0002` are delimiters.
#[derive(Debug, Default, Clone)]
pub struct Framer {
    header: [u8; 4],
    have: usize,
    /// Payload bytes of the current packet still to come.
    remaining: usize,
    last_was_flush: bool,
    /// Not pkt-lines (an error page, a dumb-protocol answer): stop looking.
    broken: bool,
}

impl Framer {
    /// Follows `data`; calls `on_packet(offset_in_data, length, is_flush)` when a header
    /// completes. Returns how many bytes of `data` were consumed before `stop` returned true (all
    /// of them when it never did).
    fn feed_until(&mut self, data: &[u8], mut stop: impl FnMut(&Self) -> bool) -> usize {
        let mut i = 0;
        while i < data.len() && !self.broken {
            if stop(self) {
                return i;
            }
            if self.remaining > 0 {
                let n = self.remaining.min(data.len() - i);
                self.remaining -= n;
                i += n;
                continue;
            }
            self.header[self.have] = data[i];
            self.have += 1;
            i += 1;
            if self.have < 4 {
                continue;
            }
            self.have = 0;
            let Some(len) = std::str::from_utf8(&self.header).ok().and_then(|h| usize::from_str_radix(h, 16).ok())
            else {
                self.broken = true;
                break;
            };
            match len {
                0 => self.last_was_flush = true,
                1 | 2 => self.last_was_flush = false,
                3 => self.broken = true,
                n => {
                    self.last_was_flush = false;
                    self.remaining = n - 4;
                }
            }
        }
        if stop(self) { i } else { data.len() }
    }

    pub fn feed(&mut self, data: &[u8]) {
        self.feed_until(data, |_| false);
    }

    /// The stream so far is whole pkt-lines and its last one is a flush.
    pub fn ended_with_flush(&self) -> bool {
        !self.broken && self.have == 0 && self.remaining == 0 && self.last_was_flush
    }
}

/// Reads the start of a `git-receive-pack` request: the commands (`old new ref`, the first with
/// `\0capabilities`), up to the flush after which the pack comes.
#[derive(Debug, Default)]
pub struct Commands {
    framer: Framer,
    /// The first packet, while it arrives (its capabilities matter).
    first: Vec<u8>,
    /// Bytes of the command section, once its flush was seen.
    pub length: Option<u64>,
    seen: u64,
    /// The client reads side-band messages (`side-band` or `side-band-64k`).
    pub sideband: bool,
}

/// A command section longer than this is not one we read (it would be thousands of refs):
/// counting then starts at the first byte.
const MAX_COMMANDS: u64 = 1 << 20;

impl Commands {
    /// Follows the next piece of the request body.
    pub fn feed(&mut self, data: &[u8]) {
        if self.length.is_some() || self.seen > MAX_COMMANDS || self.framer.broken {
            return;
        }
        // The first packet's bytes (its header included), to read its capabilities.
        let mut offset = 0;
        while offset < data.len() {
            let want = if self.first.len() < 4 { 4 } else { first_len(&self.first) };
            if self.first.len() >= want {
                break;
            }
            let take = (want - self.first.len()).min(data.len() - offset);
            self.first.extend_from_slice(&data[offset..offset + take]);
            offset += take;
            if self.first.len() > 4 && self.first.len() == first_len(&self.first) {
                let payload = &self.first[4..];
                if let Some(nul) = payload.iter().position(|&b| b == 0) {
                    let caps = String::from_utf8_lossy(&payload[nul + 1..]);
                    self.sideband = caps.split_whitespace().any(|c| c == "side-band" || c == "side-band-64k");
                }
            }
        }
        let used = self.framer.feed_until(data, |f| f.ended_with_flush());
        self.seen += used as u64;
        if self.framer.ended_with_flush() {
            self.length = Some(self.seen);
        }
    }

    /// Pack bytes among the first `total` bytes of the body (0 while the commands still come).
    pub fn pack_bytes(&self, total: u64) -> u64 {
        match self.length {
            Some(commands) => total.saturating_sub(commands),
            None if self.seen > MAX_COMMANDS || self.framer.broken => total,
            None => 0,
        }
    }
}

fn first_len(first: &[u8]) -> usize {
    std::str::from_utf8(&first[..4.min(first.len())])
        .ok()
        .and_then(|h| usize::from_str_radix(h, 16).ok())
        .filter(|&n| n >= 4)
        .unwrap_or(4)
}

/// `text` as side-band progress packets (channel 2), which git prints as `remote: <line>`.
/// Lines stay under the 1000 bytes the old `side-band` allows.
pub fn sideband_message(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut rest = line;
        loop {
            let mut cut = rest.len().min(900);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (piece, tail) = rest.split_at(cut);
            out.extend_from_slice(format!("{:04x}\u{2}{piece}\n", piece.len() + 6).as_bytes());
            if tail.is_empty() {
                break;
            }
            rest = tail;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(s: &str) -> String {
        format!("{:04x}{s}", s.len() + 4)
    }

    #[test]
    fn given_pkt_lines_in_pieces_when_they_end_on_a_flush_then_the_framer_says_so() {
        let stream = format!("{}{}0000", pkt("\u{1}000eunpack ok\n0000"), pkt("\u{2}progress\n"));
        for split in 0..stream.len() {
            let mut f = Framer::default();
            f.feed(&stream.as_bytes()[..split]);
            f.feed(&stream.as_bytes()[split..]);
            assert!(f.ended_with_flush(), "split at {split}");
        }
        let mut f = Framer::default();
        f.feed(stream.trim_end_matches('0').as_bytes());
        assert!(!f.ended_with_flush());
        let mut f = Framer::default();
        f.feed(b"<html>not git</html>0000");
        assert!(!f.ended_with_flush(), "not pkt-lines");
    }

    #[test]
    fn given_a_push_request_when_fed_in_pieces_then_the_commands_and_the_pack_are_told_apart() {
        let zero = "0".repeat(40);
        let one = "1".repeat(40);
        let commands = format!(
            "{}{}0000",
            pkt(&format!("{zero} {one} refs/heads/main\0report-status side-band-64k agent=git/2.47\n")),
            pkt(&format!("{zero} {one} refs/heads/dev\n"))
        );
        let body = [commands.as_bytes(), b"PACK\0\0\0\x02\0\0\0\x01xxxxxxxx"].concat();
        for split in 0..body.len() {
            let mut c = Commands::default();
            c.feed(&body[..split]);
            c.feed(&body[split..]);
            assert_eq!(c.length, Some(commands.len() as u64), "split at {split}");
            assert!(c.sideband);
            assert_eq!(c.pack_bytes(body.len() as u64), 20);
        }
        let mut c = Commands::default();
        c.feed(&commands.as_bytes()[..10]);
        assert_eq!(c.pack_bytes(10), 0, "still reading the commands");
    }

    #[test]
    fn given_a_client_without_side_band_then_no_message_can_be_slipped_in() {
        let mut c = Commands::default();
        c.feed(
            format!("{}0000", pkt(&format!("{} {} refs/heads/x\0report-status\n", "0".repeat(40), "1".repeat(40))))
                .as_bytes(),
        );
        assert!(!c.sideband);
    }

    #[test]
    fn given_a_message_then_each_line_is_a_progress_packet() {
        let out = sideband_message("first\nsecond");
        assert_eq!(out, b"000b\x02first\n000c\x02second\n");
        let long = sideband_message(&"é".repeat(1000));
        let mut f = Framer::default();
        f.feed(&long);
        assert!(!f.broken && f.have == 0 && f.remaining == 0);
        assert!(long.len() > 2000 && long.len() < 2100);
    }
}
