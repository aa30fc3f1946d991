// The uploaded photo with what the service found drawn over it: the face box, every landmark, the
// 68 iBUG points and the head pose as three axes (red X, green Y, blue Z) from the model origin.
// Coordinates are the API's image pixels of the EXIF-upright photo; createImageBitmap applies EXIF
// orientation the same way the service does, so points and pixels line up. By default the view is
// cropped around the faces, where a 478-point mesh is still readable; "whole photo" shows it all.

const MAX_SIDE = 1200; // canvas pixels: enough for the page, small enough to stay quick on phones
const AXIS_CM = 6; // drawn axis length in model centimetres (pose.scale is image px per cm)
const CROP_MARGIN = 2.2; // crop side as a multiple of the faces' box

/** The image region to show: everything, or a square around every face's box. */
function region(bitmap, faces, whole) {
  if (whole || faces.length === 0) return [0, 0, bitmap.width, bitmap.height];
  const x0 = Math.min(...faces.map((f) => f.bbox[0]));
  const y0 = Math.min(...faces.map((f) => f.bbox[1]));
  const x1 = Math.max(...faces.map((f) => f.bbox[2]));
  const y1 = Math.max(...faces.map((f) => f.bbox[3]));
  const side = Math.min(Math.max(x1 - x0, y1 - y0) * CROP_MARGIN, bitmap.width, bitmap.height);
  const left = Math.min(Math.max((x0 + x1) / 2 - side / 2, 0), bitmap.width - side);
  const top = Math.min(Math.max((y0 + y1) / 2 - side / 2, 0), bitmap.height - side);
  return [left, top, side, side];
}

/** Draw ``bitmap`` and ``faces`` (the API's faces[]) onto ``canvas``. */
export function drawOverlay(canvas, bitmap, faces, { points = true, whole = false } = {}) {
  const [left, top, width, height] = region(bitmap, faces, whole);
  const k = Math.min(MAX_SIDE / Math.max(width, height), whole ? 1 : 4);
  canvas.width = Math.round(width * k);
  canvas.height = Math.round(height * k);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, left, top, width, height, 0, 0, canvas.width, canvas.height);
  const at = (x, y) => [(x - left) * k, (y - top) * k];
  const unit = Math.max(canvas.width, canvas.height) / (whole ? 400 : 300); // widths that read at any size
  for (const face of faces) {
    const [x0, y0] = at(face.bbox[0], face.bbox[1]);
    const [x1, y1] = at(face.bbox[2], face.bbox[3]);
    ctx.strokeStyle = "rgba(255, 214, 10, 0.9)";
    ctx.lineWidth = unit;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    if (points) {
      ctx.fillStyle = "rgba(0, 229, 255, 0.8)";
      for (const [x, y] of face.landmarks) dot(ctx, ...at(x, y), unit * 0.6);
      ctx.fillStyle = "rgba(255, 64, 129, 0.95)";
      for (const [x, y] of face.landmarks_68 || []) dot(ctx, ...at(x, y), unit * 1.3);
    }
    drawAxes(ctx, face.pose, at, k, unit);
  }
}

function dot(ctx, x, y, r) {
  ctx.beginPath();
  ctx.arc(x, y, r, 0, 2 * Math.PI);
  ctx.fill();
}

/** Model axes through the pose: image = scale · R · v + t, with R in a Y-up frame (image y points down). */
function drawAxes(ctx, pose, at, k, unit) {
  if (!pose || !pose.rotation) return;
  const [ox, oy] = at(pose.translation[0], pose.translation[1]);
  const colours = ["#ff3b30", "#34c759", "#0a84ff"];
  ctx.lineWidth = unit * 1.5;
  for (let axis = 0; axis < 3; axis++) {
    const dx = pose.rotation[0][axis] * pose.scale * AXIS_CM * k;
    const dy = -pose.rotation[1][axis] * pose.scale * AXIS_CM * k;
    ctx.strokeStyle = colours[axis];
    ctx.beginPath();
    ctx.moveTo(ox, oy);
    ctx.lineTo(ox + dx, oy + dy);
    ctx.stroke();
  }
}

/** One line for people: "yaw 12.3°, pitch -4.0°, roll 1.2°". */
export function poseText(pose) {
  if (!pose) return "";
  const f = (v) => `${Number(v).toFixed(1)}°`;
  return `yaw ${f(pose.yaw)}, pitch ${f(pose.pitch)}, roll ${f(pose.roll)}`;
}
