(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("latent-data").textContent);
  const SIZE = 42, PAGE = 50;
  const state = {key: "s", desc: true, model: "all", cls: "all", minFreq: 0, latent: "", hideDead: true, page: 0};
  const $ = (id) => document.getElementById(id);
  const table = $("latent-table"), body = table.querySelector("tbody");
  const option = (select, value, text) => { const o = document.createElement("option"); o.value = value; o.textContent = text; select.appendChild(o); };
  option($("f-model"), "all", "all"); data.models.forEach((name, m) => option($("f-model"), String(m), name));
  const classes = [...new Set(data.latents.map((l) => l.c).filter((c) => c !== null))].sort();
  option($("f-class"), "all", "all"); classes.forEach((c) => option($("f-class"), c, c));
  $("notes").textContent = data.models.map((name, m) => name + ": " + data.notes[m]).join(" \u00b7 ");
  const fmt = (value, digits) => value === null || value === undefined ? "\u2013" : Number(value).toFixed(digits);
  function compare(a, b) {
    const x = a[state.key], y = b[state.key];
    const missing = (v) => v === null || v === undefined;
    if (missing(x) && missing(y)) return a.m - b.m || a.i - b.i;
    if (missing(x)) return 1;
    if (missing(y)) return -1;
    const order = typeof x === "string" ? x.localeCompare(y) : x - y;
    return (state.desc ? -order : order) || a.m - b.m || a.i - b.i;
  }
  function visible() {
    return data.latents.filter((l) =>
      (state.model === "all" || String(l.m) === state.model) &&
      (state.cls === "all" || l.c === state.cls) &&
      (l.f === null ? 0 : l.f) >= state.minFreq &&
      (!state.hideDead || l.s !== null) &&
      (state.latent === "" || String(l.i) === state.latent));
  }
  function thumbs(l) {
    const cell = document.createElement("div");
    cell.className = "thumbs";
    const sprite = data.sprite;
    l.t.forEach((tile, n) => {
      const span = document.createElement("span");
      span.className = "thumb";
      const row = Math.floor(tile / sprite.columns), col = tile % sprite.columns;
      span.style.backgroundSize = (sprite.columns * SIZE) + "px " + (sprite.rows * SIZE) + "px";
      span.style.backgroundPosition = (-col * SIZE) + "px " + (-row * SIZE) + "px";
      span.title = "activation " + l.v[n];
      cell.appendChild(span);
    });
    return cell;
  }
  function snippets(l) {
    const cell = document.createElement("div");
    cell.className = "snippets";
    const top = Math.max(...l.x.map((x) => x.a[x.c] || 0), 1e-12);
    for (const x of l.x) {
      const line = document.createElement("div");
      line.className = "snippet";
      x.w.forEach((word, n) => {
        const span = document.createElement("span");
        span.textContent = word.replace(/\n/g, "\u21b5");
        const a = x.a[n];
        span.title = a === null ? "not in the store" : "activation " + a;
        if (a !== null && a > 0) span.style.backgroundColor = "rgba(230, 120, 0, " + Math.min(1, a / top).toFixed(3) + ")";
        if (n === x.c) span.className = "top-token";
        line.appendChild(span);
      });
      cell.appendChild(line);
    }
    return cell;
  }
  function render() {
    const rows = visible().sort(compare);
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    const start = state.page * PAGE, shown = rows.slice(start, start + PAGE);
    body.textContent = "";
    for (const l of shown) {
      const tr = document.createElement("tr");
      tr.dataset.latent = l.i;
      const cells = [data.models[l.m], l.i, fmt(l.s, 3), fmt(l.pb, 2), fmt(l.pw, 2), fmt(l.f, 4), l.c === null ? "\u2013" : l.c];
      for (const value of cells) { const td = document.createElement("td"); td.textContent = value; tr.appendChild(td); }
      const td = document.createElement("td");
      if (l.x && l.x.length) td.appendChild(snippets(l));
      else if (data.sprite && l.t.length) td.appendChild(thumbs(l));
      else td.textContent = "\u2013";
      tr.appendChild(td);
      body.appendChild(tr);
    }
    $("count").textContent = rows.length ? `latents ${start + 1}\u2013${start + shown.length} of ${rows.length}` : "no latent matches";
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
    table.querySelectorAll("th[data-key]").forEach((th) => {
      th.classList.toggle("sorted-desc", th.dataset.key === state.key && state.desc);
      th.classList.toggle("sorted-asc", th.dataset.key === state.key && !state.desc);
    });
  }
  table.querySelectorAll("th[data-key]").forEach((th) => th.addEventListener("click", () => {
    if (state.key === th.dataset.key) state.desc = !state.desc; else { state.key = th.dataset.key; state.desc = true; }
    state.page = 0; render();
  }));
  $("f-model").addEventListener("change", (e) => { state.model = e.target.value; state.page = 0; render(); });
  $("f-class").addEventListener("change", (e) => { state.cls = e.target.value; state.page = 0; render(); });
  $("f-freq").addEventListener("input", (e) => { state.minFreq = Number(e.target.value) || 0; state.page = 0; render(); });
  $("f-latent").addEventListener("input", (e) => { state.latent = e.target.value.trim(); state.page = 0; render(); });
  $("f-dead").addEventListener("change", (e) => { state.hideDead = e.target.checked; state.page = 0; render(); });
  $("prev").addEventListener("click", () => { state.page -= 1; render(); });
  $("next").addEventListener("click", () => { state.page += 1; render(); });
  render();
})();
