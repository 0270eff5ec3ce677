//! Secret values out of shipped output: every value the workload got from a Secret (and the
//! attempt's callback token) is replaced by `***` before the text is stored, and a write holds
//! back the end of the text while it could be the start of such a value whose rest has not
//! arrived yet. Pure.

/// What replaces a secret value.
pub const MASK: &[u8] = b"***";
/// Values (or lines of multi-line values) shorter than this are not scrubbed: masking every
/// `1` or `true` would garble the output and protect nothing.
pub const MIN_LEN: usize = 4;

/// The byte strings to mask, longest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scrubber {
    needles: Vec<Vec<u8>>,
}

impl Scrubber {
    /// A scrubber of `values`. A value spanning several lines (a PEM key) is masked line by line,
    /// so masking never moves a newline.
    pub fn new<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> Self {
        let mut needles: Vec<Vec<u8>> = values
            .into_iter()
            .flat_map(|v| {
                v.as_ref()
                    .lines()
                    .map(|l| l.trim_end_matches('\r').as_bytes().to_vec())
                    .collect::<Vec<_>>()
            })
            .filter(|n| n.len() >= MIN_LEN)
            .collect();
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Self { needles }
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// `text` with every secret value masked.
    pub fn scrub(&self, text: &[u8]) -> Vec<u8> {
        let mut out = text.to_vec();
        for n in &self.needles {
            out = replace_all(&out, n, MASK);
        }
        out
    }

    /// How many bytes at the end of `text` could be the start of a secret value (to hold back
    /// until the rest arrives); 0 when none.
    pub fn hold_back(&self, text: &[u8]) -> usize {
        let mut held = 0;
        for n in &self.needles {
            let longest = (n.len() - 1).min(text.len());
            for k in (held + 1..=longest).rev() {
                if text[text.len() - k..] == n[..k] {
                    held = k;
                    break;
                }
            }
        }
        held
    }
}

fn replace_all(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_masked_wherever_they_appear() {
        let s = Scrubber::new(["hf_SECRET123", "SECRET", "1"]);
        assert_eq!(
            s.scrub(b"token=hf_SECRET123 and SECRET, 1 of 1"),
            b"token=*** and ***, 1 of 1".to_vec(),
            "the longest value first; short values are left alone"
        );
        let pem = Scrubber::new(["-----BEGIN KEY-----\nAAAABBBB\n-----END KEY-----"]);
        assert_eq!(
            pem.scrub(b"key:\n-----BEGIN KEY-----\nAAAABBBB\n-----END KEY-----\nok\n"),
            b"key:\n***\n***\n***\nok\n".to_vec(),
            "multi-line values line by line: the lines stay"
        );
        assert!(Scrubber::new(["ab"]).is_empty());
    }

    #[test]
    fn the_start_of_a_value_is_held_back() {
        let s = Scrubber::new(["hf_SECRET123"]);
        assert_eq!(s.hold_back(b"loading hf_SEC"), 6);
        assert_eq!(s.hold_back(b"loading h"), 1);
        assert_eq!(
            s.hold_back(b"loading hf_SECRET123"),
            0,
            "whole: masked, not held"
        );
        assert_eq!(s.hold_back(b"nothing\n"), 0);
        assert_eq!(s.hold_back(b""), 0);
        assert_eq!(Scrubber::default().hold_back(b"x"), 0);
    }
}
