/*
 * The annotation list: every note of the open study (all slices), what it measures and
 * where it is; a click selects it and shows its slice, its × button (or the Delete key
 * once selected) deletes it. window.viewerState.annotations mirrors the store for tests.
 */
import { el, report, state } from "./context.js";
import { labelLines } from "./measure.js";
import { requestDraw } from "./draw.js";
import { recordOf, showSeries, showSlice } from "./series.js";
import { store } from "./tools.js";
import { active, shownViewports, sliceOf } from "./viewports.js";

const KIND_NAMES = { length: "Length", angle: "Angle", ellipse: "Ellipse", rect: "Rectangle", probe: "Probe" };

/** Open or close the list. */
export function toggleNotes() {
  const open = el.notes.hidden;
  el.notes.hidden = !open;
  el.notesToggle.setAttribute("aria-expanded", String(open));
}

function noteItem(note) {
  const item = document.createElement("li");
  item.dataset.note = String(note.id);
  item.classList.toggle("selected", note.id === store.selected);
  const pick = document.createElement("button");
  pick.type = "button";
  pick.className = "note-pick";
  const title = document.createElement("strong");
  title.textContent = KIND_NAMES[note.kind] ?? note.kind;
  const what = document.createElement("span");
  what.textContent = labelLines(note, note.spacing, note.unit).join(" · ");
  const where = document.createElement("span");
  where.className = "muted";
  where.textContent = note.where;
  pick.append(title, what, where);
  pick.addEventListener("click", () => goTo(note).catch(report));
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "note-delete";
  remove.textContent = "×";
  remove.title = "Delete this annotation";
  remove.setAttribute("aria-label", `Delete ${title.textContent.toLowerCase()} ${note.id}`);
  remove.addEventListener("click", () => store.remove(note.id));
  item.append(pick, remove);
  return item;
}

/** Select `note` and show its slice (in a viewport showing its series, else the active one). */
async function goTo(note) {
  store.select(note.id);
  const record = recordOf(note.seriesUid);
  if (!record) return;
  const vp = shownViewports().find((v) => v.record === record) ?? active;
  if (vp.record !== record) await showSeries(vp, record);
  const index = record.slices.findIndex((slice) => slice.key === note.sliceKey);
  if (index >= 0 && sliceOf(vp)?.key !== note.sliceKey) showSlice(vp, index);
}

function refresh() {
  const notes = store.all();
  el.notesList.replaceChildren(...notes.map(noteItem));
  el.notesToggle.textContent = notes.length ? `Notes (${notes.length})` : "Notes";
  state.annotations = notes.map((note) => ({
    id: note.id,
    kind: note.kind,
    sliceKey: note.sliceKey,
    seriesUid: note.seriesUid,
    points: note.points.map((p) => ({ x: p.x, y: p.y })),
    stats: note.stats ?? null,
    value: note.value ?? null,
    labels: labelLines(note, note.spacing, note.unit),
    selected: note.id === store.selected,
  }));
  requestDraw();
}

/** Keep the list (and the overlays) in step with the store. */
export function wirePanel() {
  store.onChange(refresh);
  refresh();
}
