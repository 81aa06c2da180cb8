/* msae concept browser: search, filters and one page per latent, from data/*.js (no server).
 *
 * data/index.js (window.MSAE_INDEX) holds every run's searchable latent list; data/images.js
 * (window.MSAE_IMAGES) the shown images; data/run-RRR-CCC.js the pages of up to INDEX.chunk
 * latents of one run, loaded with a <script> tag when first needed (fetch() of file:// URLs is
 * blocked). Every string that comes from data is inserted as text (textContent / text nodes,
 * attribute values via setAttribute): this file never assigns innerHTML, so a term such as
 * "<img onerror=...>" shows as written.
 */
"use strict";
(function () {
  const INDEX = window.MSAE_INDEX;
  const IMAGES = window.MSAE_IMAGES || [];
  const LIMIT = 200;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const runsLoading = new Map();
  let showAll = false;

  /* ------------------------------------------------------------------ DOM helpers */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    setProps(node, props);
    append(node, children);
    return node;
  }
  function svgEl(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    append(node, children);
    return node;
  }
  function setProps(node, props) {
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, String(v));
    }
  }
  function append(node, children) {
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }
  const $ = (id) => document.getElementById(id);

  /* ------------------------------------------------------------------ formatting */
  function pct(x) {
    if (x === null || x === undefined) return "–";
    const p = 100 * x;
    return (p >= 10 ? p.toFixed(1) : p >= 1 ? p.toFixed(2) : p.toPrecision(2)) + "%";
  }
  function num(x, digits) {
    if (x === null || x === undefined) return "–";
    if (Math.abs(x) !== 0 && (Math.abs(x) < 1e-3 || Math.abs(x) >= 1e5)) return x.toExponential(2);
    return Number(x).toFixed(digits === undefined ? 3 : digits);
  }
  function badge(valid) {
    return el("span", { class: "badge " + (valid ? "ok" : "bad"), text: valid ? "valid" : "not valid" });
  }

  /* ------------------------------------------------------------------ state in the URL hash */
  const KEYS = ["q", "name", "run", "attr", "level", "valid", "sel"];
  function readState() {
    const hash = location.hash.replace(/^#/, "");
    const [view, query] = hash.split("?");
    const params = new URLSearchParams(query || "");
    const state = { view: view === "compare" ? "compare" : "concepts" };
    for (const k of KEYS) state[k] = params.get(k) || "";
    return state;
  }
  function stateHash(state) {
    const params = new URLSearchParams();
    for (const k of KEYS) if (state[k]) params.set(k, state[k]);
    const query = params.toString();
    return "#" + state.view + (query ? "?" + query : "");
  }
  function go(changes, replace) {
    const state = Object.assign(readState(), changes);
    const hash = stateHash(state);
    if (replace) {
      history.replaceState(null, "", hash);
      render();
    } else if (location.hash !== hash) {
      location.hash = hash; // hashchange renders
    } else {
      render();
    }
  }

  /* ------------------------------------------------------------------ search index */
  const entries = [];
  const byRun = INDEX.runs.map(() => new Map());
  INDEX.runs.forEach((run, r) => {
    const c = run.latents;
    for (let i = 0; i < c.id.length; i++) {
      const e = {
        run: r, id: c.id[i], name: c.name[i], terms: c.terms[i], attr: c.attr[i], level: c.level[i],
        valid: c.valid[i] === 1, freq: c.freq[i],
      };
      e.lname = String(e.name).toLowerCase();
      e.lterms = e.terms.map((t) => String(t).toLowerCase());
      entries.push(e);
      byRun[r].set(e.id, e);
    }
  });

  function matchRank(e, q) {
    if (!q) return 0;
    if (e.lname === q) return 0;
    if (e.lname.startsWith(q)) return 1;
    if (e.lname.includes(q)) return 2;
    if (e.lterms.includes(q)) return 3;
    if (e.lterms.some((t) => t.includes(q))) return 4;
    return -1;
  }

  function filtered(state) {
    const q = state.q.trim().toLowerCase();
    const name = state.name.toLowerCase();
    const out = [];
    for (const e of entries) {
      if (state.run !== "" && String(e.run) !== state.run) continue;
      if (state.attr === "-" ? e.attr !== "" : state.attr !== "" && e.attr !== state.attr) continue;
      if (state.level !== "" && String(e.level) !== state.level) continue;
      if (state.valid === "yes" && !e.valid) continue;
      if (state.valid === "no" && e.valid) continue;
      if (name && e.lname !== name) continue;
      const rank = matchRank(e, q);
      if (rank < 0) continue;
      out.push([rank, e]);
    }
    out.sort((a, b) => a[0] - b[0] || (b[1].valid - a[1].valid) || b[1].freq - a[1].freq || a[1].run - b[1].run || a[1].id - b[1].id);
    return out.map((x) => x[1]);
  }

  /* ------------------------------------------------------------------ filters */
  function fillSelect(select, options) {
    clear(select);
    for (const [value, label] of options) select.appendChild(el("option", { value: value, text: label }));
  }
  function setupFilters() {
    fillSelect($("f-run"), [["", "all runs"], ...INDEX.runs.map((r, i) => [String(i), r.name])]);
    fillSelect($("f-attr"), [["", "any"], ...INDEX.attributes.map((a) => [a, a]), ["-", "no attribute"]]);
    const levels = [...new Set(INDEX.runs.flatMap((r) => r.ladder))].sort((a, b) => a - b);
    fillSelect($("f-level"), [["", "any"], ...levels.map((k) => [String(k), "k = " + k])]);
    fillSelect($("f-valid"), [["", "any"], ["yes", "valid concepts"], ["no", "not valid"]]);
    $("q").addEventListener("input", () => go({ q: $("q").value, name: "" }, true));
    const selects = { "f-run": "run", "f-attr": "attr", "f-level": "level", "f-valid": "valid" };
    for (const [id, key] of Object.entries(selects)) {
      $(id).addEventListener("change", () => go({ [key]: $(id).value }, true));
    }
    $("filters").addEventListener("submit", (ev) => ev.preventDefault());
    $("more").addEventListener("click", () => { showAll = true; renderList(readState()); });
  }

  /* ------------------------------------------------------------------ list */
  function renderList(state) {
    $("q").value = state.name || state.q;
    $("f-run").value = state.run;
    $("f-attr").value = state.attr;
    $("f-level").value = state.level;
    $("f-valid").value = state.valid;
    const rows = filtered(state);
    const body = document.querySelector("#results tbody");
    clear(body);
    const shown = showAll ? rows : rows.slice(0, LIMIT);
    for (const e of shown) {
      const run = INDEX.runs[e.run];
      const open = () => go({ sel: e.run + "." + e.id });
      const tr = el("tr", {
        "data-run": e.run, "data-latent": e.id, class: state.sel === e.run + "." + e.id ? "selected" : "",
        tabindex: 0, onclick: open, onkeydown: (ev) => { if (ev.key === "Enter") open(); },
      },
        el("td", { text: run.name }),
        el("td", { class: "num", text: String(e.id) }),
        el("td", {}, el("b", { class: "name", text: e.name }), " ", el("span", { class: "terms", text: e.terms.slice(1).join(" · ") })),
        el("td", { text: e.attr }),
        el("td", { class: "num", text: e.level ? String(e.level) : "–" }),
        el("td", { class: "num", text: pct(e.freq) }),
        el("td", {}, badge(e.valid)));
      body.appendChild(tr);
    }
    const total = entries.length;
    const what = state.name ? "named “" + state.name + "”" : state.q ? "matching “" + state.q + "”" : "";
    const more = rows.length > shown.length ? "(first " + shown.length + " shown)" : "";
    $("found").textContent = [rows.length + " of " + total + " alive latents", what, more].filter(Boolean).join(" ");
    $("more").hidden = rows.length <= shown.length;
    $("more").textContent = "Show all " + rows.length;
    renderRunChips(state, rows);
  }

  function renderRunChips(state, rows) {
    const box = $("by-run");
    clear(box);
    if (!state.q && !state.name) return;
    const counts = INDEX.runs.map(() => [0, 0]);
    for (const e of rows) { counts[e.run][0]++; if (e.valid) counts[e.run][1]++; }
    INDEX.runs.forEach((run, r) => {
      const [n, v] = counts[r];
      const label = run.name + ": " + n + (n ? " (" + v + " valid)" : "");
      box.appendChild(n
        ? el("button", { type: "button", class: "chip", title: "show only this run", text: label, onclick: () => go({ run: String(r) }, true) })
        : el("span", { class: "chip none", text: label }));
    });
  }

  /* ------------------------------------------------------------------ run data */
  function loadChunk(r, id) {
    const key = r + "." + Math.floor(id / INDEX.chunk);
    const file = INDEX.runs[r].file + "-" + String(Math.floor(id / INDEX.chunk)).padStart(3, "0") + ".js";
    if (!runsLoading.has(key)) {
      runsLoading.set(key, new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = file;
        script.onload = () => (window.MSAE_RUNS[key] ? resolve(window.MSAE_RUNS[key]) : reject(new Error(file + " holds no data")));
        script.onerror = () => reject(new Error("cannot load " + file));
        document.head.appendChild(script);
      }));
    }
    return runsLoading.get(key);
  }

  /* ------------------------------------------------------------------ latent page */
  function renderDetail(state) {
    const pane = $("detail");
    const [r, id] = state.sel.split(".").map(Number);
    const run = INDEX.runs[r];
    const entry = run && byRun[r].get(id);
    if (!entry) {
      pane.dataset.sel = "";
      clear(pane);
      pane.appendChild(intro());
      return;
    }
    if (pane.dataset.sel === state.sel) return;
    pane.dataset.sel = state.sel;
    clear(pane);
    pane.appendChild(el("p", { class: "muted", text: "loading " + run.name + " …" }));
    loadChunk(r, id).then((chunk) => {
      if (pane.dataset.sel !== state.sel) return;
      clear(pane);
      pane.appendChild(latentPage(r, id, chunk[String(id)]));
      pane.scrollTop = 0;
    }).catch((err) => {
      clear(pane);
      pane.appendChild(el("p", { class: "fail", text: String(err.message || err) }));
    });
  }

  function intro() {
    const dead = INDEX.runs.map((r) => r.name + " " + (r.n_latents - r.alive)).join(", ");
    return el("div", {},
      el("h2", { text: "Pick a latent" }),
      el("p", {}, "Every alive latent of every run has a page: click a row on the left. Search by a concept name or any of its nearest vocabulary terms; filter by run, world attribute, the Matryoshka level at which the latent first appears, or validity. ",
        "Numbers come from ", el("code", { text: INDEX.store }), " (" + INDEX.n_images + " images), the store the concepts stage named the latents on."),
      el("p", { class: "muted", text: "Latents that never fire on these images have no page (dead per run: " + dead + ")." }),
      el("p", {}, el("a", { href: "#compare", text: "Compare the runs: tables, Pareto plot, probes →" })));
  }

  function latentPage(r, id, d) {
    const run = INDEX.runs[r];
    const page = el("article", { class: "latent", "data-run": run.name, "data-latent": id });
    page.appendChild(el("p", { class: "crumb", text: run.name + " · " + run.description + " · latent " + id }));
    page.appendChild(el("h2", {}, el("span", { class: "latent-name", text: "“" + d.name + "”" }), " ", badge(d.valid)));
    const which = el("button", { type: "button", class: "link", text: "Which runs found “" + d.name + "”?", onclick: () => go({ name: d.name, q: "", run: "", attr: "", level: "", valid: "" }) });
    page.appendChild(el("p", {}, which));

    const facts = el("dl", { class: "facts" });
    const fact = (k, ...v) => { facts.appendChild(el("dt", { text: k })); facts.appendChild(el("dd", {}, ...v)); };
    fact("name score", num(d.score) + " (" + run.score_label + "), " + num(d.margin) + " ahead of the next term");
    fact("fires on", pct(d.freq) + " of images (" + d.active + " of " + INDEX.n_images + ")");
    fact(run.nested ? "Matryoshka level" : "level (k ladder)", levelText(run, d));
    fact("attribute", d.attr ? d.attr : "none (the name is no world attribute value)");
    if (d.precision !== null) fact("ground truth", pct(d.precision) + " of its top images have " + d.attr + " = “" + d.name + "”");
    page.appendChild(facts);

    page.appendChild(el("h3", { text: "Why it is " + (d.valid ? "a valid concept" : "not a valid concept") }));
    page.appendChild(validityTable(run.checks, d));

    page.appendChild(el("h3", { text: "Activation histogram (images where it fires)" }));
    page.appendChild(histogram(d.hist, d.hmax, INDEX.n_images - d.active));

    page.appendChild(el("h3", { text: "Top-activating images" }));
    page.appendChild(gallery(d.top, "top"));
    page.appendChild(el("h3", { text: "Random activating images (not among the top)" }));
    page.appendChild(d.random.length ? gallery(d.random, "random") : el("p", { class: "muted", text: "It fires on no other image." }));

    page.appendChild(el("h3", { text: "Nearest vocabulary terms" }));
    const terms = el("table", { class: "small terms-table" }, el("thead", {}, el("tr", {}, el("th", { text: "rank" }), el("th", { text: "term" }), el("th", { text: "score" }))));
    const tbody = el("tbody");
    d.terms.forEach(([term, score], i) => tbody.appendChild(el("tr", {}, el("td", { text: String(i + 1) }), el("td", { text: term }), el("td", { class: "num", text: num(score) }))));
    terms.appendChild(tbody);
    page.appendChild(terms);

    page.appendChild(el("h3", { text: "The same direction in other runs (decoder cosine)" }));
    page.appendChild(el("p", { class: "muted", text: "The " + INDEX.matches + " alive latents of each other run whose decoder direction is closest to this one's (cos 1 = the same direction; ✓ = a valid concept there). " +
      "Chance: the cosine that random directions shaped like the embeddings reach against that run's latents (99th percentile); greyed matches are no closer than that." }));
    page.appendChild(matchesView(d.matches, new Map(run.chance)));
    return page;
  }

  function levelText(run, d) {
    if (!d.level) return "beyond the ladder (best rank " + d.rank + ")";
    const where = "among the top " + d.level + " latents of at least one image (its best rank: " + d.rank + " of " + run.n_latents + ")";
    return run.nested ? "k = " + d.level + ": first " + where
      : "k = " + d.level + ": " + where + "; this model is not nested, levels use the ladder " + run.ladder.join(", ");
  }

  function validityTable(checks, d) {
    const table = el("table", { class: "small validity" }, el("thead", {}, el("tr", {},
      el("th", { text: "rule" }), el("th", { text: "measured" }), el("th", { text: "value" }), el("th", { text: "needed" }), el("th", { text: "" }))));
    const body = el("tbody");
    checks.forEach((c, i) => {
      const ok = d.passed[i];
      body.appendChild(el("tr", {},
        el("td", { text: c.rule }), el("td", { text: c.what }),
        el("td", { class: "num", text: num(d.checks[i], c.rule === "fires" ? 0 : 3) }),
        el("td", { class: "num", text: (c.op === ">=" ? "≥ " : "≤ ") + num(c.threshold, c.rule === "fires" ? 0 : 3) }),
        el("td", { class: ok ? "pass" : "fail", text: ok ? "passed" : "failed" })));
    });
    table.appendChild(body);
    return table;
  }

  function histogram(counts, max, inactive) {
    const W = 440, H = 150, L = 44, B = 28, T = 8, R = 8;
    const top = Math.max(1, ...counts);
    const bw = (W - L - R) / counts.length;
    const svg = svgEl("svg", { class: "hist", width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "activation histogram" });
    counts.forEach((c, i) => {
      const h = (H - T - B) * c / top;
      const lo = max * i / counts.length, hi = max * (i + 1) / counts.length;
      svg.appendChild(svgEl("rect", { class: "bar", x: L + i * bw + 0.5, y: H - B - h, width: Math.max(1, bw - 1), height: h },
        svgEl("title", {}, "activation " + num(lo) + "–" + num(hi) + ": " + c + " images")));
    });
    svg.appendChild(svgEl("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#8c959f" }));
    svg.appendChild(svgEl("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#8c959f" }));
    svg.appendChild(svgEl("text", { x: L, y: H - B + 12, "text-anchor": "middle" }, "0"));
    svg.appendChild(svgEl("text", { x: W - R, y: H - B + 12, "text-anchor": "end" }, num(max)));
    svg.appendChild(svgEl("text", { x: (L + W - R) / 2, y: H - 3, "text-anchor": "middle" }, "activation (dense path)"));
    svg.appendChild(svgEl("text", { x: L - 4, y: T + 8, "text-anchor": "end" }, String(top)));
    svg.appendChild(svgEl("text", { x: L - 4, y: H - B, "text-anchor": "end" }, "0"));
    svg.appendChild(svgEl("text", { x: 10, y: (H - B) / 2, transform: "rotate(-90 10 " + (H - B) / 2 + ")", "text-anchor": "middle" }, "images"));
    return el("div", {}, svg, el("p", { class: "muted", text: "Not drawn: " + inactive + " images on which it does not fire." }));
  }

  function gallery(items, kind) {
    const box = el("div", { class: "gallery " + kind });
    for (const [ref, act] of items) {
      const [src, caption, imageId] = IMAGES[ref];
      const fig = el("figure");
      fig.appendChild(src ? el("img", { src: src, alt: caption || imageId, title: imageId, loading: "lazy" }) : el("div", { class: "noimg", text: "no image" }));
      fig.appendChild(el("figcaption", {}, el("b", { text: "act " + num(act, 2) }), " ", caption || imageId));
      box.appendChild(fig);
    }
    return box;
  }

  function matchesView(matches, chance) {
    if (!matches.length) return el("p", { class: "muted", text: "No other run with the same backbone." });
    const box = el("div", { class: "matches" });
    for (const [r, list] of matches) {
      const run = INDEX.runs[r];
      const level = chance.get(r);
      box.appendChild(el("span", { class: "run" }, run.name, level === null || level === undefined ? "" : el("span", { class: "cos", text: " chance " + num(level, 2) })));
      const cell = el("span", { class: "links" });
      for (const [id, cos] of list) {
        const e = byRun[r].get(id);
        const weak = level !== null && level !== undefined && cos <= level;
        cell.appendChild(el("a", { href: stateHash(Object.assign(readState(), { sel: r + "." + id })), class: "match" + (weak ? " chance" : ""), title: weak ? "no closer than random directions shaped like the data" : null },
          "latent " + id + " “" + (e ? e.name : "?") + "” ", el("span", { class: "cos", text: "cos " + num(cos, 2) }), e && e.valid ? " ✓" : ""));
      }
      box.appendChild(cell);
    }
    return box;
  }

  /* ------------------------------------------------------------------ views */
  function render() {
    const state = readState();
    const compare = state.view === "compare";
    $("view-concepts").hidden = compare;
    $("view-compare").hidden = !compare;
    $("tab-concepts").className = compare ? "" : "active";
    $("tab-compare").className = compare ? "active" : "";
    if (!compare) {
      renderList(state);
      renderDetail(state);
    }
  }

  $("status").textContent = INDEX.runs.length + " runs · " + entries.length + " alive latents · " + INDEX.n_images + " images";
  setupFilters();
  window.addEventListener("hashchange", () => { showAll = false; render(); });
  render();
})();
