//! The one sanitiser every untrusted string goes through before it reaches a screen.
//!
//! dbt log lines, node names, messages and file paths are attacker-influenced: a model
//! name or a log message can carry escape sequences that move the cursor, clear the
//! screen, retitle the window, write the clipboard (OSC 52) or reorder text with bidi
//! controls. [`sanitize`] turns raw bytes into styled [`Segment`]s that are safe to
//! draw, for one logical line:
//!
//! * SGR colour/attribute sequences (`CSI … m`) are parsed into a [`TextStyle`]; the
//!   escape bytes themselves are never passed on.
//! * Every other escape sequence (CSI, OSC, DCS, SOS, PM, APC, plain `ESC x`) is
//!   dropped together with its payload. A sequence left unterminated at the end of the
//!   input swallows only what follows it.
//! * Tabs become spaces up to the next multiple of 8 output columns.
//! * Control characters are shown, never executed, using single-character
//!   placeholders so that one input character is one output column:
//!   - C0 controls U+0000–U+001F (except tab) → the Control Pictures block,
//!     U+2400 + code (`\r` → `␍`, BS → `␈`, BEL → `␇`, NUL → `␀`, LF → `␊`);
//!   - DEL U+007F → `␡` (U+2421);
//!   - C1 code points U+0080–U+009F that arrive as *valid* UTF-8 (e.g. `C2 9B`), bidi
//!     controls (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069) and the
//!     Unicode line/paragraph separators U+2028/U+2029 → `⍰` (U+2370). These are all
//!     invisible or layout-changing code points; one shared marker keeps the rule
//!     simple, and `⍰` is deliberately distinct from `�`.
//! * Invalid UTF-8 → U+FFFD per maximal invalid subsequence (the same rule as
//!   [`String::from_utf8_lossy`]); everything around it is kept.
//! * Raw 8-bit C1 bytes (0x9B CSI, 0x9D OSC, 0x90 DCS, …) are invalid UTF-8, so they
//!   become U+FFFD like any other bad byte and are *not* treated as sequence
//!   introducers: what follows them stays visible as inert text. Output is always
//!   UTF-8 and never contains the byte, so no terminal can act on it.
//! * Output is capped at `max_chars` visible characters; when anything visible is cut,
//!   `…` is appended (so at most `max_chars + 1` chars) and `truncated` is set.
//!
//! Implementation notes on vte 0.15 that shape the code below:
//! * vte reports a raw invalid byte in 0x80–0x9F through `execute`, exactly like a
//!   validly encoded U+0080–U+009F, so the two can't be told apart afterwards. We
//!   therefore decode UTF-8 ourselves first (`utf8_chunks`) and feed vte only valid
//!   UTF-8, with each invalid run replaced by the encoded U+FFFD.
//! * DEL arrives through `print`, not `execute`, so `print` must filter too.
//! * SOS/PM/APC have no callbacks at all, and DCS/OSC payloads only reach
//!   `put`/`osc_dispatch`; ignoring those callbacks is what drops the payloads.
//! * C0 controls inside a CSI are `execute`d mid-sequence (and shown here as
//!   placeholders); inside OSC/DCS/APC strings vte discards them.
//! * With the `std` feature vte buffers an OSC payload without limit, so memory use is
//!   bounded by the input size only; callers already bound line length.

use vte::{Params, ParamsIter, Parser, Perform};

/// Placeholder for invisible or layout-changing code points (C1, bidi, separators).
const INVISIBLE: char = '\u{2370}'; // ⍰
/// Placeholder for DEL, from the Control Pictures block.
const DEL_PICTURE: char = '\u{2421}'; // ␡
/// Start of the Control Pictures block; C0 code `n` is pictured at `CONTROL_PICTURES + n`.
const CONTROL_PICTURES: u32 = 0x2400;
/// Appended when visible output was cut at `max_chars`.
const ELLIPSIS: char = '\u{2026}'; // …
const TAB_WIDTH: usize = 8;
/// vte's ground state consumes everything up to the next ESC in one go; feeding it
/// bounded pieces lets a truncated parse stop within a few KiB instead of walking a
/// whole megabyte of text nobody will see.
const FEED_CHUNK: usize = 4096;
const REPLACEMENT_UTF8: &[u8] = "\u{FFFD}".as_bytes();

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Color {
    #[default]
    Reset,
    /// 0–255; 0–7 normal, 8–15 bright, 16–255 the xterm 256-colour cube and greys.
    Indexed(u8),
    Rgb(u8, u8, u8),
}

