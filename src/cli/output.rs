//! How the commands print: aligned tables that fit a terminal, colour only on a terminal, ages
//! and money in one format, and a progress line on standard error while a command waits. The
//! time is an input ([`Out::now`]), so a test renders a whole output and compares it with a
//! snapshot.

use std::io::{IsTerminal, Write};

use jiff::{SignedDuration, Timestamp};

/// Where a command writes, and how.
pub struct Out {
    w: Box<dyn Write + Send>,
    /// Colour (standard output is a terminal and `NO_COLOR` is unset).
    pub color: bool,
    /// Progress lines on standard error (it is a terminal).
    pub progress: bool,
    /// The time the output is relative to (ages, periods).
    pub now: Timestamp,
    /// Terminal width; tables drop their widest free-text column's tail beyond it.
    pub width: usize,
}

/// The colours the output uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    /// Succeeded, ready, ok.
    Good,
    /// Pending, provisioning, suspended, warnings.
    Wait,
    /// Failed, errors.
    Bad,
    /// Headers.
    Dim,
}

impl Out {
    /// Standard output, coloured when it is a terminal.
    pub fn stdout() -> Self {
        let tty = std::io::stdout().is_terminal();
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(if tty { 120 } else { usize::MAX });
        Self {
            w: Box::new(std::io::stdout()),
            color: tty && std::env::var_os("NO_COLOR").is_none(),
            progress: std::io::stderr().is_terminal(),
            now: Timestamp::now(),
            width,
        }
    }

    /// A buffer with no colour and no progress (tests); read it with [`Buffer::text`].
    pub fn buffer(now: Timestamp) -> (Self, Buffer) {
        let buf = Buffer::default();
        (
            Self {
                w: Box::new(buf.clone()),
                color: false,
                progress: false,
                now,
                width: usize::MAX,
            },
            buf,
        )
    }

    /// Writes `text` as is.
    pub fn write(&mut self, text: &str) -> std::io::Result<()> {
        self.w.write_all(text.as_bytes())
    }

    /// Writes `text` and a newline.
    pub fn line(&mut self, text: &str) -> std::io::Result<()> {
        self.w.write_all(text.as_bytes())?;
        self.w.write_all(b"\n")?;
        self.w.flush()
    }

    /// `text` in `tone` when colour is on.
    pub fn paint(&self, text: &str, tone: Tone) -> String {
        if !self.color || text.is_empty() {
            return text.to_string();
        }
        let code = match tone {
            Tone::Good => "32",
            Tone::Wait => "33",
            Tone::Bad => "31",
            Tone::Dim => "2",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    /// A progress line on standard error (overwritten by the next), when it is a terminal.
    pub fn progress(&self, text: &str) {
        if self.progress {
            eprint!("\r\x1b[2K{text}");
            let _ = std::io::stderr().flush();
        }
    }

    /// Clears the progress line.
    pub fn progress_done(&self) {
        if self.progress {
            eprint!("\r\x1b[2K");
        }
    }

    /// Writes `table`, its columns aligned.
    pub fn table(&mut self, table: &Table) -> std::io::Result<()> {
        let text = table.render(self);
        self.write(&text)
    }

    /// The age of `t` as kubectl prints it (`45s`, `12m`, `3h20m`, `5d`), `<unknown>` if absent.
    pub fn age(&self, t: Option<Timestamp>) -> String {
        match t {
            Some(t) => duration(self.now.duration_since(t)),
            None => "<unknown>".into(),
        }
    }
}

/// A shared, clonable byte buffer behind [`Out::buffer`].
#[derive(Clone, Default)]
pub struct Buffer(std::sync::Arc<parking_lot::Mutex<Vec<u8>>>);

impl Buffer {
    /// What was written, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }
}

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A duration as kubectl prints ages: the two largest units, no fractions.
pub fn duration(d: SignedDuration) -> String {
    let s = d.as_secs().max(0);
    match s {
        0..120 => format!("{s}s"),
        120..3_600 => format!("{}m", s / 60),
        3_600..86_400 => {
            let (h, m) = (s / 3_600, (s % 3_600) / 60);
            if m == 0 || h >= 8 {
                format!("{h}h")
            } else {
                format!("{h}h{m}m")
            }
        }
        _ => {
            let (d, h) = (s / 86_400, (s % 86_400) / 3_600);
            if h == 0 || d >= 8 {
                format!("{d}d")
            } else {
                format!("{d}d{h}h")
            }
        }
    }
}

/// Dollars with cents (`$1.23`); below a cent, `<$0.01`; absent, `-`.
pub fn money(usd: Option<f64>) -> String {
    match usd {
        None => "-".into(),
        Some(v) if v > 0.0 && v < 0.005 => "<$0.01".into(),
        Some(v) => format!("${v:.2}"),
    }
}

/// A price per hour (`$1.23/h`), `-` when absent.
pub fn per_hour(usd: Option<f64>) -> String {
    match usd {
        None => "-".into(),
        Some(v) => format!("${v:.2}/h"),
    }
}

/// `-` for an absent or empty value.
pub fn or_dash(v: Option<impl AsRef<str>>) -> String {
    match v {
        Some(v) if !v.as_ref().is_empty() => v.as_ref().to_string(),
        _ => "-".into(),
    }
}

/// A table: a header row and rows of cells, each cell with an optional tone.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<(String, Option<Tone>)>>,
    indent: usize,
}

impl Table {
    /// A table with these column headers.
    pub fn new(header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            ..Self::default()
        }
    }

