//! The bounded tail of one attempt's output: the last [`MAX_LINES`] lines and at most
//! [`MAX_BYTES`] bytes, with the time each line started, the stream offset its end stands at
//! (so chunks that arrive twice or out of order are appended once) and the stream-wide index of
//! its first line (so a follower knows which lines it has printed). Pure.

use std::collections::VecDeque;

/// Lines kept per attempt.
pub const MAX_LINES: usize = 500;
/// Bytes kept per attempt.
pub const MAX_BYTES: usize = 64 * 1024;

/// The last lines of an output stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tail {
    /// The kept text; starts at a line start. The last line may be incomplete (no newline).
    text: Vec<u8>,
    /// Unix second at which each kept line started (one per line, the incomplete one too).
    starts: VecDeque<i64>,
    /// Stream offset of the end of `text` (bytes of the stream seen so far, skipped included).
    end: u64,
    /// Stream-wide index of the first kept line.
    first_line: u64,
    /// Bytes of the stream that never arrived (the sender skipped ahead).
    skipped: u64,
}

/// What an [`Tail::append`] took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Appended {
    /// New bytes appended.
    pub new: u64,
    /// Bytes of the stream before the chunk that never arrived.
    pub skipped: u64,
}

impl Tail {
    /// An empty tail.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tail from stored parts (a ConfigMap): the text, each line's start time, the stream
    /// offset of its end, the index of its first line and the bytes skipped so far. Missing start
    /// times are taken as `0`, extra ones dropped; the result is trimmed to the bounds.
    pub fn from_parts(
        text: Vec<u8>,
        starts: Vec<i64>,
        end: u64,
        first_line: u64,
        skipped: u64,
    ) -> Self {
        let lines = line_count(&text);
        let mut starts: VecDeque<i64> = starts.into_iter().take(lines).collect();
        starts.resize(lines, 0);
        let mut t = Self {
            text,
            starts,
            end,
            first_line,
            skipped,
        };
        t.trim();
        t
    }

