"""Drives the flowlog console in Debian's Chromium through Playwright and
prints, as one JSON object on stdout, what the pages showed: every table's
raw cell values (data-value), every card, and what went wrong (console
errors, requests to other hosts). The Rust test (tests/tests/console.rs)
compares those numbers with its own SQL over the same Logstore.

    drive.py PHASE --url http://127.0.0.1:PORT --query 'logstore=p/l&range=custom&from=..&to=..'
             [--shots DIR] [--flow-log-id ID] [--key-id ID --secret S]

Phases: pages, keyboard, create, watch, cross-site, agent-down, sign-in,
and paint (first contentful paint over --loads fresh loads, for the bench).
Playwright never downloads a browser here: the executable is the system's
(FLOWLOG_CHROMIUM, /usr/bin/chromium by default).
"""

import argparse
import http.server
import json
import os
import sys
import threading
import time
import urllib.parse

from playwright.sync_api import sync_playwright

PAGES = ["overview", "matrix", "top", "latency", "flows", "flowlogs", "query"]
HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
ARGS = [
    "--no-sandbox", "--headless=new", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]

TABLES_JS = """() => Object.fromEntries([...document.querySelectorAll('table[data-table]')].map(t => [
  t.dataset.table,
  [...t.querySelectorAll('tbody tr')].filter(tr => tr.querySelector('td[data-col]')).map(tr =>
    Object.fromEntries([...tr.querySelectorAll('td[data-col]')].map(td => [td.dataset.col, td.dataset.value])))
]))"""
CARDS_JS = "() => Object.fromEntries([...document.querySelectorAll('[data-card]')].map(c => [c.dataset.card, c.dataset.value]))"


class Run:
    def __init__(self, args, pw):
        self.args = args
        self.base = args.url.rstrip("/")
        self.host = urllib.parse.urlsplit(self.base).netloc
        self.browser = pw.chromium.launch(executable_path=os.environ.get("FLOWLOG_CHROMIUM", "/usr/bin/chromium"), args=ARGS)
        self.context = self.browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        self.errors = []
        self.foreign = []
        self.page = self.watch(self.context.new_page())

    def watch(self, page):
        def on_console(msg):
            if msg.type == "error":
                self.errors.append(f"console: {msg.text}")
        page.on("console", on_console)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

        def on_request(req):
            u = urllib.parse.urlsplit(req.url)
            if u.scheme not in ("data", "blob") and u.netloc != self.host:
                self.foreign.append(req.url)
        page.on("request", on_request)
        return page

    def url(self, page, extra=""):
        q = self.args.query + (("&" + extra) if extra else "")
        return f"{self.base}/?{q}#{page}"

    def ready(self, after=None):
        """Waits until a render newer than `after` has finished."""
        if after is None:
            self.page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=60000)
        else:
            self.page.wait_for_function(
                "(n) => document.body.dataset.state === 'ready' && Number(document.body.dataset.rendered || 0) > n",
                arg=after, timeout=60000)
        # Charts draw on the next frame.
        self.page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")

    def rendered(self):
        return int(self.page.evaluate("() => Number(document.body.dataset.rendered || 0)"))

    def open(self, page, extra=""):
        self.page.goto(self.url(page, extra))
        self.ready()
        return self.read()

    def read(self):
        return {
            "page": self.page.evaluate("() => document.body.dataset.page"),
            "tables": self.page.evaluate(TABLES_JS),
            "cards": self.page.evaluate(CARDS_JS),
            "errors": self.page.evaluate("() => [...document.querySelectorAll('.error')].map(e => e.textContent)"),
            "banner": self.page.evaluate("() => document.querySelector('#banner').textContent"),
            "charts": self.page.evaluate("() => document.querySelectorAll('.chart canvas').length"),
            "sources": self.page.evaluate("() => Object.fromEntries([...document.querySelectorAll('[data-panel][data-source]')].map(p => [p.dataset.panel, p.dataset.source]))"),
        }

    def shot(self, name):
        if self.args.shots:
            os.makedirs(self.args.shots, exist_ok=True)
            self.page.screenshot(path=os.path.join(self.args.shots, f"{name}.png"), full_page=True)

    def click_and_wait(self, locator):
        before = self.rendered()
        locator.click()
        self.ready(before)

    def finish(self, out):
        out["console_errors"] = self.errors
        out["foreign_requests"] = self.foreign
        self.browser.close()
        print(json.dumps(out))


