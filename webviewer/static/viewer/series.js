/*
 * The series of the study and of the patient's other studies: one thumbnail button per
 * series (its middle slice, drawn one series at a time once the first image is shown;
 * click it to show the series in the active viewport, or drag it onto a viewport), each
 * series' slices (loaded once, from the preloaded list when the page has it), which
 * series and slice each viewport shows, and the slider and labels of the active one.
 */
import { el, preload, report, state } from "./context.js";
import { aspect } from "./frames.js";
import { getJson } from "./net.js";
import { countText, seriesFields, seriesTitle, toSlices } from "./slices.js";
import { stopCine } from "./cine.js";
import { showDocument } from "./documents.js";
import { renderTo, requestDraw, resetDisplay } from "./draw.js";
import { linkSlices } from "./linking.js";
import { abortUnused, awaitThumbnail, cache, plan } from "./prefetch.js";
import { scheduleTags } from "./tags.js";
import { cancelDrawing } from "./tools.js";
import { active, shownViewports, syncState } from "./viewports.js";

const THUMB_SIZE = 96;
export const SERIES_TYPE = "application/x-pacs-series";

export const records = [];

function seriesUrl(record) {
  return `${record.study.root}/series/${encodeURIComponent(record.uid)}`;
}

/** The record of series `uid`, or null. */
export function recordOf(uid) {
  return records.find((record) => record.uid === uid) ?? null;
}

/**
 * Add a series (its QIDO-RS JSON) of `study` ({ uid, root, date, description, current })
 * to `container`, as a button that shows it.
 */
export function addSeries(json, study, container = el.seriesList) {
  const { images, ...fields } = seriesFields(json);
  const record = { ...fields, study, slices: null, loading: null };
  const button = document.createElement("button");
  button.type = "button";
  button.className = "series-thumb";
  button.dataset.series = record.uid;
  button.draggable = true;
  button.title = "Click: show in the active viewport. Drag: show in another viewport.";
  button.setAttribute("aria-pressed", "false");
  record.canvas = document.createElement("canvas");
  record.canvas.width = THUMB_SIZE;
  record.canvas.height = THUMB_SIZE;
  record.count = textSpan("series-count", countText(images, null));
  button.append(
    record.canvas,
    textSpan("series-title", seriesTitle(record)),
    textSpan("series-desc", record.description),
    record.count,
  );
  button.addEventListener("click", () => showSeries(active, record).catch(report));
  button.addEventListener("dragstart", (event) => {
    event.dataTransfer.setData(SERIES_TYPE, record.uid);
    event.dataTransfer.effectAllowed = "copy";
  });
  record.button = button;
  container.append(button);
  records.push(record);
  return record;
}

function textSpan(className, text) {
  const span = document.createElement("span");
  span.className = className;
  span.textContent = String(text ?? "");
  return span;
}

/** The series' slices (instance × frame, in display order), loaded once. */
export function loadSlices(record) {
  if (record.loading) return record.loading;
  const preloaded = record.study.current ? preload.instances?.[record.uid] : null;
  const instances = preloaded
    ? Promise.resolve(preloaded)
    : getJson(`${seriesUrl(record)}/instances`, "the image list");
  record.loading = instances.then(
    (instances) => {
      record.slices = toSlices(record, instances, seriesUrl(record));
      for (const slice of record.slices) {
        slice.panel = `${record.study.pages}/documents/${encodeURIComponent(slice.sop)}/panel`;
      }
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

/** Mark which thumbnails the active viewport and the others show. */
export function markThumbnails() {
  const shown = new Set(shownViewports().map((vp) => vp.record));
  for (const record of records) {
    record.button.setAttribute("aria-pressed", String(active.record === record));
    record.button.classList.toggle("shown", shown.has(record));
  }
}

/** Show `record`'s first slice in `vp` (after loading its slices), with the image's own window. */
export async function showSeries(vp, record) {
  if (vp.record === record && record.loading) return;
  if (vp === active) stopCine();
  cancelDrawing();
  vp.record = record;
  vp.loadToken += 1;
  const token = vp.loadToken;
  resetDisplay(vp);
  abortUnused();
  setTotal(vp, 0);
  markThumbnails();
  requestDraw(vp);
  const slices = await loadSlices(record);
  if (vp.loadToken !== token) return;
  if (slices.length === 0) throw new Error("This series has no images.");
  setTotal(vp, slices.length);
  showSlice(vp, 0, { force: true });
}

function setTotal(vp, total) {
  vp.total = total;
  vp.index = 0;
  if (vp === active) updateControls();
}

/** The slider, cine button and image label follow the active viewport. */
export function updateControls() {
  const { total, index } = active;
  el.slider.max = String(Math.max(total, 1));
  el.slider.value = String(index + 1);
  el.slider.disabled = total < 2;
  el.cine.disabled = total < 2;
  if (total < 2) el.cineFps.textContent = "";
  el.frameLabel.textContent = `${total ? index + 1 : 0} / ${total}`;
  syncState();
}

/**
 * Show slice `index` (clamped to the series) in `vp`; `force` even when it is already
 * shown; `link` (default) brings linked viewports along.
 */
export function showSlice(vp, index, { force = false, link = true } = {}) {
  if (!vp.total) return;
  const next = Math.min(vp.total - 1, Math.max(0, index));
  if (next === vp.index && !force) return;
  vp.index = next;
  if (vp === active) {
    cancelDrawing();
    updateControls();
    scheduleTags();
  }
  showDocument(vp);
  plan();
  requestDraw(); // every viewport: the reference lines follow the active slice
  if (link && vp === active) linkSlices(vp);
}

// ---------------------------------------------------------------- thumbnails

const thumbScratch = document.createElement("canvas");

/** One thumbnail per series without one, from its middle slice, one series at a time. */
export async function loadThumbnails() {
  for (const record of records) {
    if (record.thumbed || !state.ready) continue;
    record.thumbed = true;
    try {
      const slices = await loadSlices(record);
      const slice = slices[Math.floor(slices.length / 2)];
      if (slice?.document) drawLabelThumb(record);
      if (!slice || slice.document) continue;
      const frame = cache.get(slice.key);
      if (frame) {
        drawThumb(record, frame);
      } else {
        awaitThumbnail(record, slice);
      }
    } catch (error) {
      report(error);
    }
  }
}

/** A document series' thumbnail: its modality, written on gray. */
function drawLabelThumb(record) {
  const ctx = record.canvas.getContext("2d");
  ctx.fillStyle = "#2b323c";
  ctx.fillRect(0, 0, THUMB_SIZE, THUMB_SIZE);
  ctx.fillStyle = "#dce1e7";
  ctx.font = "600 22px system-ui, sans-serif";
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillText(String(record.modality || "DOC").slice(0, 4), THUMB_SIZE / 2, THUMB_SIZE / 2);
}

/** Draw `frame` into `record`'s thumbnail, fitted and centred on black. */
export function drawThumb(record, frame) {
  renderTo(thumbScratch, frame, frame.window, false);
  const ctx = record.canvas.getContext("2d");
  const scale = Math.min(THUMB_SIZE / frame.cols, THUMB_SIZE / (frame.rows * aspect(frame)));
  const w = frame.cols * scale;
  const h = frame.rows * aspect(frame) * scale;
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, THUMB_SIZE, THUMB_SIZE);
  ctx.drawImage(thumbScratch, (THUMB_SIZE - w) / 2, (THUMB_SIZE - h) / 2, w, h);
}