    /// The kept text.
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// Start time of each kept line.
    pub fn starts(&self) -> impl Iterator<Item = i64> + '_ {
        self.starts.iter().copied()
    }

    /// Stream offset of the end of the text.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Stream-wide index of the first kept line.
    pub fn first_line(&self) -> u64 {
        self.first_line
    }

    /// Stream-wide index one past the last kept line (the incomplete one included).
    pub fn next_line(&self) -> u64 {
        self.first_line + self.starts.len() as u64
    }

    /// Bytes of the stream that never arrived.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Whether the last kept line is incomplete.
    pub fn open_line(&self) -> bool {
        self.text.last().is_some_and(|&b| b != b'\n')
    }

    /// Appends the chunk that starts at stream offset `offset`, received at unix second `at`.
    /// Bytes before [`end`](Self::end) are known already and ignored; a chunk starting past it
    /// leaves a gap, marked with a line saying how much is missing.
    pub fn append(&mut self, offset: u64, bytes: &[u8], at: i64) -> Appended {
        let mut done = Appended::default();
        let chunk_end = offset.saturating_add(bytes.len() as u64);
        if chunk_end <= self.end {
            return done;
        }
        if offset > self.end {
            let missing = offset - self.end;
            self.close_line(at);
            self.push(
                format!("[runctl: {missing} bytes of output skipped]\n").as_bytes(),
                at,
            );
            self.skipped = self.skipped.saturating_add(missing);
            done.skipped = missing;
            self.end = offset;
        }
        let from = usize::try_from(self.end - offset).unwrap_or(bytes.len());
        let new = &bytes[from.min(bytes.len())..];
        self.push(new, at);
        self.end = chunk_end;
        done.new = new.len() as u64;
        self.trim();
        done
    }

    /// Appends one whole line (a provider's log line) at unix second `at`, on a line of its own;
    /// the stream offset moves by its length.
    pub fn push_line(&mut self, line: &str, at: i64) {
        self.close_line(at);
        let line = line.trim_end_matches(['\n', '\r']);
        self.push(line.as_bytes(), at);
        self.push(b"\n", at);
        self.end = self.end.saturating_add(line.len() as u64 + 1);
        self.trim();
    }

    /// Drops the last `n` bytes (held back from a write); the stream offset moves back with them.
    pub fn truncate_end(&mut self, n: usize) {
        let n = n.min(self.text.len());
        if n == 0 {
            return;
        }
        self.text.truncate(self.text.len() - n);
        self.end = self.end.saturating_sub(n as u64);
        let lines = line_count(&self.text);
        self.starts.truncate(lines);
    }

    /// Replaces the text with `f(text)`, which must keep every newline where it was relative to
    /// the lines (scrubbing within lines); line start times are kept.
    pub fn map_text(&mut self, f: impl FnOnce(&[u8]) -> Vec<u8>) {
        let mapped = f(&self.text);
        if line_count(&mapped) == self.starts.len() {
            self.text = mapped;
            self.trim();
        }
    }

    /// The kept lines with their start times (the last one may be incomplete).
    pub fn lines(&self) -> impl Iterator<Item = (i64, &[u8])> + '_ {
        self.text
            .split_inclusive(|&b| b == b'\n')
            .zip(self.starts.iter().copied())
            .map(|(l, t)| (t, l))
    }

    /// The last `n` lines, at most `max_bytes` bytes of them, as text without the final
    /// newline (the tail of a failed attempt, for its event).
    pub fn last_lines(&self, n: usize, max_bytes: usize) -> String {
        let lines: Vec<&[u8]> = self.text.split_inclusive(|&b| b == b'\n').collect();
        let mut out: Vec<u8> = Vec::new();
        for l in lines.iter().rev().take(n) {
            if out.len() + l.len() > max_bytes {
                if out.is_empty() {
                    out = l[l.len().saturating_sub(max_bytes)..].to_vec();
                }
                break;
            }
            let mut joined = l.to_vec();
            joined.extend_from_slice(&out);
            out = joined;
        }
        String::from_utf8_lossy(&out).trim_end().to_string()
    }

    /// Ends an incomplete last line, so that what comes next starts a line of its own.
    fn close_line(&mut self, at: i64) {
        if self.open_line() {
            self.push(b"\n", at);
        }
    }

    fn push(&mut self, bytes: &[u8], at: i64) {
        for &b in bytes {
            if self.text.is_empty() || self.text.last() == Some(&b'\n') {
                self.starts.push_back(at);
            }
            self.text.push(b);
        }
    }

    /// Drops whole lines from the front until the bounds hold; a single line longer than
    /// [`MAX_BYTES`] keeps its end.
    fn trim(&mut self) {
        let mut cut = 0;
        let mut dropped = 0u64;
        while self.starts.len() - dropped as usize > MAX_LINES || self.text.len() - cut > MAX_BYTES
        {
            match self.text[cut..].iter().position(|&b| b == b'\n') {
                Some(i) if cut + i + 1 < self.text.len() => {
                    cut += i + 1;
                    dropped += 1;
                }
                _ => {
                    // One line left: keep its last MAX_BYTES bytes (it stays the same line).
                    let over = (self.text.len() - cut).saturating_sub(MAX_BYTES);
                    cut += over;
                    break;
                }
            }
        }
        if cut > 0 {
            self.text.drain(..cut);
            self.starts.drain(..dropped as usize);
            self.first_line += dropped;
        }
    }
}

