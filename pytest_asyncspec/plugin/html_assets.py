"""The HTML report's style sheet and its one script, as constants.

Both are inlined in the page (:mod:`.html_page`), which fetches nothing.  The
page's Content-Security-Policy allows this script alone, by its SHA-256
(:data:`CSP`): a ``<script>`` that slipped into the page some other way would
not run.  The script reads only ``data-`` attributes and classes the renderer
wrote, and writes text with ``textContent``, never markup.

What the script does: the outcome filter and the search box, the toggle that
shows our own and pytest-asyncio's helper tasks, and zoom and pan on each
timeline (buttons, Ctrl + wheel, drag).  Without it the page still shows
everything, unzoomed and unfiltered.
"""

from __future__ import annotations

import base64
import hashlib

__all__ = ["CSP", "CSS", "SCRIPT"]

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #222; }
main { margin: 0 1.5em 1.5em; }
header.bar { position: sticky; top: 0; z-index: 2; background: #fff; padding: .6em 1.5em;
  border-bottom: 1px solid #ccc; display: flex; flex-wrap: wrap; gap: .4em 1em;
  align-items: center; }
h1 { font-size: 1.3em; margin: 0; }
h2 { font-size: 1.2em; margin: 1.5em 0 .5em; border-bottom: 1px solid #ccc; }
h4 { font-size: .95em; margin: .8em 0 .3em; }
code, pre { font: 12px ui-monospace, monospace; }
pre { background: #f7f7f7; border: 1px solid #e4e4e4; padding: .5em; overflow: auto;
  max-height: 40em; white-space: pre-wrap; margin: .3em 0; }
pre.failure { background: #fff3f3; border-color: #e8b4b4; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.id { white-space: nowrap; font-weight: 600; }
.outcome { padding: 0 4px; border-radius: 3px; color: #fff; background: #777; }
.outcome.passed { background: #2a7d2a; }
.outcome.failed, .outcome.error { background: #b52a2a; }
.outcome.skipped, .outcome.xfailed, .outcome.xpassed { background: #a07800; }
.counts button { border: 1px solid #bbb; background: #f6f6f6; border-radius: 3px;
  padding: 2px 8px; cursor: pointer; font: inherit; }
.counts button[aria-pressed="true"] { background: #333; color: #fff; border-color: #333; }
.counts button.passed::before, .counts button.failed::before, .counts button.error::before,
.counts button.skipped::before { content: ""; display: inline-block; width: 8px; height: 8px;
  border-radius: 4px; margin-right: 4px; background: #777; }
.counts button.passed::before { background: #2a7d2a; }
.counts button.failed::before, .counts button.error::before { background: #b52a2a; }
.counts button.skipped::before { background: #a07800; }
input.search { font: inherit; padding: 2px 6px; width: 18em; }
.shown { color: #555; }
section.test { border-bottom: 1px solid #eee; }
section.test > details > summary { cursor: pointer; padding: .35em 0; }
section.test > details > summary code { font-size: 13px; }
section.test .body { margin: 0 0 1em 1.2em; }
body[data-filter="passed"] section.test:not([data-outcome="passed"]),
body[data-filter="failed"] section.test:not([data-outcome="failed"]),
body[data-filter="error"] section.test:not([data-outcome="error"]),
body[data-filter="skipped"] section.test:not([data-outcome="skipped"]),
body[data-filter="xfailed"] section.test:not([data-outcome="xfailed"]),
body[data-filter="xpassed"] section.test:not([data-outcome="xpassed"]),
section.test.unmatched { display: none; }
.reason { color: #b52a2a; margin: 0; }
.source { color: #666; margin: 0; font-size: 12px; }
.meta, .legend { color: #555; margin: .2em 0; }
.clipped { color: #a05000; font-weight: 600; }
.run { border-top: 2px solid #ddd; padding-top: .3em; margin-top: .6em; }
.run.failing { border-top-color: #b52a2a; }
.run h4 .badge { background: #b52a2a; color: #fff; border-radius: 3px; padding: 0 4px;
  font-size: 12px; }
.replay code { background: #fff3f3; padding: 1px 4px; user-select: all; }
details.runs > summary { cursor: pointer; color: #333; margin-top: .6em; }
.timeline-box .tools { margin: .2em 0; }
.timeline-box .tools button { font: 12px system-ui, sans-serif; padding: 0 6px; }
.frame { display: flex; align-items: flex-start; border: 1px solid #e4e4e4;
  background: #fcfcfc; max-width: 100%; }
.frame .scroll { overflow-x: auto; overflow-y: hidden; flex: 1 1 auto; cursor: grab; }
.frame .scroll.dragging { cursor: grabbing; }
svg.names { flex: 0 0 auto; border-right: 1px solid #e4e4e4; background: #fcfcfc; }
svg { display: block; }
svg text { font: 11px ui-monospace, monospace; fill: #333; }
svg text.axis { fill: #777; }
svg line.tick { stroke: #eee; }
svg line.life { stroke: #bbb; stroke-dasharray: 2 2; }
g.helper text.name { fill: #999; font-style: italic; }
body:not(.show-helpers) g.helper { display: none; }
rect.held { fill: #3a6fb0; }
rect.instant { fill: #8fb3de; }
rect.raised { fill: #c0392b; }
rect.cancelled { fill: #d68910; }
rect.blocking { fill: #e8262e; stroke: #600; stroke-width: 1; }
rect.allowed { fill: #bfbfbf; stroke: #555; stroke-width: 1; stroke-dasharray: 2 1; }
line.gate { stroke: #e8262e; stroke-width: 1.5; }
polygon.gate { fill: #e8262e; }
svg rect:hover { stroke: #000; stroke-width: 1; }
g.task:hover text.name { font-weight: 700; }
.key { display: inline-block; width: 12px; height: 10px; vertical-align: middle; }
.key.held { background: #3a6fb0; } .key.instant { background: #8fb3de; }
.key.raised { background: #c0392b; } .key.cancelled { background: #d68910; }
.key.blocking { background: #e8262e; outline: 1px solid #600; }
.key.allowed { background: #bfbfbf; outline: 1px dashed #555; }
"""

SCRIPT = """
(function () {
  "use strict";
  var body = document.body;
  function each(list, fn) { Array.prototype.forEach.call(list, fn); }

  // -- outcome filter and search ------------------------------------------
  var buttons = document.querySelectorAll(".counts button[data-filter]");
  var search = document.querySelector("input.search");
  var shown = document.querySelector(".shown");
  function refresh() {
    var filter = body.getAttribute("data-filter") || "all";
    var text = search ? search.value.toLowerCase() : "";
    var count = 0;
    each(document.querySelectorAll("section.test"), function (section) {
      var id = (section.getAttribute("data-id") || "").toLowerCase();
      section.classList.toggle("unmatched", text !== "" && id.indexOf(text) < 0);
      var outcome = section.getAttribute("data-outcome");
      if (!section.classList.contains("unmatched") && (filter === "all" || filter === outcome)) {
        count += 1;
      }
    });
    if (shown) { shown.textContent = count + " shown"; }
  }
  each(buttons, function (button) {
    button.addEventListener("click", function () {
      body.setAttribute("data-filter", button.getAttribute("data-filter"));
      each(buttons, function (other) {
        other.setAttribute("aria-pressed", other === button ? "true" : "false");
      });
      refresh();
    });
  });
  if (search) { search.addEventListener("input", refresh); }

  // -- helper tasks ---------------------------------------------------------
  function layout(box) {
    var rowHeight = parseFloat(box.getAttribute("data-row-height"));
    var top = parseFloat(box.getAttribute("data-axis-height"));
    var helpers = body.classList.contains("show-helpers");
    var y = top;
    var rows = {};
    each(box.querySelectorAll("svg.names g.task"), function (row) {
      var visible = helpers || !row.classList.contains("helper");
      if (visible) { rows[row.getAttribute("data-row")] = y; y += rowHeight; }
    });
    var height = y + 4;
    each(box.querySelectorAll("g.task"), function (row) {
      var at = rows[row.getAttribute("data-row")];
      if (at !== undefined) { row.setAttribute("transform", "translate(0," + at + ")"); }
    });
    each(box.querySelectorAll("svg"), function (svg) {
      svg.setAttribute("height", height);
      var view = svg.getAttribute("viewBox").split(" ");
      view[3] = String(height);
      svg.setAttribute("viewBox", view.join(" "));
    });
    each(box.querySelectorAll("line.tick, line.gate"), function (line) {
      line.setAttribute("y2", height);
    });
  }
  var toggle = document.querySelector("input.helpers");
  if (toggle) {
    toggle.addEventListener("change", function () {
      body.classList.toggle("show-helpers", toggle.checked);
      each(document.querySelectorAll(".timeline-box"), layout);
    });
  }

  // -- zoom and pan -----------------------------------------------------------
  var SVGNS = "http://www.w3.org/2000/svg";
  function tickStep(span, ticks) {
    var raw = span / ticks;
    var power = Math.pow(10, Math.floor(Math.log10(raw)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) {
      if (steps[i] * power >= raw) { return steps[i] * power; }
    }
    return 10 * power;
  }
  function originals(svg) {
    if (svg._asyncspec) { return svg._asyncspec; }
    var items = [];
    each(svg.querySelectorAll("rect"), function (rect) {
      items.push([rect, "x", parseFloat(rect.getAttribute("x"))]);
      var width = rect.getAttribute("data-w") || rect.getAttribute("width");
      items.push([rect, "width", parseFloat(width), parseFloat(rect.getAttribute("width"))]);
    });
    each(svg.querySelectorAll("line.life, line.gate"), function (line) {
      items.push([line, "x1", parseFloat(line.getAttribute("x1"))]);
      items.push([line, "x2", parseFloat(line.getAttribute("x2"))]);
    });
    each(svg.querySelectorAll("polygon.gate"), function (shape) {
      items.push([shape, "transform-x", parseFloat(shape.getAttribute("data-x"))]);
    });
    svg._asyncspec = items;
    return items;
  }
  function zoom(box, factor, anchor) {
    var svg = box.querySelector("svg.timeline");
    var scroll = box.querySelector(".scroll");
    var plot = parseFloat(box.getAttribute("data-plot-width"));
    var old = parseFloat(box.getAttribute("data-zoom") || "1");
    var level = factor === 0 ? 1 : Math.min(Math.max(old * factor, 1), 4096);
    var at = anchor === undefined ? scroll.clientWidth / 2 : anchor;
    var focus = (scroll.scrollLeft + at) / old;
    box.setAttribute("data-zoom", String(level));
    var width = plot * level;
    svg.setAttribute("width", width);
    var view = svg.getAttribute("viewBox").split(" ");
    view[2] = String(width);
    svg.setAttribute("viewBox", view.join(" "));
    each(originals(svg), function (item) {
      var value = item[2] * level;
      if (item[1] === "width") {
        value = Math.max(value, Math.min(item[3], 2));
        item[0].setAttribute("width", value.toFixed(2));
      } else if (item[1] === "transform-x") {
        item[0].setAttribute("transform", "translate(" + value.toFixed(2) + ",0)");
      } else {
        item[0].setAttribute(item[1], value.toFixed(2));
      }
    });
    // The axis: round ticks for the new width, about one per 90 pixels.
    var axis = svg.querySelector("g.axis");
    var span = parseFloat(box.getAttribute("data-span"));
    var height = svg.getAttribute("height");
    var top = parseFloat(box.getAttribute("data-axis-height"));
    while (axis.firstChild) { axis.removeChild(axis.firstChild); }
    var step = tickStep(span, Math.max(2, width / 90));
    var decimals = Math.max(0, -Math.floor(Math.log10(step)));
    var count = Math.floor(span / step + 1e-9);
    for (var n = 0; n <= count; n++) {
      var x = n * step * (width / span);
      var line = document.createElementNS(SVGNS, "line");
      line.setAttribute("class", "tick");
      line.setAttribute("x1", x.toFixed(2)); line.setAttribute("x2", x.toFixed(2));
      line.setAttribute("y1", String(top - 6)); line.setAttribute("y2", height);
      axis.appendChild(line);
      var label = document.createElementNS(SVGNS, "text");
      label.setAttribute("class", "axis");
      label.setAttribute("x", x.toFixed(2));
      label.setAttribute("y", String(top - 10));
      label.setAttribute("text-anchor", n === 0 ? "start" : n === count ? "end" : "middle");
      label.textContent = (n * step).toFixed(decimals);
      axis.appendChild(label);
    }
    var level_text = box.querySelector(".level");
    if (level_text) {
      level_text.textContent = (level < 10 ? level.toFixed(1) : level.toFixed(0)) + "x";
    }
    scroll.scrollLeft = focus * level - at;
  }
  each(document.querySelectorAll(".timeline-box"), function (box) {
    each(box.querySelectorAll("button[data-zoom]"), function (button) {
      button.addEventListener("click", function () {
        var how = button.getAttribute("data-zoom");
        zoom(box, how === "in" ? 2 : how === "out" ? 0.5 : 0);
      });
    });
    var scroll = box.querySelector(".scroll");
    if (!scroll) { return; }
    scroll.addEventListener("wheel", function (event) {
      if (!event.ctrlKey) { return; }
      event.preventDefault();
      var rect = scroll.getBoundingClientRect();
      zoom(box, event.deltaY < 0 ? 1.25 : 0.8, event.clientX - rect.left);
    }, { passive: false });
    var drag = null;
    scroll.addEventListener("pointerdown", function (event) {
      drag = [event.clientX, scroll.scrollLeft];
      scroll.classList.add("dragging");
    });
    window.addEventListener("pointermove", function (event) {
      if (drag) { scroll.scrollLeft = drag[1] - (event.clientX - drag[0]); }
    });
    window.addEventListener("pointerup", function () {
      drag = null;
      scroll.classList.remove("dragging");
    });
  });
  refresh();
})();
"""


def _script_hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


#: No external resource, the inline style, and this one script by its hash.
CSP = f"default-src 'none'; style-src 'unsafe-inline'; script-src {_script_hash(SCRIPT)}"