/// Text attributes parsed from SGR. `fg`/`bg` of `None` mean "inherit the widget's
/// colour": both SGR 0 and SGR 39/49 produce `None`, so text after an explicit
/// default-colour reset merges with unstyled text. The sanitiser never produces
/// [`Color::Reset`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TextStyle {
    pub fg: Option<Color>,
    pub bg: Option<Color>,
    pub bold: bool,
    pub dim: bool,
    pub italic: bool,
    pub underline: bool,
    pub reverse: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub text: String,
    pub style: TextStyle,
}

/// Sanitised, styled text. Segments are never empty and adjacent segments always
/// differ in style.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SafeText {
    pub segments: Vec<Segment>,
    pub truncated: bool,
}

impl SafeText {
    /// All segment texts concatenated, styles dropped.
    pub fn plain(&self) -> String {
        self.segments.iter().map(|s| s.text.as_str()).collect()
    }

    #[cfg(test)]
    fn char_len(&self) -> usize {
        self.segments.iter().map(|s| s.text.chars().count()).sum()
    }
}

/// Sanitise untrusted bytes for display (one logical line).
pub fn sanitize(bytes: &[u8], max_chars: usize) -> SafeText {
    let mut sink = Sink::new(max_chars);
    // A fresh parser per call: no escape state or style leaks from one line to the next.
    let mut parser = Parser::new();

    'input: for chunk in bytes.utf8_chunks() {
        for piece in bounded_pieces(chunk.valid(), FEED_CHUNK) {
            feed(&mut parser, &mut sink, piece.as_bytes());
            if sink.truncated {
                break 'input;
            }
        }
        if !chunk.invalid().is_empty() {
            // Fed through the parser (not pushed directly) so bad bytes inside an escape
            // sequence are swallowed with it, as a terminal would.
            feed(&mut parser, &mut sink, REPLACEMENT_UTF8);
            if sink.truncated {
                break 'input;
            }
        }
    }
    sink.finish()
}

/// Convenience: `sanitize(s.as_bytes(), max_chars).plain()`.
pub fn sanitize_plain(s: &str, max_chars: usize) -> String {
    sanitize(s.as_bytes(), max_chars).plain()
}

fn feed(parser: &mut Parser, sink: &mut Sink, bytes: &[u8]) {
    // The count of consumed bytes is irrelevant: parsing only stops early once the
    // output is truncated, and then the rest of the input is discarded anyway.
    let _consumed = parser.advance_until_terminated(sink, bytes);
}

/// Splits `s` into pieces of at most `max` bytes (`max >= 4`), on char boundaries so
/// every piece stays valid UTF-8 and vte never has to carry a partial code point.
fn bounded_pieces(s: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = max.min(rest.len());
        // A char is at most 4 bytes, so with max >= 4 this stops above zero.
        while end > 0 && !rest.is_char_boundary(end) {
            end -= 1;
        }
        if end == 0 {
            // Unreachable for max >= 4; take the whole rest rather than loop forever.
            end = rest.len();
        }
        let (head, tail) = rest.split_at(end);
        rest = tail;
        Some(head)
    })
}

/// The vte performer: collects visible characters into styled segments.
struct Sink {
    style: TextStyle,
    segments: Vec<Segment>,
    /// Visible chars emitted so far. Every placeholder is one char, so this is also the
    /// output column used for tab stops.
    emitted: usize,
    max_chars: usize,
    truncated: bool,
}

impl Sink {
    fn new(max_chars: usize) -> Self {
        Sink {
            style: TextStyle::default(),
            segments: Vec::new(),
            emitted: 0,
            max_chars,
            truncated: false,
        }
    }

