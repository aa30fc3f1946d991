// Live mode, "Animate with my camera": MediaPipe's Face Landmarker runs in this page (the vendored,
// pinned @mediapipe/tasks-vision, scripts/vendor_tasks_vision.py, on its WebAssembly CPU build) on the
// camera's frames and drives the head: its 52 ARKit blendshape scores become the GLB's morph weights by
// name, its facial transformation matrix the head's rotation. The model comes from this server
// (/web/models/face_landmarker.task, rebuilt from the service's weight cache); nothing leaves the origin.
//
// One detection per new camera frame, in a requestAnimationFrame loop: the head moves at the camera's
// rate or the display's, whichever is lower, and the page shows the rate it reaches. As a mirror: turn
// your head to your left and the head turns to the screen's left; close your left eye and the eye on
// your side of the screen closes (Left/Right scores and the rotation are mirrored).

const TASKS_VISION = "./vendor/tasks-vision-1.1.0/vision_bundle.mjs"; // loaded on first use, not with the page
const WASM = new URL("./vendor/tasks-vision-1.1.0/wasm/", import.meta.url);
const MODEL = new URL("./models/face_landmarker.task", import.meta.url);
const MIRROR_SIDES = [["Left", "Right"], ["Right", "Left"]];

/** "eyeBlinkLeft" -> "eyeBlinkRight" and back; other names unchanged. */
export function mirrorName(name) {
  for (const [from, to] of MIRROR_SIDES) if (name.endsWith(from)) return name.slice(0, -from.length) + to;
  return name;
}

/** A glTF/three.js rotation (x, y, z, w quaternion) from MediaPipe's column-major 4x4 face pose, mirrored
 * left-right (S R S with S = diag(-1, 1, 1)): yaw and roll change sign, pitch stays. */
export function mirroredRotation(matrix) {
  const m = (row, col) => matrix[col * 4 + row];
  // the rotation part, scale removed (MediaPipe's pose is a similarity in cm)
  const scale = Math.hypot(m(0, 0), m(1, 0), m(2, 0)) || 1;
  const r = (row, col) => ((row === 0) !== (col === 0) ? -1 : 1) * m(row, col) / scale;
  const trace = r(0, 0) + r(1, 1) + r(2, 2);
  let x, y, z, w;
  if (trace > 0) {
    const s = 0.5 / Math.sqrt(trace + 1);
    [w, x, y, z] = [0.25 / s, (r(2, 1) - r(1, 2)) * s, (r(0, 2) - r(2, 0)) * s, (r(1, 0) - r(0, 1)) * s];
  } else if (r(0, 0) > r(1, 1) && r(0, 0) > r(2, 2)) {
    const s = 2 * Math.sqrt(1 + r(0, 0) - r(1, 1) - r(2, 2));
    [w, x, y, z] = [(r(2, 1) - r(1, 2)) / s, 0.25 * s, (r(0, 1) + r(1, 0)) / s, (r(0, 2) + r(2, 0)) / s];
  } else if (r(1, 1) > r(2, 2)) {
    const s = 2 * Math.sqrt(1 + r(1, 1) - r(0, 0) - r(2, 2));
    [w, x, y, z] = [(r(0, 2) - r(2, 0)) / s, (r(0, 1) + r(1, 0)) / s, 0.25 * s, (r(1, 2) + r(2, 1)) / s];
  } else {
    const s = 2 * Math.sqrt(1 + r(2, 2) - r(0, 0) - r(1, 1));
    [w, x, y, z] = [(r(1, 0) - r(0, 1)) / s, (r(0, 2) + r(2, 0)) / s, (r(1, 2) + r(2, 1)) / s, 0.25 * s];
  }
  return [x, y, z, w];
}

export class LiveMode {
  /** el: {button, panel, video, fps, status}; viewer: the Viewer; morphs: the MorphPanel (its sliders follow). */
  constructor(el, viewer, morphs) {
    this.el = el;
    this.viewer = viewer;
    this.morphs = morphs;
    this.landmarker = null;
    this.stream = null;
    this.frame = null;
    this.lastTime = -1;
    this.count = 0;
    this.tracking = 0; // ms spent in the tracker since ``since``
    this.since = 0;
    el.button.addEventListener("click", () => (this.stream ? this.stop() : this.start()));
  }

