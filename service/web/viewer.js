// The orbit viewer: one three.js scene that shows a result's GLB, drag to turn, wheel/pinch to zoom,
// arrow keys and +/- when focused, a reset, a wireframe switch, the GLB's morph targets by name and the
// head's rotation (live mode, live.js).
//
// It renders on demand (after a change), not in a loop, so an idle page costs no CPU or battery.
// Axes are the GLB's: +Y up, +Z out of the face, metres (README, "Units and axes").

import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";

export const BACKGROUND = 0x2a2f36;
const KEY_STEP = Math.PI / 18; // 10 degrees per arrow key press

export class Viewer {
  /** container: an element the canvas fills; throws when the browser has no WebGL. */
  constructor(container) {
    this.container = container;
    this.renderer = new THREE.WebGLRenderer({ antialias: true });
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
    this.renderer.setClearColor(BACKGROUND, 1);
    container.appendChild(this.renderer.domElement);

    this.scene = new THREE.Scene();
    this.camera = new THREE.PerspectiveCamera(30, 1, 0.01, 100);
    this.scene.add(new THREE.HemisphereLight(0xffffff, 0x808080, 2.2));
    const key = new THREE.DirectionalLight(0xffffff, 1.2);
    key.position.set(0.3, 0.4, 1);
    this.camera.add(key); // the light follows the camera, so the side one looks at is lit
    this.scene.add(this.camera);

    this.controls = new OrbitControls(this.camera, this.renderer.domElement);
    this.controls.addEventListener("change", () => this.render());
    container.addEventListener("keydown", (event) => this.onKey(event));

    this.model = null;
    this.meshes = [];
    this.home = null;
    new ResizeObserver(() => this.resize()).observe(container);
  }

  /** Replace the shown model with the GLB in ``buffer`` (an ArrayBuffer); resolves once drawn. */
  async load(buffer) {
    const gltf = await new GLTFLoader().parseAsync(buffer, "");
    if (this.model) {
      this.scene.remove(this.model);
      this.dispose(this.model);
    }
    this.model = gltf.scene;
    this.scene.add(this.model);
    this.meshes = [];
    this.model.traverse((node) => {
      if (node.isMesh) this.meshes.push(node);
    });
    this.frame();
    this.resize();
    return this.morphInfo();
  }

  /** Centre the model and put the camera in front of it at a distance that fits it; remember it for reset. */
  frame() {
    const box = new THREE.Box3().setFromObject(this.model);
    const centre = box.getCenter(new THREE.Vector3());
    const size = box.getSize(new THREE.Vector3());
    // Fit the front view: the larger of width and height with a margin, from in front of the nearest point.
    const half = Math.max(size.x, size.y, 1e-3) / 2 * 1.25;
    const distance = half / Math.tan(THREE.MathUtils.degToRad(this.camera.fov / 2)) + size.z / 2;
    this.camera.near = distance / 100;
    this.camera.far = distance * 100;
    this.home = { target: centre.clone(), position: centre.clone().add(new THREE.Vector3(0, 0, distance)) };
    this.controls.minDistance = distance * 0.2;
    this.controls.maxDistance = distance * 5;
    this.reset();
  }

  reset() {
    if (!this.home) return;
    this.controls.target.copy(this.home.target);
    this.camera.position.copy(this.home.position);
    this.camera.up.set(0, 1, 0);
    this.camera.updateProjectionMatrix();
    this.controls.update();
    this.render();
  }

  resize() {
    const width = Math.max(this.container.clientWidth, 1);
    const height = Math.max(this.container.clientHeight, 1);
    this.renderer.setSize(width, height);
    this.camera.aspect = width / height;
    this.camera.updateProjectionMatrix();
    this.render();
  }

  render() {
    this.renderer.render(this.scene, this.camera);
  }

  setWireframe(on) {
    for (const mesh of this.meshes) {
      for (const material of [mesh.material].flat()) material.wireframe = on;
    }
    this.render();
  }

  /** Arrow keys turn the head around its centre, + and - zoom, Home resets (the viewer is focusable). */
  onKey(event) {
    const offset = this.camera.position.clone().sub(this.controls.target);
    const spherical = new THREE.Spherical().setFromVector3(offset);
    const turns = { ArrowLeft: [-KEY_STEP, 0], ArrowRight: [KEY_STEP, 0], ArrowUp: [0, -KEY_STEP], ArrowDown: [0, KEY_STEP] };
    if (event.key in turns) {
      const [theta, phi] = turns[event.key];
      spherical.theta += theta;
      spherical.phi = THREE.MathUtils.clamp(spherical.phi + phi, 0.05, Math.PI - 0.05);
      this.camera.position.setFromSpherical(spherical).add(this.controls.target);
    } else if (event.key === "+" || event.key === "=") {
      this.controls.dollyIn(1.15);
    } else if (event.key === "-") {
      this.controls.dollyOut(1.15);
    } else if (event.key === "Home") {
      this.reset();
    } else {
      return;
    }
    event.preventDefault();
    this.controls.update();
    this.render();
  }

  /** {names, fitted}: the morph target names (glTF extras.targetNames) and the GLB's own weights. */
  morphInfo() {
    const names = new Set();
    const fitted = {};
    for (const mesh of this.meshes) {
      if (!mesh.morphTargetDictionary || !mesh.morphTargetInfluences) continue;
      for (const [name, index] of Object.entries(mesh.morphTargetDictionary)) {
        if (!names.has(name)) fitted[name] = mesh.morphTargetInfluences[index] || 0;
        names.add(name);
      }
    }
    return { names: [...names], fitted };
  }

  /** Turn the model about its centre by the quaternion [x, y, z, w] (null: back to rest); ``draw``: render now. */
  setRotation(quaternion, draw = true) {
    if (!this.model || !this.home) return;
    const turn = quaternion ? new THREE.Quaternion(...quaternion) : new THREE.Quaternion();
    this.model.quaternion.copy(turn);
    this.model.position.copy(this.home.target).sub(this.home.target.clone().applyQuaternion(turn));
    if (draw) this.render();
  }

  /** Set morph weights by name ({name: weight}) on every mesh that has them, then draw. */
  setWeights(weights) {
    for (const mesh of this.meshes) {
      if (!mesh.morphTargetDictionary) continue;
      for (const [name, weight] of Object.entries(weights)) {
        const index = mesh.morphTargetDictionary[name];
        if (index !== undefined) mesh.morphTargetInfluences[index] = weight;
      }
    }
    this.render();
  }

  dispose(root) {
    root.traverse((node) => {
      if (!node.isMesh) return;
      node.geometry.dispose();
      for (const material of [node.material].flat()) {
        if (material.map) material.map.dispose();
        material.dispose();
      }
    });
  }
}
