// The expression panel, shown only when the GLB has morph targets: one labelled slider per target,
// a fitted/neutral switch, a few preset expressions and a "play" that eases through them.
//
// Target names are ARKit blendshape names (glTF extras.targetNames), as face3d's GLB writes them; presets
// set only the targets the model has.

const PRESETS = {
  Smile: { mouthSmileLeft: 0.9, mouthSmileRight: 0.9, cheekSquintLeft: 0.3, cheekSquintRight: 0.3 },
  "Jaw open": { jawOpen: 0.8 },
  "Brows up": { browInnerUp: 0.9, browOuterUpLeft: 0.9, browOuterUpRight: 0.9 },
  Blink: { eyeBlinkLeft: 1, eyeBlinkRight: 1 },
  Surprise: { jawOpen: 0.5, browInnerUp: 0.8, browOuterUpLeft: 0.8, browOuterUpRight: 0.8, eyeWideLeft: 0.7, eyeWideRight: 0.7 },
};
const STEP_MS = 700; // one transition of "play"

export class MorphPanel {
  /** el: the panel's elements by role; viewer: something with setWeights({name: weight}). */
  constructor(el, viewer) {
    this.el = el;
    this.viewer = viewer;
    this.names = [];
    this.fitted = {};
    this.current = {};
    this.inputs = new Map();
    this.playing = null;
    for (const radio of el.mode) radio.addEventListener("change", () => this.apply(radio.value === "neutral" ? {} : this.fitted, radio.value));
    el.play.addEventListener("click", () => (this.playing ? this.stop() : this.play()));
    el.filter.addEventListener("input", () => this.filter(el.filter.value));
  }

  /** Show the panel for ``names`` with the GLB's fitted weights, or hide it when there are none. */
  show(names, fitted) {
    this.stop();
    this.names = names;
    this.fitted = { ...fitted };
    this.el.panel.hidden = names.length === 0;
    this.el.sliders.replaceChildren();
    this.el.presets.replaceChildren();
    this.inputs.clear();
    if (names.length === 0) return;
    names.forEach((name, i) => this.el.sliders.append(this.slider(name, i)));
    for (const [label, weights] of Object.entries(PRESETS)) {
      if (!Object.keys(weights).some((name) => this.names.includes(name))) continue;
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = label;
      button.addEventListener("click", () => {
        this.stop();
        this.apply(this.preset(label), null);
      });
      this.el.presets.append(button);
    }
    this.el.filter.value = "";
    this.apply(this.fitted, "fitted");
  }

  slider(name, i) {
    const row = document.createElement("div");
    row.className = "slider";
    const label = document.createElement("label");
    label.htmlFor = `morph-${i}`;
    label.textContent = name;
    const input = document.createElement("input");
    input.type = "range";
    input.id = `morph-${i}`;
    input.min = "0";
    input.max = "1";
    input.step = "0.01";
    input.dataset.name = name;
    const output = document.createElement("output");
    output.htmlFor = input.id;
    input.addEventListener("input", () => {
      this.stop();
      this.apply({ ...this.current, [name]: Number(input.value) }, null);
    });
    row.append(label, input, output);
    this.inputs.set(name, { input, output, row });
    return row;
  }

  /** A preset's weights restricted to the model's targets, everything else at rest. */
  preset(label) {
    return Object.fromEntries(Object.entries(PRESETS[label]).filter(([name]) => this.names.includes(name)));
  }

  /** Set the model to ``weights`` (missing names = 0); ``mode`` ticks fitted/neutral, null ticks neither. */
  apply(weights, mode) {
    this.current = Object.fromEntries(this.names.map((name) => [name, weights[name] || 0]));
    for (const [name, { input, output }] of this.inputs) {
      input.value = String(this.current[name]);
      output.value = this.current[name].toFixed(2);
    }
    for (const radio of this.el.mode) radio.checked = radio.value === mode;
    this.viewer.setWeights(this.current);
  }

  filter(text) {
    const needle = text.trim().toLowerCase();
    for (const [name, { row }] of this.inputs) row.hidden = needle !== "" && !name.toLowerCase().includes(needle);
  }

  /** Ease from where the weights are through each preset and back to fitted, again and again, until stopped. */
  play() {
    const presets = Object.keys(PRESETS).map((label) => this.preset(label)).filter((w) => Object.keys(w).length);
    const stops = [...presets, this.fitted];
    let from = { ...this.current };
    let stop = 0;
    let start = performance.now();
    this.el.play.setAttribute("aria-pressed", "true");
    this.el.play.textContent = "Stop";
    const tick = (now) => {
      const t = Math.min((now - start) / STEP_MS, 1);
      const ease = t * t * (3 - 2 * t);
      const to = stops[stop];
      const mixed = Object.fromEntries(this.names.map((n) => [n, (from[n] || 0) + ((to[n] || 0) - (from[n] || 0)) * ease]));
      this.apply(mixed, null);
      if (t === 1) {
        from = mixed;
        stop = (stop + 1) % stops.length;
        start = now;
      }
      this.playing = requestAnimationFrame(tick);
    };
    this.playing = requestAnimationFrame(tick);
  }

  stop() {
    if (!this.playing) return;
    cancelAnimationFrame(this.playing);
    this.playing = null;
    this.el.play.setAttribute("aria-pressed", "false");
    this.el.play.textContent = "Play expressions";
  }
}
