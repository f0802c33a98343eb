#!/usr/bin/env python3
"""Render a `tmux capture-pane -e -p` dump (text with SGR escapes) to a PNG.

    render_capture.py INPUT.txt OUTPUT.png [--cols N] [--rows N] [--font-size PX]

The picture is a monospace cell grid on a dark background with an xterm-like
palette. SGR colours (16, 256, truecolour) and attributes (bold, dim, italic,
underline, reverse, strike) are honoured; every other escape sequence is ignored.
Box-drawing and block characters are drawn as shapes, not glyphs, so borders and
bars join up from cell to cell. Needs only Pillow.
"""

import argparse
import functools
import os
import shutil
import subprocess
import sys

from PIL import Image, ImageDraw, ImageFont

# ---------------------------------------------------------------- colours

DEFAULT_BG = (0x1E, 0x1E, 0x2E)
DEFAULT_FG = (0xCD, 0xD6, 0xF4)

_BASE16 = [
    (0x45, 0x47, 0x5A),  # black
    (0xF3, 0x8B, 0xA8),  # red
    (0xA6, 0xE3, 0xA1),  # green
    (0xF9, 0xE2, 0xAF),  # yellow
    (0x89, 0xB4, 0xFA),  # blue
    (0xCB, 0xA6, 0xF7),  # magenta
    (0x89, 0xDC, 0xEB),  # cyan
    (0xBA, 0xC2, 0xDE),  # white
    (0x6C, 0x70, 0x86),  # bright black
    (0xF7, 0xA8, 0xBF),  # bright red
    (0xC0, 0xF0, 0xBB),  # bright green
    (0xFC, 0xEC, 0xC6),  # bright yellow
    (0xA8, 0xC8, 0xFC),  # bright blue
    (0xDB, 0xC2, 0xFA),  # bright magenta
    (0xA9, 0xE8, 0xF2),  # bright cyan
    (0xE6, 0xEA, 0xF6),  # bright white
]


def _palette256():
    pal = list(_BASE16)
    levels = [0, 95, 135, 175, 215, 255]
    for r in range(6):
        for g in range(6):
            for b in range(6):
                pal.append((levels[r], levels[g], levels[b]))
    for i in range(24):
        v = 8 + 10 * i
        pal.append((v, v, v))
    return pal


PALETTE = _palette256()


def blend(a, b, t):
    """a*(1-t) + b*t."""
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b))


def resolve(colour, default):
    if colour is None:
        return default
    if isinstance(colour, int):
        return PALETTE[colour & 0xFF]
    return colour


# ---------------------------------------------------------------- parsing


class Attr:
    __slots__ = ("fg", "bg", "bold", "dim", "italic", "underline", "reverse", "strike")

    def __init__(self):
        self.reset()

    def reset(self):
        self.fg = None
        self.bg = None
        self.bold = self.dim = self.italic = False
        self.underline = self.reverse = self.strike = False

    def key(self):
        return (self.fg, self.bg, self.bold, self.dim, self.italic,
                self.underline, self.reverse, self.strike)


def _int(s, default=0):
    try:
        return int(s) if s != "" else default
    except ValueError:
        return default


def _ext_colour(parts):
    """Colour from the sub-parameters after 38/48/58: ['5', n] or ['2', (cs,) r, g, b]."""
    if not parts:
        return None
    if parts[0] == "5" and len(parts) >= 2:
        return _int(parts[1]) & 0xFF
    if parts[0] == "2" and len(parts) >= 4:
        r, g, b = (max(0, min(255, _int(p))) for p in parts[-3:])
        return (r, g, b)
    return None


def apply_sgr(attr, params):
    if params == "":
        attr.reset()
        return
    items = params.split(";")
    i = 0
    while i < len(items):
        item = items[i]
        i += 1
        if ":" in item:
            sub = item.split(":")
            code = _int(sub[0])
            if code in (38, 48, 58):
                colour = _ext_colour(sub[1:])
                if code == 38:
                    attr.fg = colour
                elif code == 48:
                    attr.bg = colour
            elif code == 4:
                attr.underline = _int(sub[1] if len(sub) > 1 else "1", 1) != 0
            continue
        code = _int(item)
        if code in (38, 48, 58):
            # 38;5;n or 38;2;r;g;b
            mode = items[i] if i < len(items) else ""
            if mode == "5":
                colour = _ext_colour(items[i:i + 2])
                i += 2
            elif mode == "2":
                colour = _ext_colour(items[i:i + 4])
                i += 4
            else:
                colour = None
                i += 1
            if code == 38:
                attr.fg = colour
            elif code == 48:
                attr.bg = colour
        elif code == 0:
            attr.reset()
        elif code == 1:
            attr.bold = True
        elif code == 2:
            attr.dim = True
        elif code == 3:
            attr.italic = True
        elif code in (4, 21):
            attr.underline = True
        elif code == 7:
            attr.reverse = True
        elif code == 9:
            attr.strike = True
        elif code == 22:
            attr.bold = attr.dim = False
        elif code == 23:
            attr.italic = False
        elif code == 24:
            attr.underline = False
        elif code == 27:
            attr.reverse = False
        elif code == 29:
            attr.strike = False
        elif 30 <= code <= 37:
            attr.fg = code - 30
        elif code == 39:
            attr.fg = None
        elif 40 <= code <= 47:
            attr.bg = code - 40
        elif code == 49:
            attr.bg = None
        elif 90 <= code <= 97:
            attr.fg = code - 90 + 8
        elif 100 <= code <= 107:
            attr.bg = code - 100 + 8
        # anything else (blink, conceal, overline, fonts, ...) is ignored


