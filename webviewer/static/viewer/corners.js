/*
 * Each viewport's corner texts and orientation markers: the patient (name, ID, sex and
 * age, birth date) top left; the viewport's study (date, description) and series top
 * right; the image number, slice location and thickness and the probed value bottom
 * left; window and zoom bottom right; the L/R, A/P, H/F letters on the edges from the
 * shown frame's Image Orientation (Patient). Text is only ever set with textContent.
 */
import { study } from "./context.js";
import { valueText } from "./measure.js";
import { edgeLetters } from "./planes.js";
import { seriesCaption } from "./slices.js";
import { roundForDisplay } from "./windowing.js";
import { sliceOf } from "./viewports.js";

/** "1970-01-01" from "19700101"; other text as it is. */
export function dicomDate(text) {
  const value = String(text ?? "");
  return /^\d{8}$/.test(value) ? `${value.slice(0, 4)}-${value.slice(4, 6)}-${value.slice(6)}` : value;
}

/** "054Y" -> "54Y" (DICOM ages are zero-padded). */
function age(text) {
  return String(text ?? "").replace(/^0+(?=\d)/, "");
}

function set(line, text) {
  const value = text ?? "";
  if (line.textContent !== value) line.textContent = value;
}

const mm = (value) => `${Number(value.toFixed(2))} mm`;

/** Update every corner text and edge letter of `vp`. */
export function updateCorners(vp) {
  const { lines } = vp;
  const frame = vp.frameShown;
  const record = vp.record;
  set(lines.patient, record ? study.name : "");
  set(lines.pid, record && study.id ? `ID ${study.id}` : "");
  set(lines.sexage, record ? [study.sex, age(study.age)].filter(Boolean).join(" ") : "");
  set(lines.birth, record && study.birth ? `Born ${dicomDate(study.birth)}` : "");
  const own = record?.study;
  set(lines.date, own ? [dicomDate(own.date), own.current ? "" : "(prior)"].filter(Boolean).join(" ") : "");
  set(lines.study, own?.description ?? "");
  set(lines.series, record ? seriesCaption(record) : "");
  set(lines.slice, vp.total ? `Image ${vp.index + 1} / ${vp.total}` : "");
  set(lines.location, Number.isFinite(frame?.sliceLocation) ? `Loc ${mm(frame.sliceLocation)}` : "");
  set(lines.thickness, frame?.thickness > 0 ? `Thick ${mm(frame.thickness)}` : "");
  const probe = vp.hover;
  set(lines.probe, probe ? `${valueText(probe.value)}${probe.unit ? ` ${probe.unit}` : ""} at (${probe.x}, ${probe.y})` : "");
  const grayscale = frame?.window && vp.window;
  set(lines.window, grayscale ? `C ${roundForDisplay(vp.window.center)} W ${roundForDisplay(vp.window.width)}` : "");
  set(lines.zoom, frame ? `Zoom ${Math.round(vp.view.scale * 100)}%` : "");
  const letters = frame && !sliceOf(vp)?.document ? edgeLetters(frame.orientation) : null;
  for (const [edge, marker] of Object.entries(vp.markers)) set(marker, letters?.[edge] ?? "");
}