def pages(r):
    out = {}
    for p in PAGES:
        extra = ""
        if p == "flows":
            extra = r.args.flows_filter or ""
        if p == "query":
            extra = "sql=" + urllib.parse.quote(r.args.sql or "SELECT count(*) AS n FROM logs") + "&line=100"
        out[p] = r.open(p, extra)
        # The flow-log page is shot by the create phase, with the agent up.
        if p != "flowlogs":
            r.shot(p)
    # A matrix cell clicked on the chart opens its flows.
    r.open("matrix")
    cell = r.page.evaluate("""() => {
      const el = document.querySelector('[data-panel=matrix] .chart');
      const c = echarts.getInstanceByDom(el);
      const opt = c.getOption();
      const d = opt.series[0].data[0];
      const [x, y] = c.convertToPixel({ seriesIndex: 0 }, [d[0], d[1]]);
      const box = el.getBoundingClientRect();
      return { x: box.left + x, y: box.top + y, src: opt.yAxis[0].data[d[1]], dst: opt.xAxis[0].data[d[0]] };
    }""")
    before = r.rendered()
    r.page.mouse.click(cell["x"], cell["y"])
    r.ready(before)
    out["matrix_click"] = {"cell": cell, "url": r.page.url, **r.read()}
    # The overview split by region pair, and a CSV download of it.
    out["overview_regions"] = r.open("overview", "split=region-pair&dir=in")
    with r.page.expect_download() as d:
        r.page.locator("[data-panel=series] button", has_text="Download CSV").click()
    out["series_csv"] = open(d.value.path(), encoding="utf-8").read()
    out["top_pairs"] = r.open("top", "talkers=pairs&by=packets&dir=in&limit=20")
    out["top_ports"] = r.open("top", "talkers=ports&dir=in")
    out["matrix_networks"] = r.open("matrix", "between=networks")
    out["matrix_attachments"] = r.open("matrix", "between=attachments")
    r.finish(out)


def keyboard(r):
    """Tab to a nav link and press Enter; open a record with the keyboard."""
    r.page.goto(r.url("overview"))
    r.ready()
    reached = None
    for _ in range(40):
        r.page.keyboard.press("Tab")
        text = r.page.evaluate("() => document.activeElement && document.activeElement.textContent")
        if text == "Top talkers":
            reached = text
            break
    out = {"reached": reached}
    if reached:
        before = r.rendered()
        r.page.keyboard.press("Enter")
        r.ready(before)
        out["after_enter"] = r.page.evaluate("() => document.body.dataset.page")
    r.page.goto(r.url("flows"))
    r.ready()
    r.page.locator("[data-table=flows] button", has_text="Open").first.focus()
    r.page.keyboard.press("Enter")
    out["record_open"] = r.page.evaluate("() => !document.querySelector('#record').hidden && document.activeElement.id === 'record'")
    out["record_fields"] = r.page.evaluate("() => [...document.querySelectorAll('#record dd[data-field]')].map(d => d.dataset.field)")
    r.finish(out)


