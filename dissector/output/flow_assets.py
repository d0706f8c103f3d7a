"""The flow page's inline style sheet and script (no network, no external fonts).

The script only reads: the details data of an association (JSON in a `<script
type="application/json">`, parsed on first use) goes into the panel through `textContent`,
never `innerHTML`. `#a3` in the address opens association 3; `#n=4` opens and selects record 4.
When done it sets `data-ready` on `<body>` to the number of arrows (tests read it).
"""

CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  margin: 0; color: #222; background: #fff; font-size: 14px; }
main { margin-right: 330px; padding: 8px 16px 40px; }
h1 { font-size: 20px; margin: 8px 0 4px; }
h2 { font-size: 16px; margin: 14px 0 6px; }
h3 { font-size: 13px; margin: 6px 0 4px; }
header p { margin: 2px 0; color: #555; }
.note { background: #FFF6DD; border-left: 4px solid #F2A900; padding: 6px 10px; }
header .caps { font-size: 12px; color: #777; }
#legend { margin: 8px 0; }
#legend ul { list-style: none; padding: 0; margin: 2px 0; }
#legend li { display: inline-block; margin: 0 12px 2px 0; font-size: 12px; }
#legend li.head, #legend .glyph { font-weight: 600; }
table { border-collapse: collapse; font-size: 12px; }
td.link { word-break: break-all; min-width: 90px; max-width: 170px; }
th, td { border-bottom: 1px solid #E0E0E0; padding: 3px 8px; text-align: left;
  vertical-align: top; }
th { background: #F5F5F5; }
td.num { text-align: right; }
.chip { display: inline-block; border: 2px solid; border-radius: 8px; padding: 0 5px;
  margin: 0 3px 2px 0; font-size: 11px; white-space: nowrap; }
td.keys { max-width: 150px; }
#index { overflow-x: auto; }
#index td:last-child { min-width: 180px; }
td.titles { font-size: 11px; }
#index table { width: 100%; }
.msg { color: #555; font-size: 11px; }
a.sev-error, span.sev-error, li.sev-error { color: #C62828; }
a.sev-warning, span.sev-warning, li.sev-warning { color: #9A6A00; }
li.sev-note { color: #5C7A99; }
details.assoc { margin: 10px 0; border: 1px solid #DDD; border-radius: 6px; padding: 4px 8px; }
details.assoc > summary { cursor: pointer; font-weight: 600; padding: 4px 0; }
svg.ladder { display: block; font-size: 12px; }
svg.ladder text { font-family: inherit; }
.lane rect { fill: #F5F5F5; stroke: #9E9E9E; }
.lane-name { font-weight: 700; }
.lane-title { font-size: 11px; fill: #555; }
.life { stroke: #BDBDBD; stroke-dasharray: 3 3; }
.arrow { cursor: pointer; outline: none; }
.arrow .label { font-weight: 600; }
.arrow .sub { font-size: 11px; fill: #666; }
.arrow .gut { font-size: 11px; fill: #444; }
.arrow .gut.t { fill: #888; }
.arrow .verdict { font-size: 15px; font-weight: 700; }
.arrow:hover .band, .arrow:focus .band { fill: #EEF4FA; }
.arrow.linked .band { stroke: #64B5F6; stroke-width: 2; stroke-dasharray: 5 3; }
.arrow.pinned .band { stroke: #1565C0; stroke-width: 2; }
.arrow.pinned .shaft { stroke-width: 4; }
#panel { position: fixed; top: 0; right: 0; width: 320px; height: 100vh; overflow: auto;
  border-left: 1px solid #CCC; background: #FAFAFA; padding: 8px 12px; box-sizing: border-box;
  font-size: 13px; }
#panel h2 { font-size: 15px; word-break: break-all; }
#panel .summary { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 11px;
  word-break: break-all; }
#panel dl { display: grid; grid-template-columns: max-content 1fr; gap: 1px 8px; margin: 0; }
#panel dt { color: #666; }
#panel dd { margin: 0; word-break: break-all; }
#panel pre { font-size: 11px; white-space: pre-wrap; word-break: break-all; background: #FFF;
  border: 1px solid #E0E0E0; padding: 4px; }
#panel ul { padding-left: 16px; margin: 2px 0; }
#panel .hint { color: #777; }
@media (max-width: 1000px) { main { margin-right: 0; }
  #panel { position: static; width: auto; height: auto; border-left: 0;
    border-top: 1px solid #CCC; } }
"""

SCRIPT = r"""
(function () {
  "use strict";
  var panel = document.getElementById("panel");
  var cache = {};
  var pinned = null;

  function records(assoc) {
    if (!(assoc in cache)) {
      var node = document.getElementById("d" + assoc);
      cache[assoc] = node ? JSON.parse(node.textContent) : [];
    }
    return cache[assoc];
  }
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }
  function list(pairs) {
    var dl = el("dl");
    pairs.forEach(function (p) {
      if (p[1] === null || p[1] === undefined || p[1] === "") { return; }
      dl.appendChild(el("dt", null, p[0]));
      dl.appendChild(el("dd", null, p[1]));
    });
    return dl;
  }
  function verdict(s) {
    if (typeof s.control === "number" && !(s.control & 0x10)) { return "no tag"; }
    return s.tag_verified === true ? "OK" : s.tag_verified === false ? "FAILED" : "not checked";
  }
  function show(g) {
    var details = g.closest("details");
    var rec = records(details.getAttribute("data-assoc"))[Number(g.getAttribute("data-row"))];
    if (!rec) { return; }
    document.querySelectorAll(".arrow.linked").forEach(function (a) {
      a.classList.remove("linked");
    });
    var answers = g.getAttribute("data-answers");
    if (answers) {
      var req = details.querySelector('.arrow[data-n="' + CSS.escape(answers) + '"]');
      if (req) { req.classList.add("linked"); }
    }
    panel.replaceChildren();
    panel.appendChild(el("h2", null, "#" + rec.number + " " + rec.apdu +
      (rec.inner ? " \u2192 " + rec.inner : "")));
    panel.appendChild(el("p", "summary", rec.summary));
    var frames = (rec.frames || []).join(", ");
    if (rec.nframes > (rec.frames || []).length) { frames += " (" + rec.nframes + " in all)"; }
    panel.appendChild(list([["link", rec.link], ["direction", rec.direction],
      ["frames", frames], ["time", typeof rec.time === "number" ? rec.time.toFixed(6) : rec.time],
      ["answers", rec.response_time === null || rec.response_time === undefined ? null :
        "frame " + rec.request_frame + " after " + rec.response_time.toFixed(3) + " s"]]));
    panel.appendChild(el("h3", null, "Security"));
    var s = rec.security;
    if (s) {
      panel.appendChild(list([["key kind", s.key_kind || "unknown"], ["key", s.key_name],
        ["tag", verdict(s)], ["envelope", s.envelope],
        ["SC", typeof s.control === "number" ? "0x" + s.control.toString(16).toUpperCase() : null],
        ["IC", s.invocation_counter], ["system title", s.system_title]]));
    } else {
      panel.appendChild(el("p", null, "none (plaintext APDU)"));
    }
    panel.appendChild(el("h3", null, "Findings"));
    var ul = el("ul");
    (rec.findings || []).forEach(function (f) {
      ul.appendChild(el("li", "sev-" + f.severity, f.severity + ": " + f.code + ": " + f.message));
    });
    if (rec.nfindings > (rec.findings || []).length) {
      ul.appendChild(el("li", null, (rec.nfindings - rec.findings.length) + " more"));
    }
    panel.appendChild((rec.findings || []).length ? ul : el("p", null, "none"));
    panel.appendChild(el("h3", null, "Decoded fields"));
    panel.appendChild(el("pre", null, rec.fields));
  }
  function pin(g) {
    if (pinned) { pinned.classList.remove("pinned"); }
    pinned = pinned === g ? null : g;
    if (pinned) { pinned.classList.add("pinned"); show(pinned); }
  }
  document.addEventListener("mouseover", function (e) {
    var g = e.target.closest && e.target.closest(".arrow");
    if (g && !pinned) { show(g); }
  });
  document.addEventListener("click", function (e) {
    var g = e.target.closest && e.target.closest(".arrow");
    if (g) { pin(g); }
  });
  document.addEventListener("keydown", function (e) {
    var g = document.activeElement && document.activeElement.closest &&
      document.activeElement.closest(".arrow");
    if (e.key === "Enter" && g) { pin(g); }
    if (e.key === "Escape" && pinned) { pin(pinned); }
  });
  document.addEventListener("focusin", function (e) {
    var g = e.target.closest && e.target.closest(".arrow");
    if (g && !pinned) { show(g); }
  });
  function setAll(open) {
    document.querySelectorAll("details.assoc").forEach(function (d) { d.open = open; });
  }
  document.getElementById("open-all").addEventListener("click", function () { setAll(true); });
  document.getElementById("close-all").addEventListener("click", function () { setAll(false); });
  function follow() {
    var hash = decodeURIComponent(location.hash.slice(1));
    var m = /^n=(\d+)$/.exec(hash);
    if (m) {
      var g = document.querySelector('.arrow[data-n="' + m[1] + '"]');
      if (g) {
        g.closest("details").open = true;
        if (pinned !== g) { pin(g); }
        g.scrollIntoView({block: "nearest"});
      }
      return;
    }
    var target = /^a\d+$/.test(hash) ? document.getElementById(hash) : null;
    if (target) { target.open = true; target.scrollIntoView(); }
  }
  window.addEventListener("hashchange", follow);
  follow();
  document.body.setAttribute("data-ready", String(document.querySelectorAll(".arrow").length));
})();
"""