    /// Route any character, from `print` or `execute`, to what is safe to show.
    fn push_char(&mut self, c: char) {
        match c {
            '\t' => {
                let spaces = TAB_WIDTH - self.emitted % TAB_WIDTH;
                for _ in 0..spaces {
                    self.push_visible(' ');
                }
            }
            '\u{0}'..='\u{1f}' => {
                let picture = char::from_u32(CONTROL_PICTURES + u32::from(c)).unwrap_or(INVISIBLE);
                self.push_visible(picture);
            }
            '\u{7f}' => self.push_visible(DEL_PICTURE),
            c if is_invisible_control(c) => self.push_visible(INVISIBLE),
            c => self.push_visible(c),
        }
    }

    fn push_visible(&mut self, c: char) {
        if self.truncated {
            return;
        }
        if self.emitted >= self.max_chars {
            // Something visible would exceed the cap: that is what "truncated" means.
            // Escape sequences after the last visible char don't count.
            self.truncated = true;
            return;
        }
        self.emitted += 1;
        let style = self.style;
        self.append(c, style);
    }

    /// Appends to the last segment when the style matches, which both merges adjacent
    /// same-style runs and means a style change with no text never creates a segment.
    fn append(&mut self, c: char, style: TextStyle) {
        match self.segments.last_mut() {
            Some(last) if last.style == style => last.text.push(c),
            _ => self.segments.push(Segment {
                text: String::from(c),
                style,
            }),
        }
    }

    fn finish(mut self) -> SafeText {
        if self.truncated {
            // The ellipsis is UI, not content, so it is drawn unstyled.
            self.append(ELLIPSIS, TextStyle::default());
        }
        SafeText {
            segments: self.segments,
            truncated: self.truncated,
        }
    }
}

/// C1 controls and code points that are invisible yet reorder or break the line.
fn is_invisible_control(c: char) -> bool {
    matches!(
        c,
        '\u{80}'..='\u{9f}'          // C1 controls (CSI, OSC, DCS, NEL, …)
        | '\u{061c}'                 // ARABIC LETTER MARK
        | '\u{200e}' | '\u{200f}'    // LRM, RLM
        | '\u{202a}'..='\u{202e}'    // LRE, RLE, PDF, LRO, RLO
        | '\u{2066}'..='\u{2069}'    // LRI, RLI, FSI, PDI
        | '\u{2028}' | '\u{2029}'    // LINE / PARAGRAPH SEPARATOR
    )
}

impl Perform for Sink {
    fn print(&mut self, c: char) {
        // vte hands DEL (and, on its partial-UTF-8 path, any char) to `print`, so
        // filtering happens here as well as in `execute`.
        self.push_char(c);
    }

    fn execute(&mut self, byte: u8) {
        // Only valid UTF-8 reaches vte, so 0x80–0x9F here is a genuine U+0080–U+009F.
        self.push_char(char::from(byte));
    }

    fn csi_dispatch(&mut self, params: &Params, intermediates: &[u8], ignore: bool, action: char) {
        // Private markers (`?`, `>`, …) arrive as intermediates: `CSI > 4 ; 1 m` is
        // xterm's modifyOtherKeys, not SGR. An overflowing parameter list is garbage.
        // Every other CSI is dropped by doing nothing.
        if action == 'm' && intermediates.is_empty() && !ignore {
            apply_sgr(&mut self.style, params);
        }
    }

    fn terminated(&self) -> bool {
        // Once the cap is hit nothing more can be shown; stop parsing.
        self.truncated
    }
}

fn apply_sgr(style: &mut TextStyle, params: &Params) {
    let mut iter = params.iter();
    while let Some(param) = iter.next() {
        // vte always yields at least one value per parameter; `ESC[m` arrives as `[0]`.
        let Some(&code) = param.first() else { continue };
        match code {
            0 => *style = TextStyle::default(),
            1 => style.bold = true,
            2 => style.dim = true,
            3 => style.italic = true,
            // `4:0` is "no underline"; `4:1`…`4:5` are underline variants.
            4 => style.underline = param.get(1).is_none_or(|&kind| kind != 0),
            7 => style.reverse = true,
            22 => {
                style.bold = false;
                style.dim = false;
            }
            23 => style.italic = false,
            24 => style.underline = false,
            27 => style.reverse = false,
            30..=37 => style.fg = Some(Color::Indexed(low_u8(code - 30))),
            38 => {
                if let Some(color) = extended_color(param, &mut iter) {
                    style.fg = Some(color);
                }
            }
            39 => style.fg = None,
            40..=47 => style.bg = Some(Color::Indexed(low_u8(code - 40))),
            48 => {
                if let Some(color) = extended_color(param, &mut iter) {
                    style.bg = Some(color);
                }
            }
            49 => style.bg = None,
            // Underline colour isn't part of TextStyle, but its operands must still be
            // consumed, or `58;5;3` would turn italic on.
            58 => {
                let _underline_color = extended_color(param, &mut iter);
            }
            90..=97 => style.fg = Some(Color::Indexed(low_u8(code - 90 + 8))),
            100..=107 => style.bg = Some(Color::Indexed(low_u8(code - 100 + 8))),
            _ => {}
        }
    }
}