def parse(text):
    """Rows of cells (char, attr key). The SGR state carries across lines, as in a terminal."""
    rows = []
    attr = Attr()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for line in lines:
        row = []
        col = 0
        i = 0
        n = len(line)

        def put(ch):
            nonlocal col
            while len(row) < col:
                row.append((" ", attr.key()))
            if col < len(row):
                row[col] = (ch, attr.key())
            else:
                row.append((ch, attr.key()))
            col += 1

        while i < n:
            c = line[i]
            if c == "\x1b":
                i += 1
                if i >= n:
                    break
                k = line[i]
                if k == "[":  # CSI
                    i += 1
                    start = i
                    while i < n and "\x30" <= line[i] <= "\x3f":
                        i += 1
                    params = line[start:i]
                    inter_start = i
                    while i < n and "\x20" <= line[i] <= "\x2f":
                        i += 1
                    inter = line[inter_start:i]
                    if i < n:
                        final = line[i]
                        i += 1
                        if final == "m" and not inter and (params[:1] not in "<=>?" or params == ""):
                            apply_sgr(attr, params)
                elif k in "]PX^_":  # OSC / DCS / SOS / PM / APC: up to BEL or ST
                    i += 1
                    while i < n:
                        if line[i] == "\x07":
                            i += 1
                            break
                        if line[i] == "\x1b" and i + 1 < n and line[i + 1] == "\\":
                            i += 2
                            break
                        i += 1
                elif k in "()*+-./#%":  # charset designation and the like: one more byte
                    i += 2
                else:
                    i += 1
                continue
            if c == "\t":
                for _ in range(8 - col % 8):
                    put(" ")
            elif c == "\r":
                col = 0
            elif c == "\b":
                col = max(0, col - 1)
            elif ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0:
                pass
            else:
                put(c)
            i += 1
        rows.append(row)
    return rows


# ---------------------------------------------------------------- fonts

REGULAR = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf"