    /// The table indented by `n` spaces (sections of `describe`).
    pub fn indented(mut self, n: usize) -> Self {
        self.indent = n;
        self
    }

    /// Adds a row of plain cells.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows
            .push(cells.into_iter().map(|c| (c.into(), None)).collect());
    }

    /// Adds a row whose cells may carry a tone.
    pub fn toned_row(&mut self, cells: Vec<(String, Option<Tone>)>) {
        self.rows.push(cells);
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The aligned text: columns two spaces apart, the last column unpadded and cut to the
    /// output's width.
    pub fn render(&self, out: &Out) -> String {
        let cols = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, (cell, _)) in row.iter().enumerate().take(cols) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut text = String::new();
        let pad = " ".repeat(self.indent);
        let header: Vec<(String, Option<Tone>)> = self
            .header
            .iter()
            .map(|h| (h.to_string(), Some(Tone::Dim)))
            .collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = pad.clone();
            let mut visible = self.indent;
            for (i, (cell, tone)) in row.iter().enumerate().take(cols) {
                let last = i + 1 == cols;
                let mut cell = cell.clone();
                if last && visible + cell.chars().count() > out.width {
                    let keep = out.width.saturating_sub(visible + 1).max(8);
                    if cell.chars().count() > keep {
                        cell = cell.chars().take(keep).collect::<String>() + "…";
                    }
                }
                let shown = cell.chars().count();
                line.push_str(&match tone {
                    Some(t) => out.paint(&cell, *t),
                    None => cell,
                });
                visible += shown;
                if !last {
                    let fill = widths[i] - shown + 2;
                    line.push_str(&" ".repeat(fill));
                    visible += fill;
                }
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        let d = |s: i64| duration(SignedDuration::from_secs(s));
        assert_eq!(d(5), "5s");
        assert_eq!(d(119), "119s");
        assert_eq!(d(600), "10m");
        assert_eq!(d(3_600 + 20 * 60), "1h20m");
        assert_eq!(d(9 * 3_600 + 5), "9h");
        assert_eq!(d(86_400 * 2 + 3_600 * 3), "2d3h");
        assert_eq!(d(86_400 * 30), "30d");
        assert_eq!(d(-5), "0s");
    }

    #[test]
    fn money_has_cents_and_a_floor() {
        assert_eq!(money(Some(1.234)), "$1.23");
        assert_eq!(money(Some(0.001)), "<$0.01");
        assert_eq!(money(Some(0.0)), "$0.00");
        assert_eq!(money(None), "-");
        assert_eq!(per_hour(Some(2.5)), "$2.50/h");
    }

    #[test]
    fn tables_align_and_cut_the_last_column_to_the_width() {
        let (mut out, buf) = Out::buffer(Timestamp::UNIX_EPOCH);
        out.width = 31;
        let mut t = Table::new(&["NAME", "PHASE", "MESSAGE"]);
        t.row(["a", "Running", "short"]);
        t.row([
            "longer-name",
            "Failed",
            "a message far too long for thirty columns",
        ]);
        out.table(&t).unwrap();
        assert_eq!(
            buf.text(),
            "NAME         PHASE    MESSAGE\n\
             a            Running  short\n\
             longer-name  Failed   a messag…\n"
        );
    }

    #[test]
    fn colour_only_when_asked() {
        let (mut out, _) = Out::buffer(Timestamp::UNIX_EPOCH);
        assert_eq!(out.paint("x", Tone::Bad), "x");
        out.color = true;
        assert_eq!(out.paint("x", Tone::Bad), "\x1b[31mx\x1b[0m");
    }
}