/// Parses the colour after a 38/48. Colon form keeps everything in `param`
/// (`38:5:n`, `38:2:r:g:b`, or ITU `38:2:cs:r:g:b` with a colour-space id); the
/// semicolon form (`38;5;n`, `38;2;r;g;b`) spreads it over following parameters,
/// which are consumed from `rest` even if the colour turns out invalid, as xterm does.
fn extended_color(param: &[u16], rest: &mut ParamsIter<'_>) -> Option<Color> {
    if param.len() > 1 {
        return match param[1..] {
            [5, n, ..] => indexed(n),
            // ITU T.416 puts a colour-space id before r:g:b; xterm's short form doesn't.
            [2, _, r, g, b, ..] | [2, r, g, b] => rgb(r, g, b),
            _ => None,
        };
    }
    let mut next = || rest.next().and_then(|p| p.first().copied());
    match next()? {
        5 => indexed(next()?),
        2 => {
            let (r, g, b) = (next()?, next()?, next()?);
            rgb(r, g, b)
        }
        _ => None,
    }
}

fn indexed(n: u16) -> Option<Color> {
    u8::try_from(n).ok().map(Color::Indexed)
}

fn rgb(r: u16, g: u16, b: u16) -> Option<Color> {
    Some(Color::Rgb(
        u8::try_from(r).ok()?,
        u8::try_from(g).ok()?,
        u8::try_from(b).ok()?,
    ))
}