def create(r):
    """Creates a flow log with a hostile description by filling the form,
    then activates it by clicking."""
    a = r.args
    r.page.goto(r.url("flowlogs"))
    r.ready()
    form = r.page.locator("form[aria-label='Create flow log']")
    form.locator("[name=FlowLogName]").fill(a.name)
    form.locator("[name=Description]").fill(HOSTILE)
    form.locator("[name=CenId]").fill("cen-console")
    form.locator("[name=ProjectName]").fill(a.project)
    form.locator("[name=LogStoreName]").fill(a.logstore)
    form.locator("[name=Interfaces]").fill(a.interfaces)
    form.locator("[name=Interval]").fill("1")
    r.click_and_wait(form.locator("button[type=submit]"))
    r.page.wait_for_selector("[data-done=CreateFlowlog]", timeout=30000)
    created = r.page.locator("[data-done=CreateFlowlog]").text_content()
    fid = created.split()[-1]
    row = r.page.locator("[data-table=flowlogs] tr", has=r.page.locator(f"td[data-value='{fid}']"))
    shown = row.locator("td[data-col=Description]").text_content()
    injected = r.page.evaluate("() => ({ pwned: window.__pwned === undefined ? null : window.__pwned, scripts: document.querySelectorAll('main script, main img').length })")
    r.shot("flowlogs")
    r.click_and_wait(row.locator("button[data-act=activate]"))
    r.page.wait_for_selector("[data-done=ActiveFlowLog]", timeout=30000)
    row = r.page.locator("[data-table=flowlogs] tr", has=r.page.locator(f"td[data-value='{fid}']"))
    status = row.locator("td[data-col=Status]").text_content()
    r.finish({"flow_log_id": fid, "description_shown": shown, "hostile": HOSTILE, "injected": injected, "status_after_activate": status})


def watch(r):
    """Sees the new flow log's records arrive, then deactivates and deletes
    it by clicking."""
    fid = r.args.flow_log_id
    seen = 0
    deadline = time.time() + 60
    while time.time() < deadline:
        got = r.open("flows", f"flowlog={fid}")
        seen = int(got["cards"].get("matching") or 0)
        if seen > 0:
            break
        time.sleep(1)
    flows_seen = got
    r.page.goto(r.url("flowlogs"))
    r.ready()
    row = lambda: r.page.locator("[data-table=flowlogs] tr", has=r.page.locator(f"td[data-value='{fid}']"))
    r.click_and_wait(row().locator("button[data-act=deactivate]"))
    r.page.wait_for_selector("[data-done=DeactiveFlowLog]", timeout=30000)
    status = row().locator("td[data-col=Status]").text_content()
    delete = row().locator("button[data-act=delete]")
    delete.click()
    armed = delete.text_content()
    r.click_and_wait(delete)
    r.page.wait_for_selector("[data-done=DeleteFlowlog]", timeout=30000)
    left = row().count()
    r.finish({"records_seen": seen, "flows": flows_seen, "status_after_deactivate": status, "armed_text": armed, "rows_left": left})


def cross_site(r):
    """Another site's page (served on localhost, the console on 127.0.0.1)
    posts to the console with and without a guessed token; the console must
    refuse each, and the flow log must still be there."""
    fid = r.args.flow_log_id
    target = r.base
    evil = f"""<!doctype html><title>evil</title><body>
<form id=f method=POST action="{target}/console/api/action/DeleteFlowlog" enctype="text/plain">
<input name='{{"FlowLogId":"{fid}","x":"' value='"}}'></form>
<script>
fetch("{target}/console/api/action/DeleteFlowlog", {{method: "POST", mode: "no-cors", credentials: "include",
  headers: {{"Content-Type": "text/plain"}}, body: JSON.stringify({{FlowLogId: "{fid}"}})}}).finally(() => document.getElementById("f").submit());
</script></body>"""

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = evil.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    statuses = []
    other = r.context.new_page()
    other.on("response", lambda resp: statuses.append([resp.request.method, resp.url, resp.status]) if "/console/api/" in resp.url else None)
    other.goto(f"http://localhost:{srv.server_address[1]}/evil")
    deadline = time.time() + 20
    while time.time() < deadline and len([s for s in statuses if s[0] == "POST"]) < 2:
        other.wait_for_timeout(200)
    other.close()
    srv.shutdown()
    # The console's own page, same origin, still lists it.
    r.page.goto(r.url("flowlogs"))
    r.ready()
    still = r.page.locator(f"[data-table=flowlogs] td[data-value='{fid}']").count()
    r.finish({"responses": statuses, "still_listed": still, "page": r.read()})


