//! Splitting a byte stream into lines with a bound on line length, so that a
//! child printing a 100 MB line without a newline cannot exhaust memory.

/// One line cut from a stream, without its line ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitLine {
    pub bytes: Vec<u8>,
    /// The line was longer than the cap; the rest up to its newline was dropped.
    pub truncated: bool,
}

#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    max: usize,
    /// Past the cap: drop bytes until the next newline.
    discarding: bool,
}

impl SplitLine {
    /// The line as text (invalid UTF-8 replaced), marked when it was cut.
    pub fn text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.truncated {
            text.push_str(" …[line cut]");
        }
        text
    }
}

impl LineSplitter {
    pub fn new(max_line_bytes: usize) -> Self {
        Self {
            buf: Vec::new(),
            max: max_line_bytes.max(1),
            discarding: false,
        }
    }

    /// Feeds a chunk; returns the lines it completed.
    pub fn push(&mut self, mut chunk: &[u8]) -> Vec<SplitLine> {
        let mut out = Vec::new();
        while !chunk.is_empty() {
            let nl = chunk.iter().position(|&b| b == b'\n');
            let (part, rest, ended) = match nl {
                Some(i) => (&chunk[..i], &chunk[i + 1..], true),
                None => (chunk, &[][..], false),
            };
            if !self.discarding {
                let room = self.max - self.buf.len();
                if part.len() > room {
                    self.buf.extend_from_slice(&part[..room]);
                    out.push(self.take(true));
                    self.discarding = true;
                } else {
                    self.buf.extend_from_slice(part);
                }
            }
            if ended {
                if self.discarding {
                    self.discarding = false;
                } else {
                    out.push(self.take(false));
                }
            }
            chunk = rest;
        }
        out
    }

    /// The last line of a stream that did not end with a newline.
    pub fn finish(&mut self) -> Option<SplitLine> {
        self.discarding = false;
        (!self.buf.is_empty()).then(|| self.take(false))
    }

    fn take(&mut self, truncated: bool) -> SplitLine {
        let mut bytes = std::mem::take(&mut self.buf);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        SplitLine { bytes, truncated }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: &[SplitLine]) -> Vec<String> {
        lines
            .iter()
            .map(|l| String::from_utf8_lossy(&l.bytes).into_owned())
            .collect()
    }

    #[test]
    fn lines_across_chunks() {
        let mut s = LineSplitter::new(100);
        assert_eq!(texts(&s.push(b"ab")), Vec::<String>::new());
        assert_eq!(texts(&s.push(b"c\nde\r\nf")), ["abc", "de"]);
        assert_eq!(s.finish().unwrap().bytes, b"f");
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn long_line_is_capped_and_the_rest_dropped() {
        let mut s = LineSplitter::new(10);
        let mut out = s.push(&[b'x'; 25]);
        out.extend(s.push(&vec![b'y'; 1_000_000]));
        out.extend(s.push(b"zz\nnext\n"));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].bytes, vec![b'x'; 10]);
        assert!(out[0].truncated);
        assert_eq!(
            out[1],
            SplitLine {
                bytes: b"next".to_vec(),
                truncated: false
            }
        );
        assert!(s.buf.capacity() < 1000, "memory stays bounded");
    }

    #[test]
    fn empty_lines_are_kept() {
        let mut s = LineSplitter::new(10);
        assert_eq!(texts(&s.push(b"\n\na\n")), ["", "", "a"]);
    }
}
