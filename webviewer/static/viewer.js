/*
 * mini-PACS image viewer: plain ES2020, no build step, runs under a CSP without inline
 * code or eval.
 *
 * The study is read through the DICOMweb-shaped endpoints named by #viewer's data-*
 * attributes: the series list, each series' instances, and each frame's raw samples
 * with X- headers that say how to show them. Frames stay in a bounded cache as typed
 * arrays; a prefetcher keeps at most four requests in flight, nearest the shown image
 * first. Window/level (through a lookup table), zoom, pan, invert, length measurement
 * and cine all run in the browser. Text from the server is only ever set with
 * textContent. window.viewerState exposes progress to tests and benchmarks.
 */
"use strict";

(() => {
  const scriptStart = performance.now();

  const MAX_IN_FLIGHT = 4;
  const AHEAD = 10;
  const BEHIND = 5;
  const CACHE_BUDGET = 768 * 2 ** 20;          // bytes of samples kept in the browser
  const BACKGROUND_LIMIT = 0.9 * CACHE_BUDGET;  // no background prefetch above this
  const DEFAULT_FPS = 25;
  const THUMB_SIZE = 96;
  const WHEEL_STEP = 50;                       // wheel pixels per image
  const FORMATS = {
    uint8: { Type: Uint8Array, channels: 1 },
    int8: { Type: Int8Array, channels: 1 },
    uint16: { Type: Uint16Array, channels: 1 },
    int16: { Type: Int16Array, channels: 1 },
    float32: { Type: Float32Array, channels: 1 },
    rgb8: { Type: Uint8Array, channels: 3 },
  };
  const KEY_STEPS = { ArrowUp: -1, ArrowDown: 1, PageUp: -10, PageDown: 10 };
  const BUTTON_MODES = { 1: "pan", 2: "zoom" };   // middle and right drag, whatever the tool

  const byId = (id) => document.getElementById(id);
  const root = byId("viewer");
  const urls = { root: root.dataset.root, tags: root.dataset.tags };
  // The series list and the first series' images, sent with the page (a JSON island).
  const preload = JSON.parse(byId("viewer-preload")?.textContent || "{}");
  const el = {
    stage: byId("stage"),
    viewport: byId("viewport"),
    overlay: byId("overlay"),
    seriesList: byId("series-list"),
    slider: byId("frame-slider"),
    frameLabel: byId("frame-label"),
    error: byId("viewer-error"),
    invert: byId("invert"),
    cine: byId("cine"),
    cineFps: byId("cine-fps"),
    measureLabel: byId("measure-label"),
    tags: byId("tags"),
    tagsToggle: byId("tags-toggle"),
    tagsFilter: byId("tags-filter"),
    tagsBody: document.querySelector("#tags-table tbody"),
    ovSeries: byId("ov-series"),
    ovSlice: byId("ov-slice"),
    ovWindow: byId("ov-window"),
    ovZoom: byId("ov-zoom"),
  };

  const state = {
    seriesUid: null,
    index: 0,
    total: 0,
    frameRequests: 0,
    framesDrawn: 0,
    center: null,
    width: null,
    firstImageMs: null,
    ready: false,
    inFlight: 0,
  };
  window.viewerState = state;

  // ---------------------------------------------------------------- fetching

  async function get(url, what, signal) {
    let response;
    try {
      response = await fetch(url, { credentials: "same-origin", redirect: "manual", signal });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new Error(`Could not load ${what}: the server did not answer.`);
    }
    if (response.type === "opaqueredirect" || response.status === 401) {
      throw new Error("Your session has ended. Reload the page to log in again.");
    }
    if (!response.ok) throw new Error(`Could not load ${what} (HTTP ${response.status}).`);
    return response;
  }

  async function getJson(url, what, signal) {
    const response = await get(url, what, signal);
    try {
      return await response.json();
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new Error(`Could not read ${what}.`);
    }
  }

  /** The first value of a DICOM JSON attribute, or `fallback`. */
  function attr(dataset, tag, fallback) {
    return dataset[tag]?.Value?.[0] ?? fallback;
  }

  function number(text, fallback) {
    const value = Number.parseFloat(text ?? "");
    return Number.isFinite(value) ? value : fallback;
  }

  // ---------------------------------------------------------------- frames

  /** A frame's samples and display attributes, from a frame response. */
  function decodeFrame(headers, buffer) {
    const format = headers.get("X-Sample-Format");
    const layout = FORMATS[format];
    if (!layout) throw new Error(`Unsupported sample format: ${format}.`);
    const rows = number(headers.get("X-Rows"), 0);
    const cols = number(headers.get("X-Columns"), 0);
    const expected = rows * cols * layout.channels * layout.Type.BYTES_PER_ELEMENT;
    if (!rows || !cols || buffer.byteLength !== expected) throw new Error("An image arrived incomplete.");
    const frame = {
      pixels: new layout.Type(buffer),
      format,
      rows,
      cols,
      slope: number(headers.get("X-Rescale-Slope"), 1) || 1,
      intercept: number(headers.get("X-Rescale-Intercept"), 0),
      photometric: headers.get("X-Photometric") || "MONOCHROME2",
      spacing: parseSpacing(headers.get("X-Pixel-Spacing")),
      frameTimeMs: number(headers.get("X-Frame-Time-Ms"), null),
      window: null,
      position: 0,
    };
    if (format !== "rgb8") {
      frame.window = headerWindow(headers) ?? rangeWindow(frame);
    }
    return frame;
  }

  function parseSpacing(text) {
    const [row, col] = (text ?? "").split("\\").map((part) => number(part, 0));
    return row > 0 && col > 0 ? { row, col } : null;
  }

  function headerWindow(headers) {
    const center = number(headers.get("X-Window-Center"), null);
    const width = number(headers.get("X-Window-Width"), null);
    return center !== null && width > 0 ? { center, width } : null;
  }

  /** The window that spans the frame's rescaled minimum to maximum. */
  function rangeWindow(frame) {
    let lo = Infinity;
    let hi = -Infinity;
    const px = frame.pixels;
    for (let i = 0; i < px.length; i += 1) {
      if (px[i] < lo) lo = px[i];
      if (px[i] > hi) hi = px[i];
    }
    if (lo > hi) lo = hi = 0;
    const a = lo * frame.slope + frame.intercept;
    const b = hi * frame.slope + frame.intercept;
    const [min, max] = a <= b ? [a, b] : [b, a];
    if (frame.format === "float32") return { center: (min + max) / 2, width: Math.max(max - min, 1e-6) };
    return { center: (min + max) / 2 + 0.5, width: max - min + 1 };
  }

  /** DICOM PS3.3 C.11.2.1.2: "linear" for integer samples, "linear exact" for float. */
  function windowFunction(center, width, exact) {
    const span = exact ? width : width - 1;
    const low = exact ? center - width / 2 : center - 0.5 - span / 2;
    if (span <= 0) return (value) => (value > low ? 1 : 0);
    return (value) => Math.min(1, Math.max(0, (value - low) / span));
  }

  /** An opaque gray RGBA pixel (little-endian Uint32) for a level 0..1. */
  function grayPixel(level, invert) {
    const g = Math.round((invert ? 1 - level : level) * 255);
    return (0xff000000 | (g << 16) | (g << 8) | g) >>> 0;
  }

  const luts = new Map();

  /** The lookup table from stored value (plus offset) to RGBA for integer samples. */
  function lutFor(frame, center, width, invert) {
    const key = [frame.format, frame.slope, frame.intercept, center, width, invert].join();
    let lut = luts.get(key);
    if (!lut) {
      if (luts.size >= 8) luts.clear();
      lut = buildLut(frame, center, width, invert);
      luts.set(key, lut);
    }
    return lut;
  }

  function buildLut(frame, center, width, invert) {
    const size = frame.format.endsWith("8") ? 256 : 65536;
    const offset = lutOffset(frame.format);
    const level = windowFunction(center, width, false);
    const lut = new Uint32Array(size);
    for (let i = 0; i < size; i += 1) {
      lut[i] = grayPixel(level((i - offset) * frame.slope + frame.intercept), invert);
    }
    return lut;
  }

  function lutOffset(format) {
    return { int8: 128, int16: 32768 }[format] ?? 0;
  }

  /** Fill `out` (RGBA as Uint32) with the frame under the given window. */
  function paint(frame, out, center, width, invert) {
    const px = frame.pixels;
    if (frame.format === "rgb8") {
      const mask = invert ? 255 : 0;
      for (let p = 0, s = 0; p < out.length; p += 1, s += 3) {
        out[p] = (0xff000000 | ((px[s + 2] ^ mask) << 16) | ((px[s + 1] ^ mask) << 8) | (px[s] ^ mask)) >>> 0;
      }
    } else if (frame.format === "float32") {
      const level = windowFunction(center, width, true);
      for (let p = 0; p < out.length; p += 1) {
        out[p] = grayPixel(level(px[p] * frame.slope + frame.intercept), invert);
      }
    } else {
      const lut = lutFor(frame, center, width, invert);
      const offset = lutOffset(frame.format);
      for (let p = 0; p < out.length; p += 1) out[p] = lut[px[p] + offset];
    }
  }

  const imageDatas = new WeakMap();

  /** Draw the frame, windowed, into `canvas` at its native size. */
  function renderTo(canvas, frame, levels, inverted) {
    if (canvas.width !== frame.cols || canvas.height !== frame.rows) {
      canvas.width = frame.cols;
      canvas.height = frame.rows;
    }
    const ctx = canvas.getContext("2d");
    let image = imageDatas.get(canvas);
    if (!image || image.width !== frame.cols || image.height !== frame.rows) {
      image = ctx.createImageData(frame.cols, frame.rows);
      imageDatas.set(canvas, image);
    }
    const invert = inverted !== (frame.photometric === "MONOCHROME1");
    paint(frame, new Uint32Array(image.data.buffer), levels?.center, levels?.width, invert);
    ctx.putImageData(image, 0, 0);
  }

  /** Displayed height / width of one pixel. */
  function aspect(frame) {
    return frame.spacing ? frame.spacing.row / frame.spacing.col : 1;
  }

  // ---------------------------------------------------------------- cache and prefetch

  const cache = new Map();     // slice key -> frame, oldest first
  const inFlight = new Map();  // slice key -> AbortController
  const failed = new Set();    // slice keys whose fetch failed (not retried)
  const thumbJobs = new Map(); // slice key -> { record, slice } waiting for its thumbnail
  let cacheBytes = 0;
  let queue = [];              // slices to fetch, most urgent first
  let urgentCount = 0;         // queue[0..urgentCount) is fetched even when the cache is full
  let queueCursor = 0;

  /** Order the fetches around the shown slice: ahead, behind, thumbnails, then the rest. */
  function plan() {
    if (!current?.slices) return;
    const { slices } = current;
    const n = slices.length;
    const i = state.index;
    const at = (j) => (cine.playing ? slices[((j % n) + n) % n] : slices[j]);
    const urgent = [];
    for (let d = 0; d <= AHEAD; d += 1) urgent.push(at(i + d));
    for (let d = 1; d <= BEHIND; d += 1) urgent.push(at(i - d));
    for (const job of thumbJobs.values()) urgent.push(job.slice);
    const rest = [];
    for (let j = i + AHEAD + 1; j < n; j += 1) rest.push(slices[j]);
    for (let j = i - BEHIND - 1; j >= 0; j -= 1) rest.push(slices[j]);
    queue = urgent.filter(Boolean);
    urgentCount = queue.length;
    queue = queue.concat(rest);
    queueCursor = 0;
    pump();
  }

  function pump() {
    while (inFlight.size < MAX_IN_FLIGHT && queueCursor < queue.length) {
      if (queueCursor >= urgentCount && cacheBytes > BACKGROUND_LIMIT) break;
      const slice = queue[queueCursor];
      queueCursor += 1;
      if (!cache.has(slice.key) && !inFlight.has(slice.key) && !failed.has(slice.key)) {
        fetchSlice(slice);
      }
    }
    state.inFlight = inFlight.size;
  }

  async function fetchSlice(slice) {
    const controller = new AbortController();
    inFlight.set(slice.key, controller);
    state.frameRequests += 1;
    try {
      const response = await get(slice.url, slice.name, controller.signal);
      const frame = decodeFrame(response.headers, await response.arrayBuffer());
      frame.position = slice.position;
      remember(slice.key, frame);
      frameArrived(slice, frame);
    } catch (error) {
      if (error.name !== "AbortError") {
        failed.add(slice.key);
        report(error);
      }
    } finally {
      if (inFlight.get(slice.key) === controller) inFlight.delete(slice.key);
      pump();
    }
  }

  function remember(key, frame) {
    cache.set(key, frame);
    cacheBytes += frame.pixels.byteLength;
    evict();
  }

  /** Over budget: drop other series' frames first, then this series' farthest ones. */
  function evict() {
    const prefix = `${current.uid}/`;
    while (cacheBytes > CACHE_BUDGET) {
      let victim = null;
      let farthest = AHEAD;
      for (const [key, frame] of cache) {
        const distance = key.startsWith(prefix) ? Math.abs(frame.position - state.index) : Infinity;
        if (distance > farthest) {
          victim = key;
          farthest = distance;
          if (distance === Infinity) break;
        }
      }
      if (victim === null) return;
      cacheBytes -= cache.get(victim).pixels.byteLength;
      cache.delete(victim);
    }
  }

  /** Forget the old plan; stop fetching what belongs neither to `record` nor to a thumbnail. */
  function abortOthers(record) {
    queue = [];
    queueCursor = 0;
    urgentCount = 0;
    for (const [key, controller] of inFlight) {
      if (!key.startsWith(`${record.uid}/`) && !thumbJobs.has(key)) {
        controller.abort();
        inFlight.delete(key);
      }
    }
  }

  function frameArrived(slice, frame) {
    const job = thumbJobs.get(slice.key);
    if (job) {
      thumbJobs.delete(slice.key);
      drawThumb(job.record, frame);
    }
    if (slice.key === currentSlice()?.key) requestDraw();
  }

  // ---------------------------------------------------------------- series

  const records = [];
  let current = null;

  function seriesUrl(record) {
    return `${urls.root}/series/${encodeURIComponent(record.uid)}`;
  }

  function addSeries(json) {
    const record = {
      uid: String(attr(json, "0020000E", "")),
      number: attr(json, "00200011", ""),
      modality: attr(json, "00080060", ""),
      description: attr(json, "0008103E", ""),
      slices: null,
      loading: null,
    };
    const button = document.createElement("button");
    button.type = "button";
    button.className = "series-thumb";
    button.dataset.series = record.uid;
    button.setAttribute("aria-pressed", "false");
    record.canvas = document.createElement("canvas");
    record.canvas.width = THUMB_SIZE;
    record.canvas.height = THUMB_SIZE;
    record.count = textSpan("series-count", countText(attr(json, "00201209", 0), null));
    button.append(
      record.canvas,
      textSpan("series-title", [record.number && `S${record.number}`, record.modality].filter(Boolean).join(" · ")),
      textSpan("series-desc", record.description),
      record.count,
    );
    button.addEventListener("click", () => selectSeries(record).catch(report));
    record.button = button;
    el.seriesList.append(button);
    records.push(record);
  }

  function textSpan(className, text) {
    const span = document.createElement("span");
    span.className = className;
    span.textContent = String(text ?? "");
    return span;
  }

  function countText(images, frames) {
    const imageText = `${images} image${images === 1 ? "" : "s"}`;
    return frames === null || frames === images ? imageText : `${imageText}, ${frames} frames`;
  }

  /** The series' slices (instance × frame, in display order), loaded once. */
  function loadSlices(record) {
    if (record.loading) return record.loading;
    const preloaded = preload.instances?.[record.uid];
    const instances = preloaded
      ? Promise.resolve(preloaded)
      : getJson(`${seriesUrl(record)}/instances`, "the image list");
    record.loading = instances.then(
      (instances) => {
        record.slices = toSlices(record, instances);
        record.count.textContent = countText(instances.length, record.slices.length);
        return record.slices;
      },
      (error) => {
        record.loading = null;
        throw error;
      },
    );
    return record.loading;
  }

  function toSlices(record, instances) {
    const series = record.number ? `series ${record.number}` : "this series";
    const slices = [];
    for (const instance of instances) {
      const sop = String(attr(instance, "00080018", ""));
      const frames = Math.max(1, number(attr(instance, "00280008", 1), 1));
      const base = `${seriesUrl(record)}/instances/${encodeURIComponent(sop)}/frames/`;
      for (let n = 1; n <= frames; n += 1) {
        const position = slices.length;
        const name = `image ${position + 1} of ${series}`;
        slices.push({ key: `${record.uid}/${sop}/${n}`, url: base + n, sop, position, name });
      }
    }
    return slices;
  }

  async function selectSeries(record) {
    if (current === record && record.loading) return;
    stopCine();
    current = record;
    state.seriesUid = record.uid;
    for (const other of records) other.button.setAttribute("aria-pressed", String(other === record));
    el.ovSeries.textContent = [record.number && `Series ${record.number}`, record.description].filter(Boolean).join(" · ");
    frameShown = null;
    needsWindow = true;
    state.center = null;
    state.width = null;
    view.fitted = true;
    clearMeasurement();
    abortOthers(record);
    setTotal(0);
    requestDraw();
    const slices = await loadSlices(record);
    if (current !== record) return;
    if (slices.length === 0) throw new Error("This series has no images.");
    setTotal(slices.length);
    showSlice(0, true);
  }

  function setTotal(total) {
    state.total = total;
    state.index = 0;
    el.slider.max = String(Math.max(total, 1));
    el.slider.disabled = total < 2;
    el.cine.disabled = total < 2;
    updateSliceLabels();
  }

  function currentSlice() {
    return current?.slices?.[state.index] ?? null;
  }

  function currentFrame() {
    const slice = currentSlice();
    return slice ? cache.get(slice.key) ?? null : null;
  }

  function showSlice(index, force = false) {
    if (!state.total) return;
    const next = Math.min(state.total - 1, Math.max(0, index));
    if (next === state.index && !force) return;
    state.index = next;
    clearMeasurement();
    updateSliceLabels();
    plan();
    requestDraw();
    scheduleTags();
  }

  function updateSliceLabels() {
    const text = `${state.total ? state.index + 1 : 0} / ${state.total}`;
    el.slider.value = String(state.index + 1);
    el.frameLabel.textContent = text;
    el.ovSlice.textContent = state.total ? `Image ${text}` : "";
  }

  /** One thumbnail per series, from its middle slice, one series at a time. */
  async function loadThumbnails() {
    for (const record of records) {
      try {
        const slices = await loadSlices(record);
        const slice = slices[Math.floor(slices.length / 2)];
        if (!slice) continue;
        const frame = cache.get(slice.key);
        if (frame) {
          drawThumb(record, frame);
        } else {
          thumbJobs.set(slice.key, { record, slice });
          plan();
        }
      } catch (error) {
        report(error);
      }
    }
  }

  const thumbScratch = document.createElement("canvas");

  function drawThumb(record, frame) {
    renderTo(thumbScratch, frame, frame.window, false);
    const ctx = record.canvas.getContext("2d");
    const scale = Math.min(THUMB_SIZE / frame.cols, THUMB_SIZE / (frame.rows * aspect(frame)));
    const w = frame.cols * scale;
    const h = frame.rows * aspect(frame) * scale;
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, THUMB_SIZE, THUMB_SIZE);
    ctx.drawImage(thumbScratch, (THUMB_SIZE - w) / 2, (THUMB_SIZE - h) / 2, w, h);
  }

  // ---------------------------------------------------------------- drawing

  const offscreen = document.createElement("canvas");
  const view = { scale: 1, ox: 0, oy: 0, fitted: true, width: 1, height: 1, dpr: 1 };
  let frameShown = null;   // the frame now in `offscreen`
  let needsWindow = true;  // take the window from the next frame drawn (new series)
  let repaint = false;     // window or invert changed: re-render `offscreen`
  let drawPending = false;
  let inverted = false;

  function requestDraw(windowChanged = false) {
    repaint = repaint || windowChanged;
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(draw);
  }

  function draw() {
    drawPending = false;
    const frame = currentFrame() ?? frameShown;
    if (frame && (frame !== frameShown || repaint)) {
      if (needsWindow) adoptWindow(frame);
      renderTo(offscreen, frame, frame.window && { center: state.center, width: state.width }, inverted);
      frameShown = frame;
      repaint = false;
      updateCineRate();
    }
    if (frameShown && view.fitted) fitView(frameShown);
    composite();
    drawMeasurement();
    updateAnnotations();
    if (frameShown) {
      state.framesDrawn += 1;
      if (!state.ready) markReady();
    }
  }

  function adoptWindow(frame) {
    needsWindow = false;
    state.center = frame.window?.center ?? null;
    state.width = frame.window?.width ?? null;
  }

  function markReady() {
    state.ready = true;
    state.firstImageMs = performance.now() - scriptStart;
    document.body.dataset.viewer = "ready";
    loadThumbnails();
  }

  function fitView(frame) {
    view.scale = Math.min(view.width / frame.cols, view.height / (frame.rows * aspect(frame)));
    view.ox = 0;
    view.oy = 0;
  }

  function composite() {
    const ctx = el.viewport.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, el.viewport.width, el.viewport.height);
    if (!frameShown) return;
    ctx.setTransform(view.dpr, 0, 0, view.dpr, 0, 0);
    const box = imageBox(frameShown);
    ctx.drawImage(offscreen, box.x, box.y, box.w, box.h);
  }

  /** Where the image lies in the viewport, in CSS pixels. */
  function imageBox(frame) {
    const w = frame.cols * view.scale;
    const h = frame.rows * aspect(frame) * view.scale;
    return { x: view.width / 2 + view.ox - w / 2, y: view.height / 2 + view.oy - h / 2, w, h };
  }

  function toImage(frame, point) {
    const box = imageBox(frame);
    return { x: ((point.x - box.x) / box.w) * frame.cols, y: ((point.y - box.y) / box.h) * frame.rows };
  }

  function toScreen(frame, point) {
    const box = imageBox(frame);
    return { x: box.x + (point.x / frame.cols) * box.w, y: box.y + (point.y / frame.rows) * box.h };
  }

  function updateAnnotations() {
    const grayscale = frameShown?.window && state.center !== null;
    el.ovWindow.textContent = grayscale ? `C ${roundForDisplay(state.center)} W ${roundForDisplay(state.width)}` : "";
    el.ovZoom.textContent = frameShown ? `Zoom ${Math.round(view.scale * 100)}%` : "";
  }

  function roundForDisplay(value) {
    return Math.abs(value) >= 100 ? String(Math.round(value)) : String(Number(value.toPrecision(3)));
  }

  function resizeCanvases() {
    const rect = el.stage.getBoundingClientRect();
    view.width = Math.max(1, rect.width);
    view.height = Math.max(1, rect.height);
    view.dpr = window.devicePixelRatio || 1;
    for (const canvas of [el.viewport, el.overlay]) {
      canvas.width = Math.round(view.width * view.dpr);
      canvas.height = Math.round(view.height * view.dpr);
    }
    requestDraw();
  }

  // ---------------------------------------------------------------- window/level, zoom, pan

  function setWindow(center, width) {
    if (!frameShown?.window) return;
    state.center = center;
    state.width = width;
    requestDraw(true);
  }

  function applyPreset(button) {
    if (button.dataset.preset === "default") {
      const own = (currentFrame() ?? frameShown)?.window;
      if (own) setWindow(own.center, own.width);
    } else {
      setWindow(Number(button.dataset.center), Number(button.dataset.width));
    }
  }

  function zoomAt(point, factor) {
    if (!frameShown) return;
    const anchor = toImage(frameShown, point);
    view.scale = Math.min(50, Math.max(0.05, view.scale * factor));
    const moved = toScreen(frameShown, anchor);
    view.ox += point.x - moved.x;
    view.oy += point.y - moved.y;
    view.fitted = false;
    requestDraw();
  }

  const dragActions = {
    wl(drag, dx, dy) {
      const minimum = frameShown.format === "float32" ? 1e-6 : 1;
      setWindow(drag.center + (dy * drag.width) / 200, Math.max(minimum, drag.width * Math.exp(dx / 200)));
    },
    zoom(drag, dx, dy) {
      zoomAt(drag.start, (drag.scale * Math.exp(-dy / 150)) / view.scale);
    },
    pan(drag, dx, dy) {
      view.ox = drag.ox + dx;
      view.oy = drag.oy + dy;
      view.fitted = false;
      requestDraw();
    },
    measure(drag, dx, dy, point) {
      measurement = { from: drag.anchor, to: toImage(frameShown, point) };
      el.measureLabel.textContent = measureText(measurement, frameShown);
      requestDraw();
    },
  };

  let drag = null;
  let tool = "wl";

  function pointerPosition(event) {
    const rect = el.viewport.getBoundingClientRect();
    return { x: event.clientX - rect.left, y: event.clientY - rect.top };
  }

  function onPointerDown(event) {
    if (!frameShown || event.button > 2) return;
    event.preventDefault();
    el.viewport.focus({ preventScroll: true });
    el.viewport.setPointerCapture(event.pointerId);
    const start = pointerPosition(event);
    drag = {
      mode: BUTTON_MODES[event.button] ?? tool,
      start,
      anchor: toImage(frameShown, start),
      center: state.center,
      width: state.width,
      scale: view.scale,
      ox: view.ox,
      oy: view.oy,
    };
    if (drag.mode === "wl" && !frameShown.window) drag = null;
  }

  function onPointerMove(event) {
    if (!drag || !frameShown) return;
    const point = pointerPosition(event);
    dragActions[drag.mode](drag, point.x - drag.start.x, point.y - drag.start.y, point);
  }

  function onPointerUp() {
    if (drag?.mode === "measure" && measurement && lengthOf(measurement, null) < 0.5) clearMeasurement();
    drag = null;
  }

  function setTool(name) {
    tool = name;
    el.stage.dataset.tool = name;
    for (const button of root.querySelectorAll("[data-tool]")) {
      button.setAttribute("aria-pressed", String(button.dataset.tool === name));
    }
  }

  // ---------------------------------------------------------------- measurement

  let measurement = null; // { from, to } in image pixel coordinates

  function lengthOf(line, spacing) {
    const dx = (line.to.x - line.from.x) * (spacing ? spacing.col : 1);
    const dy = (line.to.y - line.from.y) * (spacing ? spacing.row : 1);
    return Math.hypot(dx, dy);
  }

  function measureText(line, frame) {
    return frame.spacing ? `${lengthOf(line, frame.spacing).toFixed(1)} mm` : `${lengthOf(line, null).toFixed(1)} px`;
  }

  function clearMeasurement() {
    measurement = null;
    el.measureLabel.textContent = "";
  }

  function drawMeasurement() {
    const ctx = el.overlay.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, el.overlay.width, el.overlay.height);
    if (!measurement || !frameShown) return;
    ctx.setTransform(view.dpr, 0, 0, view.dpr, 0, 0);
    const a = toScreen(frameShown, measurement.from);
    const b = toScreen(frameShown, measurement.to);
    ctx.strokeStyle = "#ffd84d";
    ctx.fillStyle = "#ffd84d";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    ctx.moveTo(a.x, a.y);
    ctx.lineTo(b.x, b.y);
    ctx.stroke();
    for (const end of [a, b]) {
      ctx.beginPath();
      ctx.arc(end.x, end.y, 3, 0, 2 * Math.PI);
      ctx.fill();
    }
    ctx.font = "13px system-ui, sans-serif";
    ctx.lineWidth = 3;
    ctx.strokeStyle = "#000";
    const label = measureText(measurement, frameShown);
    ctx.strokeText(label, b.x + 8, b.y - 8);
    ctx.fillText(label, b.x + 8, b.y - 8);
  }

  // ---------------------------------------------------------------- cine

  const cine = { playing: false, last: 0 };

  function frameInterval() {
    return frameShown?.frameTimeMs > 0 ? frameShown.frameTimeMs : 1000 / DEFAULT_FPS;
  }

  function updateCineRate() {
    const fps = 1000 / frameInterval();
    el.cineFps.textContent = state.total > 1 ? `${Number(fps.toFixed(1))} fps` : "";
  }

  function startCine() {
    if (state.total < 2) return;
    cine.playing = true;
    cine.last = performance.now();
    el.cine.setAttribute("aria-pressed", "true");
    el.cine.textContent = "Pause";
    plan();
    requestAnimationFrame(cineTick);
  }

  function stopCine() {
    cine.playing = false;
    el.cine.setAttribute("aria-pressed", "false");
    el.cine.textContent = "Play";
  }

  /** Advance one image per frame interval; wait (not skip) when the next is not loaded. */
  function cineTick(now) {
    if (!cine.playing) return;
    const interval = frameInterval();
    if (now - cine.last >= interval) {
      const next = (state.index + 1) % state.total;
      if (cache.has(current.slices[next].key)) {
        cine.last = now - cine.last >= 2 * interval ? now : cine.last + interval;
        showSlice(next);
      }
    }
    requestAnimationFrame(cineTick);
  }

  // ---------------------------------------------------------------- tags

  let tagsFor = null;
  let tagsTimer = 0;
  let tagsRequest = null;

  function toggleTags() {
    const open = el.tags.hidden;
    el.tags.hidden = !open;
    el.tagsToggle.setAttribute("aria-expanded", String(open));
    tagsFor = null;
    if (open) loadTags();
  }

  function scheduleTags() {
    if (el.tags.hidden || currentSlice()?.sop === tagsFor) return;
    clearTimeout(tagsTimer);
    tagsTimer = setTimeout(loadTags, 150);
  }

  async function loadTags() {
    const slice = currentSlice();
    if (!slice || el.tags.hidden) return;
    tagsFor = slice.sop;
    tagsRequest?.abort();
    tagsRequest = new AbortController();
    try {
      const url = `${urls.tags}${encodeURIComponent(slice.sop)}/tags`;
      const rows = await getJson(url, "the tags", tagsRequest.signal);
      el.tagsBody.replaceChildren(...rows.map(tagRow));
      filterTags();
    } catch (error) {
      if (error.name === "AbortError") return;
      tagsFor = null;
      report(error);
    }
  }

  function tagRow(item) {
    const row = document.createElement("tr");
    for (const text of [item.tag, item.keyword, item.vr, item.value]) {
      const cell = document.createElement("td");
      cell.textContent = String(text ?? "");
      row.append(cell);
    }
    row.lastChild.title = String(item.value ?? "");
    return row;
  }

  function filterTags() {
    const query = el.tagsFilter.value.trim().toLowerCase();
    for (const row of el.tagsBody.rows) {
      row.hidden = query !== "" && !row.textContent.toLowerCase().includes(query);
    }
  }

  // ---------------------------------------------------------------- errors

  let leaving = false;

  /** The page is going away (logout, navigation): stop fetching, report nothing more. */
  function leave() {
    leaving = true;
    stopCine();
    queue = [];
    for (const controller of inFlight.values()) controller.abort();
    inFlight.clear();
    tagsRequest?.abort();
  }

  function report(error) {
    if (leaving || error?.name === "AbortError") return;
    console.error(error);
    el.error.textContent = error?.message || String(error);
    el.error.hidden = false;
  }

  function fatal(error) {
    report(error);
    if (!state.ready) document.body.dataset.viewer = "error";
  }

  // ---------------------------------------------------------------- input

  let wheelTotal = 0;

  function onWheel(event) {
    if (!root.contains(event.target)) return;
    if (event.ctrlKey) {
      event.preventDefault();
      const over = el.stage.contains(event.target);
      const point = over ? pointerPosition(event) : { x: view.width / 2, y: view.height / 2 };
      zoomAt(point, Math.exp(-event.deltaY / 400));
      return;
    }
    if (!el.stage.contains(event.target)) return;
    event.preventDefault();
    wheelTotal += event.deltaMode === WheelEvent.DOM_DELTA_PIXEL ? event.deltaY : event.deltaY * WHEEL_STEP;
    if (Math.abs(wheelTotal) < WHEEL_STEP) return;
    showSlice(state.index + Math.sign(wheelTotal));
    wheelTotal = 0;
  }

  function onKey(event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.target.closest?.("textarea, select, input:not([type=range])")) return;
    const last = state.total - 1;
    const targets = { Home: 0, End: last };
    let next = null;
    if (event.key in KEY_STEPS) next = state.index + KEY_STEPS[event.key];
    else if (event.key in targets) next = targets[event.key];
    if (next === null) return;
    event.preventDefault();
    showSlice(next);
  }

  function wire() {
    for (const button of root.querySelectorAll("[data-tool]")) {
      button.addEventListener("click", () => setTool(button.dataset.tool));
    }
    for (const button of root.querySelectorAll("[data-preset], [data-center]")) {
      button.addEventListener("click", () => applyPreset(button));
    }
    el.invert.addEventListener("click", () => {
      inverted = !inverted;
      el.invert.setAttribute("aria-pressed", String(inverted));
      requestDraw(true);
    });
    byId("reset-view").addEventListener("click", () => {
      view.fitted = true;
      requestDraw();
    });
    el.cine.addEventListener("click", () => (cine.playing ? stopCine() : startCine()));
    el.tagsToggle.addEventListener("click", toggleTags);
    el.tagsFilter.addEventListener("input", filterTags);
    el.error.addEventListener("click", () => { el.error.hidden = true; });
    el.slider.addEventListener("input", () => showSlice(Number(el.slider.value) - 1));
    el.viewport.addEventListener("pointerdown", onPointerDown);
    el.viewport.addEventListener("pointermove", onPointerMove);
    el.viewport.addEventListener("pointerup", onPointerUp);
    el.viewport.addEventListener("pointercancel", onPointerUp);
    el.viewport.addEventListener("contextmenu", (event) => event.preventDefault());
    window.addEventListener("wheel", onWheel, { passive: false });
    document.addEventListener("keydown", onKey);
    window.addEventListener("unhandledrejection", (event) => report(event.reason));
    window.addEventListener("pagehide", leave);
    document.getElementById("logout")?.form?.addEventListener("submit", leave);
    new ResizeObserver(resizeCanvases).observe(el.stage);
  }

  async function start() {
    document.body.dataset.viewer = "loading";
    const list = preload.series ?? (await getJson(`${urls.root}/series`, "the list of series"));
    if (!Array.isArray(list) || list.length === 0) throw new Error("This study has no images.");
    list.forEach(addSeries);
    await selectSeries(records[0]);
  }

  wire();
  resizeCanvases();
  start().catch(fatal);
})();
