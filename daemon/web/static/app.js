// edgewatch's page: an Alpine.js component that calls the box's JSON API like any client.
// Every fetch goes to this origin and carries the API key typed in the page (kept in localStorage).
"use strict";

const KEY_STORE = "edgewatch.apiKey";
const IMAGE_PREFIXES = ["/v1/vision/", "/v1/image/"];
const NOT_ONE_IMAGE = /\/(list|delete|register|match)$/;  // routes that take no image, or two, or a userid
const LOG_KEEP = 200;
const COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45"];

function colourOf(label) {
  let h = 0;
  for (const ch of String(label)) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return COLOURS[h % COLOURS.length];
}

function shorten(key, value) {  // the JSON shown: base64 images cut to a note
  return typeof value === "string" && value.length > 300 ? `${value.slice(0, 60)}… (${value.length} characters)` : value;
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser cannot show this image"));
    img.src = src;
  });
}

document.addEventListener("alpine:init", () => {
  Alpine.data("box", () => ({
    apiKey: localStorage.getItem(KEY_STORE) || "",
    version: "",
    endpoints: [], endpoint: "/v1/vision/detection", customModels: [], model: "", minConfidence: "",
    file: null, fileUrl: "", busy: false, again: false, dragging: false, tryError: "", resultText: "", predictions: [],
    cameras: [], cameraError: "", snapshots: {}, newCamera: {name: "", url: ""}, addError: "",
    backends: {}, modules: [], statusError: "",
    models: [], modelsError: "",
    log: [], lastLogId: 0, logError: "",

    init() {
      this.loadEndpoints();
      this.refreshAll();
      setInterval(() => this.loadCameras(), 3000);
      setInterval(() => this.loadLog(), 5000);
    },

    refreshAll() {
      this.loadCameras(); this.loadStatus(); this.loadModels(); this.log = []; this.lastLogId = 0; this.loadLog();
    },

    saveKey() {
      const key = this.apiKey.trim();
      if (key) localStorage.setItem(KEY_STORE, key); else localStorage.removeItem(KEY_STORE);
      this.loadEndpoints();
      this.refreshAll();
    },

    // fetch on this origin with the key; resolves to {ok, status, data} (data: parsed JSON, else text)
    async api(path, options = {}) {
      const headers = new Headers(options.headers || {});
      if (this.apiKey.trim()) headers.set("x-api-key", this.apiKey.trim());
      let response;
      try {
        response = await fetch(path, {...options, headers, credentials: "same-origin"});
      } catch (e) {
        return {ok: false, status: 0, data: null, error: `the box did not answer (${e.message})`};
      }
      const type = response.headers.get("content-type") || "";
      const data = type.includes("json") ? await response.json().catch(() => null)
        : type.startsWith("image/") ? await response.blob() : await response.text();
      const error = response.ok ? "" : `${response.status}: ${(data && (data.error || data.message)) || data || response.statusText}`;
      return {ok: response.ok, status: response.status, data, error};
    },

    // -- try an image endpoint ------------------------------------------------------------------
    async loadEndpoints() {
      const r = await this.api("/schema/openapi.json");
      if (!r.ok) { this.tryError = `cannot list the endpoints: ${r.error}`; return; }
      this.version = r.data.info && r.data.info.version || "";
      const found = [];
      for (const [path, ops] of Object.entries(r.data.paths || {})) {
        if (ops.post && IMAGE_PREFIXES.some(p => path.startsWith(p)) && !NOT_ONE_IMAGE.test(path)) {
          found.push({path, summary: ops.post.summary || ""});
        }
      }
      found.sort((a, b) => a.path.localeCompare(b.path));
      this.endpoints = found;
      if (!found.some(e => e.path === this.endpoint) && found.length) this.endpoint = found[0].path;
      const list = await this.api("/v1/vision/custom/list", {method: "POST"});
      if (list.ok) {
        this.customModels = list.data.models || [];
        this.model = this.customModels[0] || "";
      }
    },

    summaryOf(path) {
      const e = this.endpoints.find(x => x.path === path);
      return e ? e.summary : "";
    },

    pick(file) {
      if (!file) return;
      this.file = file;
      if (this.fileUrl) URL.revokeObjectURL(this.fileUrl);
      this.fileUrl = URL.createObjectURL(file);
      this.run();
    },

    rerun() { if (this.file) this.run(); },

    async run() {
      if (!this.file) return;
      if (this.busy) { this.again = true; return; }  // a newer image or choice: run again when this one is back
      this.busy = true;
      do {
        this.again = false;
        const url = this.fileUrl, path = this.endpoint.replace("{model_name}", encodeURIComponent(this.model));
        const form = new FormData();
        form.append("image", this.file, this.file.name || "image");
        if (this.minConfidence !== "") form.append("min_confidence", this.minConfidence);
        const r = await this.api(path, {method: "POST", body: form});
        if (this.again) continue;  // its answer is stale already
        this.tryError = ""; this.predictions = [];
        this.resultText = typeof r.data === "string" ? r.data : JSON.stringify(r.data, shorten, 2);
        if (!r.ok) { this.tryError = r.error; this.clearCanvas(); } else await this.draw(r.data, url);
      } while (this.again);
      this.busy = false;
    },

    clearCanvas() {
      const c = this.$refs.canvas;
      c.getContext("2d").clearRect(0, 0, c.width, c.height);
      c.width = c.height = 0;
    },

    async draw(result, fileUrl) {
      // an endpoint that answers an image (background removal, super-resolution…) shows that image
      const b64 = result.imageBase64 || result.filtered_image;
      let img;
      try {
        img = await loadImage(b64 ? `data:image/${b64.startsWith("/9j/") ? "jpeg" : "png"};base64,${b64}` : fileUrl);
      } catch (e) { this.tryError = e.message; return; }
      const c = this.$refs.canvas, g = c.getContext("2d");
      c.width = img.naturalWidth; c.height = img.naturalHeight;
      g.drawImage(img, 0, 0);
      const line = Math.max(2, Math.round(c.width / 300)), font = Math.max(12, Math.round(c.width / 50));
      g.lineWidth = line; g.font = `${font}px sans-serif`; g.textBaseline = "bottom";
      const shown = [];
      for (const p of result.predictions || []) {
        const name = p.userid || p.plate || p.label || "?";
        const score = p.confidence != null ? `${Math.round(p.confidence * 100)}%` : "";
        shown.push({name, score});
        if (p.x_min == null) continue;
        const colour = colourOf(name), text = `${name} ${score}`;
        g.strokeStyle = colour;
        g.strokeRect(p.x_min, p.y_min, p.x_max - p.x_min, p.y_max - p.y_min);
        const w = g.measureText(text).width + 6, y = Math.max(font + 4, p.y_min);
        g.fillStyle = colour; g.fillRect(p.x_min - line / 2, y - font - 4, w, font + 4);
        g.fillStyle = "#fff"; g.fillText(text, p.x_min + 3, y - 2);
      }
      if (!shown.length && result.label) {  // a classification (scene, sound): one label
        shown.push({name: result.label, score: result.confidence != null ? `${Math.round(result.confidence * 100)}%` : ""});
      }
      this.predictions = shown;
      c.dataset.boxes = String((result.predictions || []).filter(p => p.x_min != null).length);
    },

    // -- cameras --------------------------------------------------------------------------------
    async loadCameras() {
      const r = await this.api("/v1/cameras");
      if (!r.ok) { this.cameraError = r.error; return; }
      this.cameraError = "";
      this.cameras = r.data.cameras || [];
      const names = new Set(this.cameras.map(c => c.name));
      for (const name of Object.keys(this.snapshots)) {
        if (!names.has(name)) { URL.revokeObjectURL(this.snapshots[name]); delete this.snapshots[name]; }
      }
      for (const c of this.cameras) if (c.connected) this.loadSnapshot(c.name);
    },

    async loadSnapshot(name) {
      const r = await this.api(`/v1/cameras/${encodeURIComponent(name)}/snapshot`);
      if (!r.ok || !(r.data instanceof Blob)) return;
      const old = this.snapshots[name];
      this.snapshots[name] = URL.createObjectURL(r.data);
      if (old) URL.revokeObjectURL(old);
    },

    stateOf(c) {
      if (c.invalid) return "invalid";
      if (!c.enabled) return "disabled";
      if (c.connected) return "connected";
      return c.running ? "not connected" : "not running";
    },

    figuresOf(c) {
      const age = c.last_frame_age_s != null ? `, last frame ${c.last_frame_age_s.toFixed(1)} s ago` : "";
      const size = c.width ? `${c.width}x${c.height}, ` : "";
      return `${size}${(c.fps_in || 0).toFixed(1)} fps in, ${(c.fps_out || 0).toFixed(1)} out${age}; ` +
        `${c.frames_seen || 0} frames, ${c.detections || 0} detections, ${c.reconnects || 0} reconnects`;
    },

    countsOf(c) {
      const counts = Object.entries(c.tracked || {}).map(([label, n]) => `${label} ${n}`);
      return counts.length ? `in view: ${counts.join(", ")}` : "";
    },

    async addCamera() {
      this.addError = "";
      const body = JSON.stringify({name: this.newCamera.name.trim(), url: this.newCamera.url.trim()});
      const r = await this.api("/v1/cameras", {method: "POST", body, headers: {"Content-Type": "application/json"}});
      if (!r.ok) { this.addError = r.error; return; }
      this.newCamera = {name: "", url: ""};
      await this.loadCameras();
    },

    async removeCamera(name) {
      if (!confirm(`Remove camera ${name}?`)) return;
      const r = await this.api(`/v1/cameras/${encodeURIComponent(name)}`, {method: "DELETE"});
      if (!r.ok) { this.cameraError = r.error; return; }
      await this.loadCameras();
    },

    // -- backends, modules, models, log -----------------------------------------------------------
    async loadStatus() {
      const [b, v] = await Promise.all([this.api("/v1/status/backends"), this.api("/v1/status/version")]);
      this.statusError = b.ok ? (v.ok ? "" : v.error) : b.error;
      if (b.ok) this.backends = b.data;
      if (v.ok) this.modules = v.data.modules || [];
    },

    async loadModels() {
      const r = await this.api("/v1/status/models");
      this.modelsError = r.ok ? "" : r.error;
      if (r.ok) this.models = r.data.models || [];
    },

    defaultVariant(m) { return (m.variants || []).find(v => v.name === m.default_variant) || {}; },
    fig(m, key) { const v = this.defaultVariant(m)[key]; return v == null ? "" : String(Math.round(v * 10) / 10); },
    agreementOf(m) {
      const v = this.defaultVariant(m);
      const a = v.agreement != null ? v.agreement : v.ap50_vs_fp32;
      return a == null ? "" : `${(a * 100).toFixed(1)}%`;
    },
    sizeOf(m) { const s = this.defaultVariant(m).size_bytes; return s == null ? "" : `${(s / 1e6).toFixed(1)} MB`; },

    async loadLog() {
      for (;;) {  // the box keeps up to 1000 entries; take what is new since the last call
        const r = await this.api(`/v1/log/list?count=1000&last_id=${this.lastLogId}`);
        if (!r.ok) { this.logError = r.error; return; }
        this.logError = "";
        const entries = r.data.entries || [];
        if (!entries.length) return;
        this.lastLogId = entries[entries.length - 1].id;
        this.log = [...entries.reverse(), ...this.log].slice(0, LOG_KEEP);
        if (entries.length < 1000) return;
      }
    },
  }));
});