/// Lines in `text`, an incomplete last one included.
pub fn line_count(text: &[u8]) -> usize {
    let newlines = text.iter().filter(|&&b| b == b'\n').count();
    newlines + usize::from(text.last().is_some_and(|&b| b != b'\n'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &Tail) -> String {
        String::from_utf8_lossy(t.text()).into_owned()
    }

    #[test]
    fn chunks_join_into_lines_with_their_start_times() {
        let mut t = Tail::new();
        assert_eq!(t.append(0, b"one\ntw", 10).new, 6);
        assert_eq!(t.append(6, b"o\nthree\n", 20).new, 8);
        assert_eq!(text(&t), "one\ntwo\nthree\n");
        let lines: Vec<(i64, &[u8])> = t.lines().collect();
        assert_eq!(
            lines,
            vec![
                (10, &b"one\n"[..]),
                (10, &b"two\n"[..]),
                (20, &b"three\n"[..])
            ]
        );
        assert_eq!((t.end(), t.first_line(), t.next_line()), (14, 0, 3));
    }

    #[test]
    fn repeated_and_overlapping_chunks_are_appended_once() {
        let mut t = Tail::new();
        t.append(0, b"abc\n", 1);
        assert_eq!(t.append(0, b"abc\n", 1).new, 0, "a repeat");
        assert_eq!(t.append(2, b"c\ndef\n", 2).new, 4, "an overlap");
        assert_eq!(text(&t), "abc\ndef\n");
        assert_eq!(t.skipped(), 0);
    }

    #[test]
    fn a_gap_is_marked_on_a_line_of_its_own() {
        let mut t = Tail::new();
        t.append(0, b"start", 1);
        let a = t.append(100, b"later\n", 5);
        assert_eq!(
            a,
            Appended {
                new: 6,
                skipped: 95
            }
        );
        assert_eq!(
            text(&t),
            "start\n[runctl: 95 bytes of output skipped]\nlater\n"
        );
        assert_eq!(t.end(), 106);
        assert_eq!(t.skipped(), 95);
    }

    #[test]
    fn the_tail_keeps_the_last_lines_within_both_bounds() {
        let mut t = Tail::new();
        let mut off = 0;
        for i in 0..(MAX_LINES + 20) {
            let line = format!("line {i}\n");
            t.append(off, line.as_bytes(), i as i64);
            off += line.len() as u64;
        }
        assert_eq!(t.lines().count(), MAX_LINES);
        assert_eq!(t.first_line(), 20);
        assert!(text(&t).starts_with("line 20\n"));
        assert_eq!(t.starts().next(), Some(20));
        let mut big = Tail::new();
        let line = vec![b'x'; 1000];
        for i in 0..100u64 {
            let mut l = line.clone();
            l.push(b'\n');
            big.append(i * 1001, &l, 0);
        }
        assert!(big.text().len() <= MAX_BYTES);
        assert_eq!(big.text().len(), 65 * 1001, "whole lines only");
        let mut huge = Tail::new();
        huge.append(0, &vec![b'y'; MAX_BYTES + 10], 0);
        assert_eq!(huge.text().len(), MAX_BYTES, "one long line keeps its end");
        assert_eq!(huge.next_line(), 1);
    }

    #[test]
    fn provider_lines_and_held_back_bytes() {
        let mut t = Tail::new();
        t.push_line("pulling image\n", 3);
        t.push_line("step 1", 4);
        assert_eq!(text(&t), "pulling image\nstep 1\n");
        assert_eq!(t.end(), 21);
        t.append(21, b"partial", 5);
        t.truncate_end(3);
        assert_eq!(text(&t), "pulling image\nstep 1\npart");
        assert_eq!(t.end(), 25);
        t.truncate_end(4);
        assert_eq!(t.lines().count(), 2);
        assert_eq!(t.end(), 21);
    }

    #[test]
    fn parts_round_trip_and_last_lines_are_bounded() {
        let mut t = Tail::new();
        t.append(0, b"a\nb\nc\nd", 7);
        let back = Tail::from_parts(
            t.text().to_vec(),
            t.starts().collect(),
            t.end(),
            t.first_line(),
            t.skipped(),
        );
        assert_eq!(back, t);
        assert_eq!(t.last_lines(2, 100), "c\nd");
        assert_eq!(t.last_lines(10, 4), "c\nd");
        assert_eq!(t.last_lines(1, 0), "");
        let short = Tail::from_parts(b"x\ny\n".to_vec(), vec![1], 4, 0, 0);
        assert_eq!(short.starts().collect::<Vec<_>>(), vec![1, 0]);
    }
}