def fc_match(pattern):
    if not shutil.which("fc-match"):
        return None
    try:
        out = subprocess.run(["fc-match", "-f", "%{file}", pattern],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out if out and os.path.isfile(out) else None


def font_paths():
    regular = REGULAR if os.path.isfile(REGULAR) else fc_match("monospace")
    if not regular:
        sys.exit("render_capture: no monospace font found (install fonts-dejavu-core)")
    bold = BOLD if os.path.isfile(BOLD) else None
    if regular != REGULAR or not bold:
        bold = fc_match("monospace:bold") or regular
    stem = regular[:-4] if regular.lower().endswith(".ttf") else None
    italic = bold_italic = None
    if stem:
        for cand in (stem + "-Oblique.ttf", stem + "-Italic.ttf"):
            if os.path.isfile(cand):
                italic = cand
                break
        bstem = bold[:-4] if bold.lower().endswith(".ttf") else stem + "-Bold"
        for cand in (bstem + "Oblique.ttf", bstem + "Italic.ttf",
                     stem + "-BoldOblique.ttf", stem + "-BoldItalic.ttf"):
            if os.path.isfile(cand):
                bold_italic = cand
                break
    return regular, bold, italic or regular, bold_italic or bold


class Fonts:
    def __init__(self, size):
        self.size = size
        regular, bold, italic, bold_italic = font_paths()
        self.faces = {
            (False, False): ImageFont.truetype(regular, size),
            (True, False): ImageFont.truetype(bold, size),
            (False, True): ImageFont.truetype(italic, size),
            (True, True): ImageFont.truetype(bold_italic, size),
        }
        base = self.faces[(False, False)]
        ascent, descent = base.getmetrics()
        self.ascent = ascent
        self.cell_h = ascent + descent
        self.cell_w = max(1, int(round(base.getlength("M"))))
        # A private-use character is never in these fonts: its mask is the
        # "missing glyph" box, to compare other characters against.
        self._notdef = {k: self._mask(f, "\ue000") for k, f in self.faces.items()}
        self._fallback_cache = {}

    @staticmethod
    def _mask(font, ch):
        m = font.getmask(ch)
        return (m.size, bytes(m))

    @functools.lru_cache(maxsize=None)
    def face_for(self, ch, bold, italic):
        face = self.faces[(bold, italic)]
        if ch.isascii() or self._mask(face, ch) != self._notdef[(bold, italic)]:
            return face
        cp = ord(ch)
        if cp not in self._fallback_cache:
            fallback = None
            path = fc_match(":charset=%x" % cp)
            if path:
                fallback = ImageFont.truetype(path, self.size)
                # A proportional fallback's glyph may be wider than a cell: shrink it.
                advance = fallback.getlength(ch)
                if advance > self.cell_w * 1.05:
                    size = max(6, int(self.size * self.cell_w / advance))
                    fallback = ImageFont.truetype(path, size)
            self._fallback_cache[cp] = fallback
        return self._fallback_cache[cp] or face


# ---------------------------------------------------------------- shapes

# Box drawing: (up, right, down, left); 1 light, 2 heavy, 3 double.
BOX = {}


def _box(chars, weights):
    for ch, w in zip(chars, weights):
        BOX[ch] = w


_SHAPES = [(0, 1, 0, 1), (1, 0, 1, 0), (0, 1, 1, 0), (0, 0, 1, 1), (1, 1, 0, 0), (1, 0, 0, 1),
           (1, 1, 1, 0), (1, 0, 1, 1), (0, 1, 1, 1), (1, 1, 0, 1), (1, 1, 1, 1)]
for _chars, _w in (("─│┌┐└┘├┤┬┴┼", 1), ("━┃┏┓┗┛┣┫┳┻╋", 2), ("═║╔╗╚╝╠╣╦╩╬", 3)):
    _box(_chars, [tuple(x * _w for x in s) for s in _SHAPES])
_box("┄┈╌", [(0, 1, 0, 1)] * 3)
_box("┆┊╎", [(1, 0, 1, 0)] * 3)
_box("┅┉╍", [(0, 2, 0, 2)] * 3)
_box("┇┋╏", [(2, 0, 2, 0)] * 3)
_box("╴╵╶╷╸╹╺╻", [(0, 0, 0, 1), (1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0),
                  (0, 0, 0, 2), (2, 0, 0, 0), (0, 2, 0, 0), (0, 0, 2, 0)])
ROUNDED = {"╭": (0, 1, 1, 0), "╮": (0, 0, 1, 1), "╯": (1, 0, 0, 1), "╰": (1, 1, 0, 0)}

# Block elements: list of (x0, y0, x1, y1) fractions of the cell, or a shade.
BLOCKS = {"█": [(0, 0, 1, 1)], "▀": [(0, 0, 1, .5)], "▔": [(0, 0, 1, .125)],
          "▐": [(.5, 0, 1, 1)], "▕": [(.875, 0, 1, 1)],
          "▖": [(0, .5, .5, 1)], "▗": [(.5, .5, 1, 1)], "▘": [(0, 0, .5, .5)], "▝": [(.5, 0, 1, .5)],
          "▙": [(0, 0, .5, 1), (.5, .5, 1, 1)], "▛": [(0, 0, 1, .5), (0, .5, .5, 1)],
          "▜": [(0, 0, 1, .5), (.5, .5, 1, 1)], "▟": [(.5, 0, 1, 1), (0, .5, .5, 1)],
          "▚": [(0, 0, .5, .5), (.5, .5, 1, 1)], "▞": [(.5, 0, 1, .5), (0, .5, .5, 1)]}
for _n, _ch in enumerate("▁▂▃▄▅▆▇", start=1):
    BLOCKS[_ch] = [(0, 1 - _n / 8, 1, 1)]
for _n, _ch in enumerate("▏▎▍▌▋▊▉", start=1):
    BLOCKS[_ch] = [(0, 0, _n / 8, 1)]
SHADES = {"░": 0.25, "▒": 0.5, "▓": 0.75}


def draw_box(draw, x, y, cw, ch, weights, fg, rounded=False):
    up, right, down, left = weights
    t = max(1, int(round(cw / 9)))
    cx, cy = x + (cw - t) // 2, y + (ch - t) // 2  # top-left of the centre stroke

    def stroke(w, horizontal, a, b):
        """Segment from a to b along the axis, of weight w, centred across it."""
        if w == 0:
            return
        if w == 3:
            gap = t + 1
            offsets, th = (-gap, gap), t
        elif w == 2:
            offsets, th = (0,), t + 2
        else:
            offsets, th = (0,), t
        for off in offsets:
            if horizontal:
                y0 = cy + off - (th - t) // 2
                draw.rectangle([a, y0, b - 1, y0 + th - 1], fill=fg)
            else:
                x0 = cx + off - (th - t) // 2
                draw.rectangle([x0, a, x0 + th - 1, b - 1], fill=fg)

    if rounded:
        r = max(2, min(cw, ch) // 2)
        if right:
            stroke(1, True, min(cx + r, x + cw), x + cw)
        if left:
            stroke(1, True, x, max(cx - r + t, x))
        if down:
            stroke(1, False, min(cy + r, y + ch), y + ch)
        if up:
            stroke(1, False, y, max(cy - r + t, y))
        # quarter circle joining the two strokes, centred off the cell's centre
        ox = cx + r if right else cx - r + t - 1
        oy = cy + r if down else cy - r + t - 1
        box = [ox - r, oy - r, ox + r, oy + r]
        start = {(1, 1): 180, (1, 0): 90, (0, 1): 270, (0, 0): 0}[(1 if right else 0, 1 if down else 0)]
        draw.arc(box, start, start + 90, fill=fg, width=t)
        return

    # Horizontal strokes reach into the centre so that corners close; heavier
    # strokes of the crossing direction decide how far.
    vw = max(up, down)
    hw = max(left, right)
    pad_v = (t + 1) + t if vw == 3 else (1 if vw == 2 else 0)
    pad_h = (t + 1) + t if hw == 3 else (1 if hw == 2 else 0)
    if left:
        stroke(left, True, x, cx + t + pad_v)
    if right:
        stroke(right, True, cx - pad_v, x + cw)
    if up:
        stroke(up, False, y, cy + t + pad_h)
    if down:
        stroke(down, False, cy - pad_h, y + ch)


# ---------------------------------------------------------------- render


def render(rows, cols, nrows, fonts, margin):
    cw, ch = fonts.cell_w, fonts.cell_h
    width = cols * cw + 2 * margin
    height = nrows * ch + 2 * margin
    img = Image.new("RGB", (width, height), DEFAULT_BG)
    draw = ImageDraw.Draw(img)
    for r in range(nrows):
        row = rows[r] if r < len(rows) else []
        y = margin + r * ch
        for c in range(cols):
            x = margin + c * cw
            glyph, key = row[c] if c < len(row) else (" ", None)
            if key is None:
                continue
            fg_c, bg_c, bold, dim, italic, underline, reverse, strike = key
            fg = resolve(fg_c, DEFAULT_FG)
            bg = resolve(bg_c, DEFAULT_BG)
            if reverse:
                fg, bg = bg, fg
            if dim:
                fg = blend(fg, bg, 0.5)
            if bg != DEFAULT_BG:
                draw.rectangle([x, y, x + cw - 1, y + ch - 1], fill=bg)
            if glyph in BLOCKS:
                for fx0, fy0, fx1, fy1 in BLOCKS[glyph]:
                    x0, y0 = x + int(round(fx0 * cw)), y + int(round(fy0 * ch))
                    x1, y1 = x + int(round(fx1 * cw)), y + int(round(fy1 * ch))
                    if x1 > x0 and y1 > y0:
                        draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=fg)
            elif glyph in SHADES:
                draw.rectangle([x, y, x + cw - 1, y + ch - 1], fill=blend(bg, fg, SHADES[glyph]))
            elif glyph in BOX:
                draw_box(draw, x, y, cw, ch, BOX[glyph], fg)
            elif glyph in ROUNDED:
                draw_box(draw, x, y, cw, ch, ROUNDED[glyph], fg, rounded=True)
            elif glyph != " ":
                face = fonts.face_for(glyph, bold, italic)
                draw.text((x, y + fonts.ascent), glyph, font=face, fill=fg, anchor="ls")
            if underline:
                uy = min(y + ch - 1, y + fonts.ascent + 2)
                draw.line([x, uy, x + cw - 1, uy], fill=fg)
            if strike:
                sy = y + ch // 2
                draw.line([x, sy, x + cw - 1, sy], fill=fg)
    return img


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input", help="a `tmux capture-pane -e -p` dump")
    ap.add_argument("output", help="the PNG to write")
    ap.add_argument("--cols", type=int, help="columns (default: the longest line)")
    ap.add_argument("--rows", type=int, help="rows (default: the number of lines)")
    ap.add_argument("--font-size", type=int, default=15, help="pixels (default 15)")
    ap.add_argument("--margin", type=int, default=14, help="border in pixels (default 14)")
    args = ap.parse_args(argv)

    with open(args.input, encoding="utf-8", errors="replace") as f:
        rows = parse(f.read())
    cols = args.cols or max((len(r) for r in rows), default=1)
    nrows = args.rows or max(1, len(rows))
    fonts = Fonts(args.font_size)
    img = render(rows, cols, nrows, fonts, args.margin)
    img.save(args.output, optimize=True)


if __name__ == "__main__":
    main()
