// mtinsar web map: log in with an API key, follow jobs, submit SBAS jobs, and explore a
// result on a small slippy map of Web-Mercator tiles (no external library, no basemap).
// Open a result directly with /#job=<id>. An infra job opens the map of the sbas job it
// analysed, with its segments drawn on top, coloured by risk class.
"use strict";

(function () {
  const TILE = 256;
  const MAX_ZOOM = 20;
  const KEY_STORE = "mtinsar.apiKey";
  const POLL_MS = 3000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  // Colour stops (ColorBrewer RdBu, matplotlib viridis) for the colour bar; the tiles are
  // coloured by the server with the same maps.
  const STOPS = {
    rdbu: ["#67001f", "#b2182b", "#d6604d", "#f4a582", "#fddbc7", "#f7f7f7",
           "#d1e5f0", "#92c5de", "#4393c3", "#2166ac", "#053061"],
    viridis: ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89",
              "#35b779", "#6ece58", "#b5de2b", "#fde725"],
  };
  STOPS.rdbu_r = STOPS.rdbu.slice().reverse();
  // Risk classes of infra segments (mtinsar.infra.metrics.RISK_LABELS), worst first.
  const RISK = [
    { cls: 3, label: "high", colour: "#d73027" },
    { cls: 2, label: "moderate", colour: "#fc8d59" },
    { cls: 1, label: "low", colour: "#fee08b" },
    { cls: 0, label: "stable", colour: "#1a9850" },
    { cls: -1, label: "no data", colour: "#969696" },
  ];

  const $ = (id) => document.getElementById(id);
  const state = {
    key: localStorage.getItem(KEY_STORE) || "",
    jobs: [],
    jobId: null, // the selected job
    mapJob: null, // the job whose layers are shown: the selected one, or an infra job's sbas job
    info: null,
    segments: null, // an infra job's segments (GeoJSON FeatureCollection), or null
    segmentId: null, // the segment whose metrics are shown
    layer: "velocity",
    view: null, // {z, cx, cy}: zoom and the world-pixel position of the map centre
    tiles: new Map(), // "z/x/y|query" -> <img>
    marker: null,
    pollTimer: null,
  };

  // ------------------------------------------------------------------ HTTP

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (state.key) h.Authorization = "Bearer " + state.key;
    return h;
  }

  async function api(path, options) {
    const opts = Object.assign({}, options || {});
    opts.headers = headers(opts.headers);
    const response = await fetch(path, opts);
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try {
        const body = await response.json();
        const detail = body.detail !== undefined ? body.detail : body.description || body.title;
        if (detail !== undefined) {
          message = typeof detail === "string" ? detail : JSON.stringify(detail);
        }
      } catch (e) { /* not JSON: keep the status line */ }
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return response;
  }

  // ------------------------------------------------------------------ login

  function showLogin() {
    $("api-key").value = state.key;
    $("login-status").textContent = state.key ? "key set" : "not logged in";
  }

  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = $("api-key").value.trim();
    localStorage.setItem(KEY_STORE, state.key);
    showLogin();
    startPolling();
    if (state.jobId) openJob(state.jobId);
  });

  $("logout").addEventListener("click", () => {
    state.key = "";
    localStorage.removeItem(KEY_STORE);
    showLogin();
    clearInterval(state.pollTimer);
    state.jobs = [];
    renderJobs();
  });

  // ------------------------------------------------------------------ jobs

  async function refreshJobs() {
    try {
      const body = await (await api("/jobs")).json();
      state.jobs = body.jobs || [];
      $("jobs-error").hidden = true;
      renderJobs();
    } catch (error) {
      $("jobs-error").textContent = "Jobs: " + error.message;
      $("jobs-error").hidden = false;
    }
  }

  function renderJobs() {
    const list = $("job-list");
    list.replaceChildren();
    for (const job of state.jobs) {
      const item = document.createElement("li");
      item.dataset.testid = "job-" + job.jobID;
      item.dataset.jobId = job.jobID;
      item.dataset.status = job.status;
      item.className = job.status + (job.jobID === state.jobId ? " selected" : "");
      const status = document.createElement("span");
      status.className = "status status-" + job.status;
      status.textContent = job.status;
      const title = document.createElement("div");
      title.append(status, " " + (job.processID || "") + " · " + job.jobID.slice(0, 8));
      item.append(title);
      if (job.status === "running" || job.status === "accepted") {
        const bar = document.createElement("progress");
        bar.max = 100;
        bar.value = job.progress || 0;
        item.append(bar);
      }
      const message = document.createElement("div");
      message.className = "message";
      message.textContent = (job.message || "") + (job.created ? " · " + job.created : "");
      item.append(message);
      if (job.status === "successful") {
        item.title = "Open the map of this result";
        item.addEventListener("click", () => { location.hash = "job=" + job.jobID; });
      }
      list.append(item);
    }
  }

  function startPolling() {
    clearInterval(state.pollTimer);
    refreshJobs();
    state.pollTimer = setInterval(() => { if (state.key) refreshJobs(); }, POLL_MS);
  }

  // ------------------------------------------------------------------ submit

  $("submit-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const out = $("submit-status");
    const inputs = { source: $("submit-source").value.trim() };
    const text = $("submit-config").value.trim();
    if (text) {
      try {
        inputs.config = JSON.parse(text);
      } catch (error) {
        out.className = "error";
        out.textContent = "Config is not valid JSON: " + error.message;
        return;
      }
    }
    out.className = "";
    out.textContent = "submitting…";
    try {
      const response = await api("/processes/sbas/execution", {
        method: "POST",
        headers: { "Content-Type": "application/json", Prefer: "respond-async" },
        body: JSON.stringify({ inputs: inputs }),
      });
      const info = await response.json();
      out.dataset.jobId = info.jobID || "";
      out.textContent = "submitted: job " + (info.jobID || response.headers.get("Location"));
      refreshJobs();
    } catch (error) {
      out.className = "error";
      out.textContent = "Refused: " + error.message;
    }
  });

  // ------------------------------------------------------------------ projection

  function worldSize(z) { return TILE * Math.pow(2, z); }

  function lonLatToWorld(lon, lat, z) {
    const s = worldSize(z);
    const phi = (Math.max(Math.min(lat, 85.05112878), -85.05112878) * Math.PI) / 180;
    const x = ((lon + 180) / 360) * s;
    const y = (0.5 - Math.log(Math.tan(Math.PI / 4 + phi / 2)) / (2 * Math.PI)) * s;
    return [x, y];
  }

  function worldToLonLat(x, y, z) {
    const s = worldSize(z);
    const lon = (x / s) * 360 - 180;
    const n = Math.PI - (2 * Math.PI * y) / s;
    const lat = (180 / Math.PI) * Math.atan(Math.sinh(n));
    return [lon, lat];
  }

  function mapSize() {
    const el = $("map");
    return [el.clientWidth, el.clientHeight];
  }

  // Position of lon/lat in the map element, in CSS pixels from its top-left corner.
  function lonLatToPixel(lon, lat) {
    const v = state.view;
    const [w, h] = mapSize();
    const [x, y] = lonLatToWorld(lon, lat, v.z);
    return [x - v.cx + w / 2, y - v.cy + h / 2];
  }

  function pixelToLonLat(px, py) {
    const v = state.view;
    const [w, h] = mapSize();
    return worldToLonLat(v.cx + px - w / 2, v.cy + py - h / 2, v.z);
  }

  // ------------------------------------------------------------------ map

  function tileQuery() {
    const params = new URLSearchParams();
    const vmin = $("vmin").value, vmax = $("vmax").value;
    if (vmin !== "") params.set("vmin", vmin);
    if (vmax !== "") params.set("vmax", vmax);
    return params.toString();
  }

  function fitBounds() {
    const info = state.info;
    if (!info) return;
    const [west, south, east, north] = info.bounds;
    const [w, h] = mapSize();
    let z = MAX_ZOOM;
    for (; z > 0; z--) {
      const [x0, y0] = lonLatToWorld(west, north, z);
      const [x1, y1] = lonLatToWorld(east, south, z);
      if (x1 - x0 <= w * 0.9 && y1 - y0 <= h * 0.9) break;
    }
    const [cx0, cy0] = lonLatToWorld(west, north, z);
    const [cx1, cy1] = lonLatToWorld(east, south, z);
    state.view = { z: z, cx: (cx0 + cx1) / 2, cy: (cy0 + cy1) / 2 };
    drawMap();
  }

  function zoomAt(delta, px, py) {
    const v = state.view;
    if (!v) return;
    const z = Math.max(0, Math.min(MAX_ZOOM, v.z + delta));
    if (z === v.z) return;
    const [w, h] = mapSize();
    const f = Math.pow(2, z - v.z);
    // keep the point under the cursor in place
    const wx = v.cx + px - w / 2, wy = v.cy + py - h / 2;
    state.view = { z: z, cx: wx * f - (px - w / 2), cy: wy * f - (py - h / 2) };
    drawMap();
  }

  function drawMap() {
    const map = $("map");
    const v = state.view;
    if (!v || !state.info) return;
    const [w, h] = mapSize();
    const n = Math.pow(2, v.z);
    const left = v.cx - w / 2, top = v.cy - h / 2;
    const query = tileQuery();
    const wanted = new Set();
    const tx0 = Math.floor(left / TILE), tx1 = Math.floor((left + w) / TILE);
    const ty0 = Math.max(0, Math.floor(top / TILE)), ty1 = Math.min(n - 1, Math.floor((top + h) / TILE));
    const [west, south, east, north] = state.info.bounds;
    const [bx0, by0] = lonLatToWorld(west, north, v.z);
    const [bx1, by1] = lonLatToWorld(east, south, v.z);
    for (let ty = ty0; ty <= ty1; ty++) {
      for (let tx = tx0; tx <= tx1; tx++) {
        const x = ((tx % n) + n) % n;
        // only tiles touching the result: the server would answer the others transparent
        if ((tx + 1) * TILE < bx0 || tx * TILE > bx1 || (ty + 1) * TILE < by0 || ty * TILE > by1) continue;
        const id = v.z + "/" + x + "/" + ty + "|" + state.layer + "|" + query;
        wanted.add(id);
        let img = state.tiles.get(id);
        if (!img) {
          img = document.createElement("img");
          img.className = "tile";
          img.alt = "";
          img.dataset.tile = v.z + "/" + x + "/" + ty;
          state.tiles.set(id, img);
          loadTile(img, v.z, x, ty, query);
          map.append(img);
        }
        img.style.left = Math.round(tx * TILE - left) + "px";
        img.style.top = Math.round(ty * TILE - top) + "px";
      }
    }
    for (const [id, img] of state.tiles) {
      if (!wanted.has(id)) {
        if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
        img.remove();
        state.tiles.delete(id);
      }
    }
    let outline = map.querySelector(".outline");
    if (!outline) {
      outline = document.createElement("div");
      outline.className = "outline";
      map.append(outline);
    }
    outline.style.left = bx0 - left + "px";
    outline.style.top = by0 - top + "px";
    outline.style.width = bx1 - bx0 + "px";
    outline.style.height = by1 - by0 + "px";
    drawMarker();
    drawSegments();
    map.dataset.zoom = String(v.z);
  }

  // Tiles need the Authorization header, which <img src> cannot send: fetch them.
  async function loadTile(img, z, x, y, query) {
    const url = "/jobs/" + encodeURIComponent(state.mapJob) + "/map/tiles/" + state.layer +
      "/" + z + "/" + x + "/" + y + ".png" + (query ? "?" + query : "");
    try {
      const blob = await (await api(url)).blob();
      if (img.isConnected) img.src = URL.createObjectURL(blob);
    } catch (error) {
      setStatus("tile " + z + "/" + x + "/" + y + ": " + error.message, true);
    }
  }

  function clearTiles() {
    for (const img of state.tiles.values()) {
      if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
      img.remove();
    }
    state.tiles.clear();
  }

  function drawMarker() {
    const map = $("map");
    if (!state.marker) return;
    let el = map.querySelector(".marker");
    if (!el) {
      el = document.createElement("div");
      el.className = "marker";
      map.append(el);
    }
    const [px, py] = lonLatToPixel(state.marker[0], state.marker[1]);
    el.style.left = px + "px";
    el.style.top = py + "px";
  }

  function setStatus(text, isError) {
    const el = $("map-status");
    el.textContent = text;
    el.className = isError ? "error" : "";
  }

  // drag to pan, click to pick a pixel
  (function wireMap() {
    const map = $("map");
    let drag = null;
    map.addEventListener("pointerdown", (event) => {
      if (!state.view) return;
      const segment = event.target.closest ? event.target.closest("[data-segment]") : null;
      drag = { x: event.clientX, y: event.clientY, cx: state.view.cx, cy: state.view.cy, moved: false,
        segment: segment ? segment.dataset.segment : null };
      map.setPointerCapture(event.pointerId);
    });
    map.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
      if (drag.moved) {
        map.classList.add("dragging");
        state.view.cx = drag.cx - dx;
        state.view.cy = drag.cy - dy;
        drawMap();
      }
    });
    map.addEventListener("pointerup", (event) => {
      if (!drag) return;
      const moved = drag.moved, segment = drag.segment;
      drag = null;
      map.classList.remove("dragging");
      if (!moved && segment !== null) {
        showSegment(Number(segment));
      } else if (!moved) {
        const rect = map.getBoundingClientRect();
        const [lon, lat] = pixelToLonLat(event.clientX - rect.left - map.clientLeft,
          event.clientY - rect.top - map.clientTop);
        pickPoint(lon, lat);
      }
    });
    map.addEventListener("wheel", (event) => {
      event.preventDefault();
      const rect = map.getBoundingClientRect();
      zoomAt(event.deltaY < 0 ? 1 : -1, event.clientX - rect.left, event.clientY - rect.top);
    }, { passive: false });
    $("zoom-in").addEventListener("click", () => { const [w, h] = mapSize(); zoomAt(1, w / 2, h / 2); });
    $("zoom-out").addEventListener("click", () => { const [w, h] = mapSize(); zoomAt(-1, w / 2, h / 2); });
    $("zoom-fit").addEventListener("click", fitBounds);
    window.addEventListener("resize", drawMap);
  })();

  // ------------------------------------------------------------------ colour range

  function layerInfo() {
    return (state.info.layers || []).find((l) => l.name === state.layer) || { units: "", colormap: "rdbu" };
  }

  function onRangeChange() {
    clearTiles();
    drawMap();
    drawColorbar();
  }
  $("vmin").addEventListener("change", onRangeChange);
  $("vmax").addEventListener("change", onRangeChange);
  $("layer").addEventListener("change", () => {
    state.layer = $("layer").value;
    const layer = layerInfo();
    $("vmin").value = layer.range[0];
    $("vmax").value = layer.range[1];
    onRangeChange();
  });

  function svg(tag, attrs, parent) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const k in attrs) el.setAttribute(k, attrs[k]);
    if (parent) parent.append(el);
    return el;
  }

  function text(parent, x, y, content, anchor, extra) {
    const t = svg("text", Object.assign({ x: x, y: y, "text-anchor": anchor || "middle" }, extra || {}), parent);
    t.textContent = content;
    return t;
  }

  function drawColorbar() {
    const bar = $("colorbar");
    bar.replaceChildren();
    if (!state.info) return;
    const layer = layerInfo();
    const stops = STOPS[layer.colormap] || STOPS.viridis;
    const defs = svg("defs", {}, bar);
    const grad = svg("linearGradient", { id: "cbar-grad" }, defs);
    stops.forEach((c, i) => svg("stop", { offset: (i / (stops.length - 1)) * 100 + "%", "stop-color": c }, grad));
    svg("rect", { x: 10, y: 4, width: 300, height: 14, fill: "url(#cbar-grad)", stroke: "#555" }, bar);
    const vmin = parseFloat($("vmin").value), vmax = parseFloat($("vmax").value);
    text(bar, 10, 30, fmt(vmin), "start");
    text(bar, 160, 30, fmt((vmin + vmax) / 2));
    text(bar, 310, 30, fmt(vmax), "end");
    const units = layer.units || (state.layer === "temporal_coherence" ? "0..1" : "");
    const label = text(bar, 160, 40, state.layer + (units ? " [" + units + "]" : ""));
    label.setAttribute("data-testid", "colorbar-label");
  }

  function fmt(v) {
    if (!isFinite(v)) return "";
    return Math.abs(v) >= 10 ? v.toFixed(0) : String(Math.round(v * 100) / 100);
  }

  // ------------------------------------------------------------------ open a result

  async function openJob(jobId) {
    state.jobId = jobId;
    state.mapJob = jobId;
    state.segments = null;
    state.segmentId = null;
    state.marker = null;
    clearTiles();
    $("map").replaceChildren();
    $("map").dataset.state = "loading";
    $("map").dataset.job = jobId;
    delete $("map").dataset.overlay;
    $("map-title").textContent = "Job " + jobId;
    $("ts-chart").replaceChildren();
    $("ts-velocity").textContent = "";
    $("ts-info").textContent = "";
    showLegend();
    showSegment(null);
    renderJobs();
    let info;
    try {
      info = await (await api("/jobs/" + encodeURIComponent(jobId) + "/map/info")).json();
      if (info.kind === "infra") {
        if (!info.result_job) throw new Error("it does not name the sbas job it analysed");
        const url = "/jobs/" + encodeURIComponent(jobId) + "/map/segments";
        const segments = await (await api(url)).json();
        info = await (await api("/jobs/" + encodeURIComponent(info.result_job) + "/map/info")).json();
        if (state.jobId !== jobId) return; // another job was selected meanwhile
        state.segments = segments;
        state.mapJob = segments.result_job;
      }
    } catch (error) {
      if (state.jobId !== jobId) return;
      $("map").dataset.state = "error";
      setStatus("Cannot open the result of job " + jobId + ": " + error.message, true);
      return;
    }
    if (state.jobId !== jobId) return;
    state.info = info;
    $("map").dataset.job = state.mapJob;
    if (state.segments) {
      $("map").dataset.overlay = jobId;
      $("map-title").textContent = "Infra job " + jobId.slice(0, 8) + " over job " + state.mapJob;
    }
    const select = $("layer");
    select.replaceChildren();
    for (const layer of state.info.layers) {
      if (layer.name === "mask") continue;
      const option = document.createElement("option");
      option.value = layer.name;
      option.textContent = layer.name + (layer.units ? " (" + layer.units + ")" : "");
      select.append(option);
    }
    state.layer = "velocity";
    select.value = state.layer;
    $("vmin").value = state.info.velocity_range[0];
    $("vmax").value = state.info.velocity_range[1];
    setStatus(state.info.crs + " · " + state.info.shape[0] + "×" + state.info.shape[1] + " px · " +
      state.info.dates.length + " dates · click a pixel for its time series" +
      (state.segments ? ", a segment for its metrics" : ""), false);
    fitBounds();
    drawColorbar();
    showLegend();
    $("map").dataset.state = "ready";
    loadNetwork(state.mapJob);
  }

  // ------------------------------------------------------------------ infra segments

  function riskOf(cls) {
    return RISK.find((r) => r.cls === cls) || RISK[RISK.length - 1];
  }

  // The lines of a GeoJSON geometry as arrays of [lon, lat]; polygons give their rings.
  function geometryLines(geometry) {
    const c = geometry ? geometry.coordinates : null;
    switch (geometry ? geometry.type : "") {
      case "LineString": return [c];
      case "MultiLineString": case "Polygon": return c;
      case "MultiPolygon": return [].concat.apply([], c);
      default: return [];
    }
  }

  function drawSegments() {
    const map = $("map");
    let layer = $("segments-layer");
    if (!state.segments || !state.view) {
      if (layer) layer.remove();
      return;
    }
    const [w, h] = mapSize();
    if (!layer) {
      layer = svg("svg", { id: "segments-layer", "data-testid": "segments-layer" });
      map.append(layer);
    }
    layer.setAttribute("width", w);
    layer.setAttribute("height", h);
    layer.replaceChildren();
    for (const feature of state.segments.features) {
      const p = feature.properties;
      const risk = riskOf(p.risk_class);
      const polygon = /Polygon/.test(feature.geometry.type);
      const group = svg("g", {
        class: "segment risk-" + risk.label.replace(" ", "-") +
          (p.segment_id === state.segmentId ? " selected" : ""),
        "data-segment": p.segment_id,
        "data-risk": p.risk_class,
        stroke: risk.colour,
        fill: polygon ? risk.colour : "none",
      }, layer);
      for (const line of geometryLines(feature.geometry)) {
        const points = line.map((xy) => lonLatToPixel(xy[0], xy[1]).map((v) => v.toFixed(1)).join(","));
        svg(polygon ? "polygon" : "polyline", { points: points.join(" ") }, group);
      }
      const title = svg("title", {}, group);
      title.textContent = "segment " + p.segment_id + ": " + risk.label + ", " +
        num(p.v_median_mm_yr, 1) + " mm/yr";
    }
  }

  function showLegend() {
    const legend = $("segments-legend");
    legend.replaceChildren();
    legend.hidden = !state.segments;
    if (!state.segments) return;
    const counts = new Map();
    for (const f of state.segments.features) {
      counts.set(f.properties.risk_class, (counts.get(f.properties.risk_class) || 0) + 1);
    }
    const head = document.createElement("span");
    head.textContent = "Risk:";
    legend.append(head);
    for (const risk of RISK) {
      const item = document.createElement("span");
      item.className = "legend-item";
      item.dataset.risk = String(risk.cls);
      const swatch = document.createElement("i");
      swatch.style.background = risk.colour;
      item.append(swatch, " " + risk.label + " (" + (counts.get(risk.cls) || 0) + ")");
      legend.append(item);
    }
  }

  function num(v, digits) {
    return v === null || v === undefined || !isFinite(v) ? "–" : Number(v).toFixed(digits);
  }

  // Show the metrics of segment `id` (null: hide the panel).
  function showSegment(id) {
    const panel = $("segment-info");
    const feature = state.segments && id !== null ?
      state.segments.features.find((f) => f.properties.segment_id === id) : null;
    state.segmentId = feature ? id : null;
    panel.hidden = !feature;
    panel.replaceChildren();
    drawSegments();
    if (!feature) {
      delete panel.dataset.segment;
      return;
    }
    const p = feature.properties;
    panel.dataset.segment = String(id);
    panel.dataset.risk = String(p.risk_class);
    const title = document.createElement("h3");
    title.textContent = "Segment " + id + " · " + riskOf(p.risk_class).label;
    const rows = [
      ["risk class", p.risk + " (" + p.risk_class + ")"],
      ["median velocity", num(p.v_median_mm_yr, 1) + " mm/yr", "v_median_mm_yr"],
      ["extreme velocity", num(p.v_extreme_mm_yr, 1) + " mm/yr"],
      ["differential settlement", num(p.diff_settlement_mm_yr_100m, 2) + " mm/yr per 100 m",
        "diff_settlement_mm_yr_100m"],
      ["angular distortion", num(p.angular_distortion, 6) + " rad"],
      ["displacement", num(p.displacement_mm, 1) + " mm"],
      ["projected settlement", num(p.projected_settlement_mm, 1) + " mm"],
      ["accelerating", p.accelerating ? "yes" : "no"],
      ["reliable pixels", String(p.n_pixels)],
      ["chainage", num(p.chainage_start_m, 0) + "–" + num(p.chainage_end_m, 0) + " m"],
    ];
    const table = document.createElement("table");
    for (const [name, value, key] of rows) {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      const td = document.createElement("td");
      th.textContent = name;
      td.textContent = value;
      if (key) td.dataset.metric = key;
      tr.append(th, td);
      table.append(tr);
    }
    panel.append(title, table);
  }

  function jobFromHash() {
    const match = /(?:^#|&)job=([^&]+)/.exec(location.hash);
    return match ? decodeURIComponent(match[1]) : null;
  }

  window.addEventListener("hashchange", () => {
    const id = jobFromHash();
    if (id && id !== state.jobId) openJob(id);
  });

  // ------------------------------------------------------------------ time series

  async function pickPoint(lon, lat) {
    if (!state.jobId || !state.info) return;
    state.marker = [lon, lat];
    drawMarker();
    const url = "/jobs/" + encodeURIComponent(state.mapJob) + "/map/timeseries?lon=" +
      lon.toFixed(6) + "&lat=" + lat.toFixed(6);
    $("ts-velocity").textContent = "…";
    try {
      const ts = await (await api(url)).json();
      drawTimeseries(ts);
      setStatus("pixel row " + ts.pixel.row + ", col " + ts.pixel.col, false);
    } catch (error) {
      $("ts-chart").replaceChildren();
      $("ts-velocity").textContent = "";
      $("ts-info").textContent = "";
      setStatus(error.message, true);
    }
  }

  function dateMs(iso) { return Date.parse(iso + "T00:00:00Z"); }

  // A plot frame in `el` mapping data ranges to pixels; returns the two scale functions.
  function frame(el, xmin, xmax, ymin, ymax) {
    const W = +el.getAttribute("width"), H = +el.getAttribute("height");
    const m = { l: 48, r: 10, t: 10, b: 28 };
    if (ymax === ymin) { ymax += 1; ymin -= 1; }
    if (xmax === xmin) { xmax += 1; xmin -= 1; }
    const sx = (v) => m.l + ((v - xmin) / (xmax - xmin)) * (W - m.l - m.r);
    const sy = (v) => H - m.b - ((v - ymin) / (ymax - ymin)) * (H - m.t - m.b);
    for (const t of niceTicks(ymin, ymax, 5)) {
      svg("line", { class: "grid", x1: m.l, x2: W - m.r, y1: sy(t), y2: sy(t) }, el);
      text(el, m.l - 4, sy(t) + 3, fmt(t), "end");
    }
    for (const t of dateTicks(xmin, xmax)) {
      svg("line", { class: "axis", x1: sx(t), x2: sx(t), y1: H - m.b, y2: H - m.b + 4 }, el);
      text(el, sx(t), H - m.b + 15, new Date(t).toISOString().slice(0, 7));
    }
    svg("line", { class: "axis", x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }, el);
    svg("line", { class: "axis", x1: m.l, x2: m.l, y1: m.t, y2: H - m.b }, el);
    return { sx: sx, sy: sy, m: m, W: W, H: H };
  }

  function niceTicks(lo, hi, count) {
    const step0 = (hi - lo) / count;
    const p = Math.pow(10, Math.floor(Math.log10(step0)));
    const step = [1, 2, 5, 10].map((k) => k * p).find((s) => s >= step0);
    const out = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(t);
    return out;
  }

  function dateTicks(lo, hi) {
    // first days of months, thinned to at most about six labels
    const out = [];
    const d = new Date(lo);
    let cur = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
    while (cur <= hi) {
      out.push(cur);
      const c = new Date(cur);
      cur = Date.UTC(c.getUTCFullYear(), c.getUTCMonth() + 1, 1);
    }
    const every = Math.max(1, Math.ceil(out.length / 6));
    return out.filter((_, i) => i % every === 0);
  }

  function drawTimeseries(ts) {
    const el = $("ts-chart");
    el.replaceChildren();
    const t = ts.dates.map(dateMs);
    const values = ts.displacement_mm.concat(ts.model_mm).filter((v) => v !== null);
    const ymin = Math.min.apply(null, values), ymax = Math.max.apply(null, values);
    const pad = (ymax - ymin) * 0.08 || 1;
    const f = frame(el, t[0], t[t.length - 1], ymin - pad, ymax + pad);
    text(el, 12, f.m.t + (f.H - f.m.t - f.m.b) / 2, "LOS [mm]", "middle",
      { transform: "rotate(-90 12 " + (f.m.t + (f.H - f.m.t - f.m.b) / 2) + ")" });
    const line = [];
    ts.model_mm.forEach((v, i) => { if (v !== null) line.push(f.sx(t[i]).toFixed(1) + "," + f.sy(v).toFixed(1)); });
    if (line.length) svg("polyline", { class: "model", points: line.join(" "), "data-testid": "ts-model" }, el);
    ts.displacement_mm.forEach((v, i) => {
      if (v === null) return;
      const c = svg("circle", { class: "obs", cx: f.sx(t[i]), cy: f.sy(v), r: 2.5 }, el);
      const title = svg("title", {}, c);
      title.textContent = ts.dates[i] + ": " + v.toFixed(1) + " mm";
    });
    const vel = ts.velocity_mm_per_yr;
    $("ts-velocity").textContent = vel === null ? "no velocity" : vel.toFixed(1) + " mm/yr";
    $("ts-velocity").dataset.value = vel === null ? "" : String(vel);
    const parts = [];
    if (ts.velocity_std_mm_per_yr !== null) parts.push("± " + ts.velocity_std_mm_per_yr.toFixed(1) + " mm/yr");
    if (ts.temporal_coherence !== null) parts.push("coherence " + ts.temporal_coherence.toFixed(2));
    if (ts.reliable === false) parts.push("unreliable pixel");
    parts.push("lon " + ts.pixel.lon.toFixed(5) + ", lat " + ts.pixel.lat.toFixed(5));
    $("ts-info").textContent = "(" + parts.join(" · ") + ")";
  }

  // ------------------------------------------------------------------ network

  async function loadNetwork(jobId) {
    const el = $("network");
    el.replaceChildren();
    try {
      const net = await (await api("/jobs/" + encodeURIComponent(jobId) + "/map/network")).json();
      if (jobId === state.mapJob) drawNetwork(net);
    } catch (error) {
      $("network-info").textContent = error.message;
    }
  }

  function drawNetwork(net) {
    const el = $("network");
    el.replaceChildren();
    const dates = net.dates.concat(net.other_dates || []).sort();
    const useBperp = net.bperp_m && net.bperp_m.every((b) => b !== null) && !(net.other_dates || []).length;
    const yOf = new Map();
    dates.forEach((d, i) => yOf.set(d, useBperp ? net.bperp_m[net.dates.indexOf(d)] : i));
    const ys = Array.from(yOf.values());
    const t = dates.map(dateMs);
    const f = frame(el, Math.min.apply(null, t), Math.max.apply(null, t), Math.min.apply(null, ys), Math.max.apply(null, ys));
    const mid = f.m.t + (f.H - f.m.t - f.m.b) / 2;
    text(el, 12, mid, useBperp ? "Bperp [m]" : "date index", "middle", { transform: "rotate(-90 12 " + mid + ")" });
    for (const p of net.pairs) {
      const a = p.reference, b = p.secondary;
      if (!yOf.has(a) || !yOf.has(b)) continue;
      const l = svg("line", {
        class: p.kept ? "pair-kept" : "pair-dropped",
        x1: f.sx(dateMs(a)), y1: f.sy(yOf.get(a)), x2: f.sx(dateMs(b)), y2: f.sy(yOf.get(b)),
      }, el);
      const title = svg("title", {}, l);
      title.textContent = a + " – " + b + (p.kept ? "" : " dropped" + (p.reason ? ": " + p.reason : ""));
    }
    dates.forEach((d) => svg("circle", { class: "date", cx: f.sx(dateMs(d)), cy: f.sy(yOf.get(d)), r: 2.5 }, el));
    $("network-info").textContent = "(" + dates.length + " dates, " + net.n_kept + " pairs kept, " +
      net.n_dropped + " dropped)";
  }

  // ------------------------------------------------------------------ start

  window.mtinsarMap = {
    lonLatToPixel: lonLatToPixel,
    pixelToLonLat: pixelToLonLat,
    openJob: openJob,
    showSegment: showSegment,
    segments: () => state.segments,
    pickPoint: pickPoint,
    fitBounds: fitBounds,
    view: () => Object.assign({}, state.view),
    info: () => state.info,
  };

  showLogin();
  if (state.key) startPolling();
  const first = jobFromHash();
  if (first) openJob(first);
})();
