// The page's flow: sign in (token from #token=… or the paste box) → a photo (drop, file or camera) →
// POST v1/reconstruct → fetch the stored files → viewer, overlay, texture, expression panel, downloads.
// Several photos dropped or chosen at once are one person: POST v1/reconstruct/person → one head, and a
// list of the photos (fitted, no face, or left out as someone else); the overlay shows the reference photo.

import { ApiError, apiDelete, apiGet, clearToken, fetchFiles, reconstruct, reconstructPerson, setToken, takeToken } from "./api.js";
import { LiveMode } from "./live.js";
import { MorphPanel } from "./morphs.js";
import { drawOverlay, poseText } from "./overlay.js";
import { Viewer } from "./viewer.js";
import { storeZip } from "./zip.js";

const $ = (id) => document.getElementById(id);
const state = { viewer: null, morphs: null, live: null, result: null, bitmap: null, urls: [] };

/** kind "error" (problems) or "note" (news that is not a failure). */
function showMessage(title, detail = "", kind = "error") {
  $("message").classList.toggle("note", kind === "note");
  $("message-title").textContent = title;
  $("message-detail").textContent = detail;
  $("message").hidden = false;
}

function hideMessage() {
  $("message").hidden = true;
}

/** Show an ApiError (or any error) by its problem title and detail; a 401 sends the user to sign in. */
function showError(err) {
  if (err instanceof ApiError) {
    const retry = err.retryAfter ? ` Try again in ${err.retryAfter} s.` : "";
    showMessage(err.title, `${err.detail}${retry}`);
    if (err.status === 401) signOut(false);
  } else {
    showMessage("Something went wrong", err && err.message ? err.message : String(err));
  }
}

function busy(text, fraction = null) {
  $("busy").hidden = text === null;
  $("busy-text").textContent = text || "";
  const progress = $("progress");
  if (fraction === null) progress.removeAttribute("value");
  else progress.value = fraction;
  for (const id of ["choose", "camera-open", "capture"]) $(id).disabled = text !== null;
}

// ------------------------------------------------------------------------------------------ sign in
async function signIn() {
  hideMessage();
  try {
    const info = await (await apiGet("v1/models")).json();
    const model = info.model || {};
    $("backend").textContent = `backend: ${model.backend || model.name || "unknown"}`;
    $("who").hidden = false;
    $("signin").hidden = true;
    $("upload").hidden = false;
  } catch (err) {
    showError(err);
    if (!(err instanceof ApiError && err.status === 401)) $("signin").hidden = false;
  }
}

function signOut(hideResult = true) {
  clearToken();
  $("who").hidden = true;
  $("upload").hidden = true;
  $("signin").hidden = false;
  if (hideResult) $("result").hidden = true;
}

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token-input").value.trim();
  $("token-input").value = "";
  if (!token) return;
  setToken(token);
  signIn();
});
$("signout").addEventListener("click", () => {
  hideMessage();
  signOut();
});

// ------------------------------------------------------------------------------------------- photos
$("choose").addEventListener("click", () => $("file").click());
$("file").addEventListener("change", () => {
  const files = [...$("file").files];
  $("file").value = "";
  choose(files);
});

/** One photo: the single-photo path; several: one person's head from all of them. */
function choose(files) {
  if (files.length > 1) runPerson(files);
  else if (files.length === 1) run(files[0], files[0].name);
}

const drop = $("drop");
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const files = [...event.dataTransfer.files];
  const images = files.filter((f) => f.type.startsWith("image/"));
  choose(images.length ? images : files.slice(0, 1));
});

let stream = null;
$("camera-open").addEventListener("click", async () => {
  hideMessage();
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showMessage("No camera here", "the browser allows the camera only on https:// or localhost pages");
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user", width: { ideal: 1280 } }, audio: false });
  } catch (err) {
    showMessage("The camera did not start", err.message);
    return;
  }
  $("video").srcObject = stream;
  $("camera").hidden = false;
  $("capture").focus();
});

function closeCamera() {
  if (stream) for (const track of stream.getTracks()) track.stop();
  stream = null;
  $("video").srcObject = null;
  $("camera").hidden = true;
}

$("camera-close").addEventListener("click", closeCamera);
$("capture").addEventListener("click", () => {
  const video = $("video");
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  closeCamera();
  canvas.toBlob((blob) => blob && run(blob, "camera.jpg"), "image/jpeg", 0.92);
});

// ------------------------------------------------------------------------------------------ results
async function run(blob, filename) {
  hideMessage();
  busy("Uploading…", 0);
  try {
    const result = await reconstruct(blob, filename, (fraction) =>
      fraction === null ? busy("Reconstructing the face…") : busy(`Uploading… ${Math.round(fraction * 100)} %`, fraction),
    );
    busy("Fetching the files…");
    const face = result.faces[0];
    const files = await fetchFiles(result.files, Object.keys(result.files));
    const bitmap = await createImageBitmap(blob);
    busy("Drawing the head…");
    await show(result, face, files, bitmap);
  } catch (err) {
    showError(err);
  } finally {
    busy(null);
  }
}

async function runPerson(photos) {
  hideMessage();
  busy("Uploading…", 0);
  try {
    const result = await reconstructPerson(photos, (fraction) =>
      fraction === null
        ? busy(`Fitting one head to ${photos.length} photos…`)
        : busy(`Uploading ${photos.length} photos… ${Math.round(fraction * 100)} %`, fraction),
    );
    busy("Fetching the files…");
    const files = await fetchFiles(result.files, Object.keys(result.files));
    const bitmap = await createImageBitmap(photos[result.person.reference]);
    busy("Drawing the head…");
    await show(result, result.faces[0], files, bitmap);
  } catch (err) {
    showError(err);
  } finally {
    busy(null);
  }
}

