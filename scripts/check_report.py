#!/usr/bin/env python3
"""Loads a dbt-herd report in headless Chromium and checks the rendered DOM.

    check_report.py REPORT.html BATCHES WORKERS
"""
import html.parser, subprocess, sys

report, batches, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def render(fragment=""):
    out = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
         "--v=0", "--virtual-time-budget=2000", "--dump-dom", f"file://{report}{fragment}"],
        capture_output=True, text=True, timeout=120)
    errors = [l for l in out.stderr.splitlines() if "CONSOLE" in l and ("Uncaught" in l or "Error" in l)]
    return out.stdout, errors


class Dom(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.lanes = self.bars = self.failed_bars = self.rows = self.hidden_rows = 0
        self.lines = set()
        self.titles, self.in_title, self.in_tbody = [], False, False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = a.get("class") or ""
        if tag == "g" and cls == "lane":
            self.lanes += 1
        if tag == "rect" and cls.startswith("bar"):
            self.bars += 1
            self.failed_bars += "failed" in cls.split()
        if tag == "polyline":
            self.lines.add(cls)
        if tag == "title":
            self.in_title = True
        if tag == "tbody":
            self.in_tbody = True
        if tag == "tr" and self.in_tbody:
            self.rows += 1
            self.hidden_rows += "hidden" in a

    def handle_endtag(self, tag):
        self.in_title = self.in_title and tag != "title"
        self.in_tbody = self.in_tbody and tag != "tbody"

    def handle_data(self, data):
        if self.in_title:
            self.titles.append(data)


def dom(text):
    d = Dom()
    d.feed(text)
    return d


page, errors = render()
d = dom(page)
problems = []
if errors:
    problems.append(f"console errors: {errors}")
if d.lanes != workers:
    problems.append(f"{d.lanes} lanes, expected {workers}")
if d.bars < batches + 1:
    problems.append(f"{d.bars} bars, expected at least {batches + 1} (the late window's retry)")
if d.failed_bars < 1:
    problems.append("no failed attempt drawn (the late window fails once)")
if not any("attempt 1 (run)" in t and "failed" in t for t in d.titles):
    problems.append("no hover text for the failed attempt")
if d.lines != {"reserved", "active"}:
    problems.append(f"connection lines drawn: {sorted(d.lines)}, expected reserved and active")
if d.rows != batches:
    problems.append(f"{d.rows} table rows, expected {batches}")
# The page's own script ran: a filter given in the address hides the other rows.
filtered, errors = render("#filter=2024-01-13")
f = dom(filtered)
if errors:
    problems.append(f"console errors with a filter: {errors}")
if f.rows - f.hidden_rows != 1:
    problems.append(f"the filter left {f.rows - f.hidden_rows} rows shown, expected 1")
if problems:
    print("check-report: FAILED\n  " + "\n  ".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"check-report: ok · {d.lanes} lanes, {d.bars} bars ({d.failed_bars} failed), {d.rows} rows, the filter works, no console error")
