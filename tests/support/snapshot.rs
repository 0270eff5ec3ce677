//! Snapshot assertions for whole command outputs: `tests/snapshots/<name>.txt` holds the
//! expected text; `RUNCTL_UPDATE_SNAPSHOTS=1` rewrites the files from the current outputs
//! (review the diff before committing). [`normalize`] replaces what a run cannot repeat (ages,
//! accrued amounts, the test's namespace) so the same snapshot holds on both API servers.

use std::path::PathBuf;

/// The environment variable that rewrites snapshots instead of comparing them.
pub const UPDATE_ENV: &str = "RUNCTL_UPDATE_SNAPSHOTS";

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.txt"))
}

/// Compares `text` with the snapshot `name` (or writes it under `RUNCTL_UPDATE_SNAPSHOTS=1`).
pub fn assert_snapshot(name: &str, text: &str) {
    let path = path(name);
    if std::env::var_os(UPDATE_ENV).is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "no snapshot {} ({e}); run with {UPDATE_ENV}=1 to write it. The output was:\n{text}",
            path.display()
        )
    });
    if want != text {
        let mut diff = String::new();
        let (w, t): (Vec<&str>, Vec<&str>) = (want.lines().collect(), text.lines().collect());
        for i in 0..w.len().max(t.len()) {
            match (w.get(i), t.get(i)) {
                (Some(a), Some(b)) if a == b => diff.push_str(&format!("  {a}\n")),
                (a, b) => {
                    if let Some(a) = a {
                        diff.push_str(&format!("- {a}\n"));
                    }
                    if let Some(b) = b {
                        diff.push_str(&format!("+ {b}\n"));
                    }
                }
            }
        }
        panic!(
            "output differs from the snapshot {} (- snapshot, + output; {UPDATE_ENV}=1 rewrites it):\n{diff}",
            path.display()
        );
    }
}

/// Whether `word` is an age as the commands print them (`5s`, `12m`, `3h20m`, `2d`).
fn is_age(word: &str) -> bool {
    let mut rest = word;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        let Some(unit) = rest[digits..].chars().next() else {
            return false;
        };
        if digits == 0 || !"smhd".contains(unit) {
            return false;
        }
        rest = &rest[digits + 1..];
        parts += 1;
    }
    parts > 0 && parts <= 2
}

/// Whether `word` is an amount of money (`$1.23`, `<$0.01`) rather than a price (`$1.23/h`).
fn is_amount(word: &str) -> bool {
    let w = word.trim_end_matches([',', ';', ')']);
    let w = w.strip_prefix("<").unwrap_or(w);
    w.strip_prefix('$')
        .is_some_and(|n| n.parse::<f64>().is_ok())
}

/// `text` with ages → `<age>`, amounts → `$<n>`, `ns` → `<ns>`, and runs of spaces inside a
/// line cut to two (columns align differently once values are replaced).
pub fn normalize(text: &str, ns: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let mut words = vec![];
        for chunk in line.trim_start().split("  ").filter(|c| !c.is_empty()) {
            let replaced: Vec<String> = chunk
                .trim()
                .split(' ')
                .map(|w| {
                    let bare = w.trim_start_matches('(');
                    if is_age(bare) {
                        format!("{}<age>", &w[..w.len() - bare.len()])
                    } else if is_amount(w) {
                        let tail: String =
                            w.chars().rev().take_while(|c| ",;)".contains(*c)).collect();
                        format!("$<n>{tail}")
                    } else {
                        w.replace(ns, "<ns>")
                    }
                })
                .collect();
            words.push(replaced.join(" "));
        }
        out.push_str(&" ".repeat(indent));
        out.push_str(&words.join("  "));
        out.push('\n');
    }
    out
}