/** The person list: each photo's part in the head (fitted, no face, or left out as someone else). */
function showPerson(person) {
  $("person").hidden = !person;
  if (!person) return;
  const fitted = person.photos.filter((p) => p.status === "fitted").length;
  $("person-summary").textContent =
    `One head from ${fitted} of ${person.photos.length} photos; they show ${Math.round(person.texture_seen * 100)} % of ` +
    `the head's texture (the front photo alone ${Math.round(person.texture_seen_reference * 100)} %), the rest is mirrored or filled.`;
  const list = $("person-photos");
  list.replaceChildren(
    ...person.photos.map((photo) => {
      const item = document.createElement("li");
      item.dataset.status = photo.status;
      const face = photo.face;
      const words = {
        fitted: () => `fitted, yaw ${Math.round(face.pose.yaw)}°, fit residual ${face.fit_residual_px} px, ${Math.round(photo.texture_share * 100)} % of the texture`,
        "no-face": () => "no face found: left out",
        outlier: () => `left out: its face is ${photo.identity_distance_mm.toFixed(1)} mm from the others' (someone else?)`,
      };
      item.textContent = `${photo.name}${photo.index === person.reference ? " (front)" : ""}: ${words[photo.status]()}`;
      return item;
    }),
  );
}

async function show(result, face, files, bitmap) {
  for (const url of state.urls) URL.revokeObjectURL(url);
  state.urls = [];
  state.result = result;
  state.bitmap = bitmap;
  $("result").hidden = false;

  const glbName = face.files.find((name) => name.endsWith(".glb"));
  const textureName = face.files.find((name) => /\.(png|jpe?g)$/.test(name));
  const objName = face.files.find((name) => name.endsWith(".obj"));
  const mtlName = face.files.find((name) => name.endsWith(".mtl"));
  const stem = `face3d-${result.id}`;

  showPerson(result.person);
  redrawOverlay();
  $("pose-text").textContent = `${poseText(face.pose)} · coverage ${Math.round(face.texture_coverage * 100)} %`;
  if (textureName) {
    $("texture").src = blobUrl(files[textureName]);
    $("texture").onload = () => ($("texture-size").textContent = `${$("texture").naturalWidth}² px`);
  }
  link("dl-glb", files[glbName], `${stem}.glb`);
  const zipParts = [objName, mtlName, textureName].filter(Boolean);
  const zipFiles = await Promise.all(zipParts.map(async (name) => ({ name, data: new Uint8Array(await files[name].arrayBuffer()) })));
  link("dl-zip", storeZip(zipFiles), `${stem}.zip`);
  const json = files["result.json"] || new Blob([JSON.stringify(result, null, 2)], { type: "application/json" });
  link("dl-json", json, `${stem}.json`);
  $("expiry").textContent = `The server keeps these files for ${Math.round(result.expires_in_s / 60)} minutes.`;

  const viewerEl = $("viewer");
  viewerEl.setAttribute("aria-busy", "true");
  viewerEl.dataset.state = "loading";
  if (!state.viewer) {
    try {
      state.viewer = new Viewer(viewerEl);
    } catch (err) {
      viewerEl.dataset.state = "error";
      showMessage("No 3D view", `this browser has no WebGL (${err.message}); the files can still be downloaded`);
      return;
    }
    state.morphs = new MorphPanel(
      { panel: $("morphs"), sliders: $("sliders"), presets: $("presets"), play: $("play"), filter: $("morph-filter"), mode: document.querySelectorAll('input[name="morph-mode"]') },
      state.viewer,
    );
    state.live = new LiveMode(
      { button: $("live"), panel: $("live-panel"), video: $("live-video"), fps: $("live-fps"), status: $("live-status") },
      state.viewer,
      state.morphs,
    );
  }
  if (state.live.running) state.live.stop();
  const { names, fitted } = await state.viewer.load(await files[glbName].arrayBuffer());
  state.viewer.setWireframe($("wireframe").checked);
  state.morphs.show(names, fitted);
  viewerEl.dataset.morphs = String(names.length);
  viewerEl.dataset.state = "ready";
  viewerEl.setAttribute("aria-busy", "false");
  $("result").scrollIntoView({ behavior: "smooth", block: "start" });
}

function blobUrl(blob) {
  const url = URL.createObjectURL(blob);
  state.urls.push(url);
  return url;
}

function link(id, blob, filename) {
  const a = $(id);
  a.href = blobUrl(blob);
  a.download = filename;
}

$("reset-view").addEventListener("click", () => state.viewer && state.viewer.reset());
$("wireframe").addEventListener("change", () => state.viewer && state.viewer.setWireframe($("wireframe").checked));
function redrawOverlay() {
  if (!state.result) return;
  drawOverlay($("overlay"), state.bitmap, state.result.faces, { points: $("show-points").checked, whole: $("whole-photo").checked });
}

$("show-points").addEventListener("change", redrawOverlay);
$("whole-photo").addEventListener("change", redrawOverlay);
$("delete").addEventListener("click", async () => {
  if (!state.result) return;
  try {
    await apiDelete(`v1/results/${encodeURIComponent(state.result.id)}`);
    showMessage("Deleted", "the server no longer holds this result; the downloads on this page still work", "note");
  } catch (err) {
    showError(err);
  }
});

// ------------------------------------------------------------------------------------------- start
if (takeToken()) signIn();
else $("signin").hidden = false;