/// For SGR codes already range-checked by the match arm, so this never saturates.
fn low_u8(n: u16) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1000;

    fn plain(bytes: &[u8]) -> String {
        sanitize(bytes, MAX).plain()
    }

    fn styled(fg: Option<Color>) -> TextStyle {
        TextStyle {
            fg,
            ..TextStyle::default()
        }
    }

    fn seg(text: &str, style: TextStyle) -> Segment {
        Segment {
            text: text.to_string(),
            style,
        }
    }

    #[test]
    fn plain_ascii_passes_unchanged() {
        let out = sanitize(b"model.jaffle_shop.orders OK in 1.23s", MAX);
        assert_eq!(
            out.segments,
            vec![seg(
                "model.jaffle_shop.orders OK in 1.23s",
                TextStyle::default()
            )]
        );
        assert!(!out.truncated);
        assert_eq!(out.char_len(), 36);
    }

    #[test]
    fn empty_input_gives_no_segments() {
        assert_eq!(sanitize(b"", MAX), SafeText::default());
        assert_eq!(sanitize(b"\x1b[31m\x1b[0m", MAX), SafeText::default());
    }

    #[test]
    fn non_ascii_text_is_kept() {
        assert_eq!(sanitize_plain("héllo 日本 🦀", MAX), "héllo 日本 🦀");
    }

    #[test]
    fn sgr_red_then_reset_gives_two_segments() {
        let out = sanitize(b"\x1b[31mERROR\x1b[0m done", MAX);
        assert_eq!(
            out.segments,
            vec![
                seg("ERROR", styled(Some(Color::Indexed(1)))),
                seg(" done", TextStyle::default()),
            ]
        );
        assert_eq!(out.plain(), "ERROR done");
    }

    #[test]
    fn sgr_empty_params_is_reset() {
        let out = sanitize(b"\x1b[1;32mok\x1b[m.", MAX);
        let bold_green = TextStyle {
            fg: Some(Color::Indexed(2)),
            bold: true,
            ..TextStyle::default()
        };
        assert_eq!(
            out.segments,
            vec![seg("ok", bold_green), seg(".", TextStyle::default())]
        );
    }

    #[test]
    fn sgr_attributes_and_their_resets() {
        let out = sanitize(b"\x1b[1;2;3;4;7ma\x1b[22;23mb\x1b[24;27mc", MAX);
        let all = TextStyle {
            bold: true,
            dim: true,
            italic: true,
            underline: true,
            reverse: true,
            ..TextStyle::default()
        };
        let ul_rev = TextStyle {
            underline: true,
            reverse: true,
            ..TextStyle::default()
        };
        assert_eq!(
            out.segments,
            vec![
                seg("a", all),
                seg("b", ul_rev),
                seg("c", TextStyle::default())
            ]
        );
    }

    #[test]
    fn underline_colon_zero_turns_underline_off() {
        let out = sanitize(b"\x1b[4:3ma\x1b[4:0mb", MAX);
        let ul = TextStyle {
            underline: true,
            ..TextStyle::default()
        };
        assert_eq!(
            out.segments,
            vec![seg("a", ul), seg("b", TextStyle::default())]
        );
    }

    #[test]
    fn bright_and_background_and_default_colours() {
        let out = sanitize(b"\x1b[91;104ma\x1b[39mb\x1b[49mc\x1b[37;40md", MAX);
        assert_eq!(
            out.segments,
            vec![
                seg(
                    "a",
                    TextStyle {
                        fg: Some(Color::Indexed(9)),
                        bg: Some(Color::Indexed(12)),
                        ..TextStyle::default()
                    }
                ),
                seg(
                    "b",
                    TextStyle {
                        bg: Some(Color::Indexed(12)),
                        ..TextStyle::default()
                    }
                ),
                seg("c", TextStyle::default()),
                seg(
                    "d",
                    TextStyle {
                        fg: Some(Color::Indexed(7)),
                        bg: Some(Color::Indexed(0)),
                        ..TextStyle::default()
                    }
                ),
            ]
        );
    }

    #[test]
    fn sgr_256_colour_semicolon_and_colon() {
        let out = sanitize(b"\x1b[38;5;196ma\x1b[48:5:21mb", MAX);
        assert_eq!(
            out.segments,
            vec![
                seg("a", styled(Some(Color::Indexed(196)))),
                seg(
                    "b",
                    TextStyle {
                        fg: Some(Color::Indexed(196)),
                        bg: Some(Color::Indexed(21)),
                        ..TextStyle::default()
                    }
                ),
            ]
        );
    }

    #[test]
    fn sgr_truecolour_semicolon_and_colon_forms() {
        let rgb = styled(Some(Color::Rgb(255, 128, 0)));
        assert_eq!(
            sanitize(b"\x1b[38;2;255;128;0mx", MAX).segments,
            vec![seg("x", rgb)]
        );
        assert_eq!(
            sanitize(b"\x1b[38:2:255:128:0mx", MAX).segments,
            vec![seg("x", rgb)]
        );
        // ITU form with an (empty) colour-space id.
        assert_eq!(
            sanitize(b"\x1b[38:2::255:128:0mx", MAX).segments,
            vec![seg("x", rgb)]
        );
        let out = sanitize(b"\x1b[48;2;1;2;3;1mx", MAX);
        assert_eq!(
            out.segments,
            vec![seg(
                "x",
                TextStyle {
                    bg: Some(Color::Rgb(1, 2, 3)),
                    bold: true,
                    ..TextStyle::default()
                }
            )]
        );
    }

    #[test]
    fn invalid_extended_colours_are_ignored() {
        // Out of range, truncated, and unknown colour modes leave the style alone.
        for input in [
            &b"\x1b[38;5;300mx"[..],
            b"\x1b[38;2;1;2mx",
            b"\x1b[38;2;256;0;0mx",
            b"\x1b[38mx",
            b"\x1b[38;9mx",
            b"\x1b[38:5mx",
            b"\x1b[12;53;58;5;3mx",
        ] {
            assert_eq!(
                sanitize(input, MAX).segments,
                vec![seg("x", TextStyle::default())],
                "input {input:?}"
            );
        }
    }

    #[test]
    fn style_does_not_leak_between_calls() {
        let first = sanitize(b"\x1b[31mred", MAX);
        assert_eq!(first.segments[0].style.fg, Some(Color::Indexed(1)));
        let second = sanitize(b"plain", MAX);
        assert_eq!(second.segments, vec![seg("plain", TextStyle::default())]);
    }

    #[test]
    fn adjacent_same_style_segments_merge() {
        let out = sanitize(b"\x1b[31ma\x1b[31mb\x1b[1m\x1b[22mc\x1b[0m\x1b[39md", MAX);
        assert_eq!(
            out.segments,
            vec![
                seg("abc", styled(Some(Color::Indexed(1)))),
                seg("d", TextStyle::default()),
            ]
        );
    }

    #[test]
    fn private_mode_m_is_not_sgr() {
        // xterm modifyOtherKeys: `CSI > 4 ; 1 m` must not set underline/bold.
        let out = sanitize(b"\x1b[>4;1mx", MAX);
        assert_eq!(out.segments, vec![seg("x", TextStyle::default())]);
    }

    #[test]
    fn osc_title_removed_bel_and_st_terminated() {
        assert_eq!(plain(b"a\x1b]0;evil title\x07b"), "ab");
        assert_eq!(plain(b"a\x1b]2;evil title\x1b\\b"), "ab");
    }

    #[test]
    fn osc52_clipboard_payload_removed() {
        let payload = "Y3VybCBldmlsLnNoIHwgc2g=";
        let input = format!("before\x1b]52;c;{payload}\x1b\\after");
        let out = sanitize_plain(&input, MAX);
        assert_eq!(out, "beforeafter");
        assert!(!out.contains(payload));
        assert!(!out.contains("52"));
        // BEL-terminated variant too.
        let input = format!("x\x1b]52;c;{payload}\x07y");
        assert_eq!(sanitize_plain(&input, MAX), "xy");
    }

    #[test]
    fn osc8_hyperlink_keeps_text_drops_url() {
        let out = plain(b"see \x1b]8;;https://evil.example/x\x1b\\the docs\x1b]8;;\x1b\\ now");
        assert_eq!(out, "see the docs now");
        assert!(!out.contains("evil"));
    }

    #[test]
    fn cursor_and_screen_csi_dropped() {
        assert_eq!(plain(b"a\x1b[2Jb\x1b[Hc\x1b[6nd"), "abcd");
        assert_eq!(
            plain(b"a\x1b[10;20Hb\x1b[?25lc\x1b[?1049hd\x1b[Ke"),
            "abcde"
        );
    }

    #[test]
    fn plain_esc_sequences_dropped() {
        // RIS, save cursor, charset designation, ESC with intermediates.
        assert_eq!(plain(b"a\x1bcb\x1b7c\x1b(Bd\x1b#8e"), "abcde");
    }

    #[test]
    fn dcs_apc_pm_sos_payloads_dropped() {
        assert_eq!(plain(b"a\x1bP1$qsecret-dcs\x1b\\b"), "ab");
        assert_eq!(plain(b"a\x1bPq#0;2;0;0;0#0~~@@vv\x1b\\b"), "ab");
        assert_eq!(plain(b"a\x1b_Gsecret-apc\x1b\\b"), "ab");
        assert_eq!(plain(b"a\x1b^secret-pm\x1b\\b"), "ab");
        assert_eq!(plain(b"a\x1bXsecret-sos\x1b\\b"), "ab");
    }

    #[test]
    fn raw_c1_bytes_become_replacement_char() {
        // Raw 0x9B is invalid UTF-8: replaced, and not an introducer, so "31m" stays
        // as inert text.
        assert_eq!(plain(b"a\x9b31mb"), "a\u{FFFD}31mb");
        assert_eq!(plain(b"a\x9d0;t\x07b"), "a\u{FFFD}0;t\u{2407}b");
        assert_eq!(plain(b"a\x90x\x9cb"), "a\u{FFFD}x\u{FFFD}b");
    }

    #[test]
    fn utf8_encoded_c1_becomes_visible_placeholder() {
        let out = sanitize_plain("\u{9b}31m", MAX);
        assert_eq!(out, "\u{2370}31m");
        assert_eq!(
            sanitize_plain("a\u{85}b\u{9d}c", MAX),
            "a\u{2370}b\u{2370}c"
        );
        assert!(!out.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c)));
    }

    #[test]
    fn c0_and_del_shown_as_control_pictures() {
        assert_eq!(plain(b"a\rb"), "a\u{240d}b"); // ␍
        assert_eq!(plain(b"a\x08b"), "a\u{2408}b"); // ␈
        assert_eq!(plain(b"a\x07b"), "a\u{2407}b"); // ␇
        assert_eq!(plain(b"a\x00b"), "a\u{2400}b"); // ␀
        assert_eq!(plain(b"a\x7fb"), "a\u{2421}b"); // ␡
        assert_eq!(plain(b"a\nb"), "a\u{240a}b"); // ␊
        assert_eq!(plain(b"a\x1fb"), "a\u{241f}b");
        // CAN aborts a sequence and is itself shown.
        assert_eq!(plain(b"a\x1b[31\x18b"), "a\u{2418}b");
    }

    #[test]
    fn tabs_expand_to_multiples_of_eight() {
        assert_eq!(plain(b"a\tb"), format!("a{}b", " ".repeat(7)));
        assert_eq!(plain(b"\tx"), format!("{}x", " ".repeat(8)));
        assert_eq!(plain(b"12345678\tx"), format!("12345678{}x", " ".repeat(8)));
        assert_eq!(plain(b"a\t\tb"), format!("a{}b", " ".repeat(15)));
        // Columns count output chars: escapes take none, a placeholder takes one,
        // a multi-byte char takes one.
        assert_eq!(
            plain(b"\x1b[31ma\x1b[0m\tb"),
            format!("a{}b", " ".repeat(7))
        );
        assert_eq!(plain(b"\r\tb"), format!("\u{240d}{}b", " ".repeat(7)));
        assert_eq!(sanitize_plain("é\tb", MAX), format!("é{}b", " ".repeat(7)));
    }

    #[test]
    fn bidi_controls_shown_as_placeholder() {
        let out = sanitize_plain("evil\u{202e}txt.exe", MAX);
        assert_eq!(out, "evil\u{2370}txt.exe");
        for c in [
            '\u{061c}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}',
            '\u{202e}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{2028}', '\u{2029}',
        ] {
            assert_eq!(
                sanitize_plain(&format!("a{c}b"), MAX),
                "a\u{2370}b",
                "{c:?}"
            );
        }
    }

    #[test]
    fn invalid_utf8_in_middle_keeps_both_sides() {
        assert_eq!(plain(b"abc\xffdef"), "abc\u{FFFD}def");
        // A truncated 3-byte sequence is one replacement, like from_utf8_lossy.
        assert_eq!(plain(b"abc\xe2\x82def"), "abc\u{FFFD}def");
        assert_eq!(plain(b"\xc0\xafx"), "\u{FFFD}\u{FFFD}x");
        // Invalid bytes right before and after an escape.
        assert_eq!(plain(b"a\xe2\x1b[31mb\xff"), "a\u{FFFD}b\u{FFFD}");
        for input in [
            &b"abc\xe2\x82def"[..],
            b"\xf0\x9f\x92x\xed\xa0\x80y",
            b"\xc0\xafx",
        ] {
            assert_eq!(plain(input), String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn invalid_utf8_inside_escape_is_swallowed_with_it() {
        assert_eq!(plain(b"a\x1b]0;\xff\xfe\x07b"), "ab");
        assert_eq!(plain(b"a\x1b[\xff31mb").as_str(), "ab");
    }

    #[test]
    fn truncation_appends_ellipsis_and_sets_flag() {
        let out = sanitize(b"abcdef", 3);
        assert_eq!(out.plain(), "abc\u{2026}");
        assert!(out.truncated);
        assert_eq!(out.char_len(), 4);

        // Exactly at the cap is not truncated, even with trailing escapes.
        let out = sanitize(b"abc\x1b[0m", 3);
        assert_eq!(out.plain(), "abc");
        assert!(!out.truncated);

        let out = sanitize(b"abc", 0);
        assert_eq!(out.plain(), "\u{2026}");
        assert!(out.truncated);

        // A tab is cut mid-expansion like any other run of spaces.
        let out = sanitize(b"a\tb", 4);
        assert_eq!(out.plain(), "a   \u{2026}");
    }

    #[test]
    fn ellipsis_is_unstyled() {
        let out = sanitize(b"\x1b[31mabcdef", 2);
        assert_eq!(
            out.segments,
            vec![
                seg("ab", styled(Some(Color::Indexed(1)))),
                seg("\u{2026}", TextStyle::default()),
            ]
        );
    }

    #[test]
    fn one_megabyte_input_is_capped() {
        // How long this takes is measured by scripts/bench-flood.sh, not here.
        let input = vec![b'x'; 1 << 20];
        let out = sanitize(&input, 500);
        assert!(out.truncated);
        assert!(out.char_len() <= 501);
        assert_eq!(out.plain(), format!("{}\u{2026}", "x".repeat(500)));

        // Dense escapes and multi-byte text, still bounded.
        let mut input = Vec::new();
        while input.len() < 1 << 20 {
            input.extend_from_slice("\x1b[31mé\x1b]0;t\x07\t".as_bytes());
        }
        let out = sanitize(&input, 500);
        assert!(out.truncated);
        assert!(out.char_len() <= 501);
    }

    #[test]
    fn unterminated_escape_at_end_keeps_earlier_text() {
        for input in [
            &b"hello \x1b"[..],
            b"hello \x1b[",
            b"hello \x1b[31;",
            b"hello \x1b]0;title without end",
            b"hello \x1b]52;c;QUJD",
            b"hello \x1bP1$q",
            b"hello \x1b_payload",
            b"hello \xe2\x82",
        ] {
            let out = plain(input);
            assert!(out.starts_with("hello "), "{input:?} -> {out:?}");
            assert!(!out.contains("title") && !out.contains("QUJD") && !out.contains("payload"));
        }
        assert_eq!(plain(b"hello \x1b]0;title"), "hello ");
        assert_eq!(plain(b"hello \xe2\x82"), "hello \u{FFFD}");
    }

    /// Minimal LCG (Numerical Recipes constants): deterministic, no extra crates.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            // High bits of an LCG are the well-distributed ones.
            u32::try_from(self.0 >> 33).unwrap_or(0)
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next()).unwrap_or(0) % n
        }
    }

    fn is_forbidden(c: char) -> bool {
        c <= '\u{1f}' || ('\u{7f}'..='\u{9f}').contains(&c) || is_invisible_control(c)
    }

    #[test]
    fn random_bytes_never_yield_controls() {
        // Biased towards bytes that start, continue or end escape sequences and that
        // form (in)valid UTF-8, so the random inputs actually reach the tricky paths.
        const INTERESTING: &[u8] = b"\x1b\x1b\x1b[[]]\\;;:0123456789mmHJPX^_\x07\x08\t\r\n\x00\x7f\
            \x18\x1a\x80\x85\x90\x9b\x9c\x9d\x9f\xc2\xc2\xe2\x80\xae\xd8\x9c\xff\xf0\x9f";
        let mut rng = Lcg(0x5eed_0fdb);
        for round in 0..2000 {
            let len = rng.below(200);
            let bytes: Vec<u8> = (0..len)
                .map(|_| match rng.below(3) {
                    0 => INTERESTING[rng.below(INTERESTING.len())],
                    1 => b'a' + u8::try_from(rng.below(26)).unwrap_or(0),
                    _ => u8::try_from(rng.below(256)).unwrap_or(0),
                })
                .collect();
            let max_chars = rng.below(120);
            let out = sanitize(&bytes, max_chars);
            let text = out.plain();
            assert!(
                !text.chars().any(is_forbidden),
                "round {round}: {bytes:?} -> {text:?}"
            );
            assert!(out.char_len() <= max_chars + 1, "round {round}: {bytes:?}");
            assert_eq!(
                out.truncated,
                text.ends_with('\u{2026}') && out.char_len() == max_chars + 1
            );
            assert!(out.segments.iter().all(|s| !s.text.is_empty()));
            assert!(out.segments.windows(2).all(|w| w[0].style != w[1].style));
        }
    }
}