def agent_down(r):
    out = {"flowlogs": r.open("flowlogs")}
    out["agent_down_text"] = r.page.locator("[data-panel=agent-down]").text_content() if r.page.locator("[data-panel=agent-down]").count() else None
    r.shot("agent-down")
    out["overview"] = r.open("overview")
    r.finish(out)


def sign_in(r):
    a = r.args
    r.page.goto(r.url("overview"))
    r.ready()
    out = {"form_shown": r.page.locator("form[aria-label='Sign in']").count() == 1}
    r.shot("sign-in")
    unauth = r.page.evaluate("(q) => fetch('/console/api/panel/totals?' + q).then(x => x.status)", "Project=x&Logstore=y&From=0&To=1")
    out["panel_status_before"] = unauth
    form = r.page.locator("form[aria-label='Sign in']")
    form.locator("[name=id]").fill(a.key_id)
    form.locator("[name=secret]").fill("wrong-" + a.secret)
    form.locator("button[type=submit]").click()
    r.page.wait_for_selector("form[aria-label='Sign in'] ~ div .error", timeout=30000)
    out["wrong_secret"] = r.page.locator(".error").first.text_content()
    # The two refusals above were asked for; Chromium logs each as an error.
    expected = [e for e in r.errors if "401 (Unauthorized)" in e]
    out["refusals_logged"] = len(expected)
    r.errors = [e for e in r.errors if e not in expected]
    form.locator("[name=secret]").fill(a.secret)
    before = r.rendered()
    form.locator("button[type=submit]").click()
    r.ready(before)
    out["after"] = r.read()
    out["cookie_visible_to_script"] = r.page.evaluate("() => document.cookie")
    out["cookies"] = r.context.cookies()
    before = r.rendered()
    r.page.locator("#who button", has_text="Sign out").click()
    r.ready(before)
    out["signed_out_form"] = r.page.locator("form[aria-label='Sign in']").count() == 1
    r.finish(out)


def paint(r):
    """First contentful paint and the overview's data, over fresh loads."""
    fcp, ready = [], []
    for _ in range(r.args.loads):
        page = r.watch(r.context.new_page())
        page.goto(r.url("overview"))
        page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=120000)
        fcp.append(page.evaluate("() => (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || null"))
        ready.append(page.evaluate("() => performance.now()"))
        page.close()
    p95 = lambda v: sorted(v)[min(len(v) - 1, round((len(v) - 1) * 0.95))]
    r.finish({"fcp_ms": fcp, "ready_ms": ready, "fcp_p95_ms": p95(fcp), "ready_p95_ms": p95(ready)})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=["pages", "keyboard", "create", "watch", "cross-site", "agent-down", "sign-in", "paint"])
    ap.add_argument("--loads", type=int, default=20)
    ap.add_argument("--url", required=True)
    ap.add_argument("--query", required=True)
    ap.add_argument("--shots")
    ap.add_argument("--flows-filter")
    ap.add_argument("--sql")
    ap.add_argument("--flow-log-id")
    ap.add_argument("--name")
    ap.add_argument("--project")
    ap.add_argument("--logstore")
    ap.add_argument("--interfaces")
    ap.add_argument("--key-id")
    ap.add_argument("--secret")
    args = ap.parse_args()
    with sync_playwright() as pw:
        run = Run(args, pw)
        {"pages": pages, "keyboard": keyboard, "create": create, "watch": watch, "cross-site": cross_site,
         "agent-down": agent_down, "sign-in": sign_in, "paint": paint}[args.phase](run)


if __name__ == "__main__":
    sys.exit(main())