  get running() {
    return this.stream !== null;
  }

  async start() {
    const { button, status, video, panel } = this.el;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      status.textContent = "No camera here: the browser allows it only on https:// or localhost pages.";
      return;
    }
    button.disabled = true;
    this.morphs.stop();
    try {
      status.textContent = "Starting the camera…";
      this.stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user", width: { ideal: 640 } }, audio: false });
      video.srcObject = this.stream;
      await video.play();
      if (!this.landmarker) {
        status.textContent = "Loading the face tracker…";
        const { FaceLandmarker } = await import(TASKS_VISION);
        this.landmarker = await FaceLandmarker.createFromOptions(
          { wasmLoaderPath: new URL("vision_wasm_internal.js", WASM).href, wasmBinaryPath: new URL("vision_wasm_internal.wasm", WASM).href },
          {
            baseOptions: { modelAssetPath: MODEL.href, delegate: "CPU" },
            runningMode: "VIDEO",
            numFaces: 1,
            outputFaceBlendshapes: true,
            outputFacialTransformationMatrixes: true,
          },
        );
      }
    } catch (err) {
      status.textContent = `Live mode did not start: ${err && err.message ? err.message : err}`;
      this.release();
      button.disabled = false;
      return;
    }
    panel.hidden = false;
    button.disabled = false;
    button.setAttribute("aria-pressed", "true");
    button.textContent = "Stop animating";
    status.textContent = "Live: the head follows your face.";
    this.count = 0;
    this.tracking = 0;
    this.since = performance.now();
    this.lastTime = -1;
    this.frame = requestAnimationFrame((now) => this.tick(now));
  }

  tick(now) {
    if (!this.stream) return;
    const video = this.el.video;
    if (video.readyState >= 2 && video.currentTime !== this.lastTime) {
      this.lastTime = video.currentTime;
      const started = performance.now();
      const result = this.landmarker.detectForVideo(video, now);
      this.tracking += performance.now() - started;
      this.apply(result);
      this.count += 1;
    }
    if (now - this.since >= 1000) {
      const fps = (this.count * 1000) / (now - this.since);
      this.el.fps.textContent = `${fps.toFixed(1)} fps`;
      this.el.fps.dataset.fps = fps.toFixed(2);
      this.el.fps.title = `tracking ${(this.tracking / Math.max(this.count, 1)).toFixed(0)} ms per frame`;
      this.el.fps.dataset.trackingMs = (this.tracking / Math.max(this.count, 1)).toFixed(1);
      this.count = 0;
      this.tracking = 0;
      this.since = now;
    }
    this.frame = requestAnimationFrame((t) => this.tick(t));
  }

  /** One detection onto the head: the scores by (mirrored) ARKit name, the rotation mirrored. */
  apply(result) {
    const shapes = result.faceBlendshapes && result.faceBlendshapes[0];
    if (!shapes) {
      this.el.status.textContent = "Live: no face in view.";
      return;
    }
    this.el.status.textContent = "Live: the head follows your face.";
    const weights = {};
    for (const { categoryName, score } of shapes.categories) {
      if (categoryName !== "_neutral") weights[mirrorName(categoryName)] = score;
    }
    const pose = result.facialTransformationMatrixes && result.facialTransformationMatrixes[0];
    if (pose) this.viewer.setRotation(mirroredRotation(pose.data), false);
    this.morphs.apply(weights, null);
  }

  stop() {
    this.release();
    this.viewer.setRotation(null, false);
    this.morphs.apply(this.morphs.fitted, "fitted");
    this.el.status.textContent = "";
  }

  release() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = null;
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    this.stream = null;
    this.el.video.srcObject = null;
    this.el.panel.hidden = true;
    this.el.fps.textContent = "";
    delete this.el.fps.dataset.fps;
    this.el.button.setAttribute("aria-pressed", "false");
    this.el.button.textContent = "Animate with my camera";
  }
}
