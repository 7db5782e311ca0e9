// The page of a pix2pix-jax web export: draw or upload an input, run the generator in the
// browser with onnxruntime-web (WebGPU when the browser offers it, else WebAssembly), show and
// download the output. model.json (written by the export) describes the model and the brushes.
"use strict";

const $ = (id) => document.getElementById(id);
const f32 = Math.fround;
const TWO_OVER_255 = f32(2 / 255);

// numpy's rounding (half to even), so that pixels match the Python exports bit for bit.
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// uint8 pixels → float32 in [-1, 1] as pix2pix_jax.pixels.to_unit_range: x * (2/255) - 1.
function toUnitRange(rgba, channels, width, height) {
  const plane = width * height;
  const out = new Float32Array(channels * plane);
  for (let i = 0; i < plane; i++) {
    const r = rgba[4 * i], g = rgba[4 * i + 1], b = rgba[4 * i + 2];
    if (channels === 1) {  // PIL's convert("L"): (R·299 + G·587 + B·114) / 1000, rounded
      const grey = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
      out[i] = f32(f32(grey * TWO_OVER_255) - 1);
    } else {
      out[i] = f32(f32(r * TWO_OVER_255) - 1);
      out[plane + i] = f32(f32(g * TWO_OVER_255) - 1);
      out[2 * plane + i] = f32(f32(b * TWO_OVER_255) - 1);
    }
  }
  return out;
}

// float32 NCHW in [-1, 1] → RGBA pixels, as pix2pix_jax.pixels.to_uint8.
function toPixels(values, channels, width, height) {
  const plane = width * height;
  const rgba = new Uint8ClampedArray(4 * plane);
  const u8 = (v) => roundHalfEven(f32(f32(Math.min(1, Math.max(-1, v)) + 1) * 127.5));
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) rgba[4 * i + c] = u8(values[(channels === 1 ? 0 : c) * plane + i]);
    rgba[4 * i + 3] = 255;
  }
  return rgba;
}

async function fetchWithProgress(urls, onProgress) {
  const sizes = await Promise.all(urls.map(async (u) => {
    const r = await fetch(u, { method: "HEAD" });
    return Number(r.headers.get("content-length")) || 0;
  }));
  const total = sizes.reduce((a, b) => a + b, 0);
  const parts = [];
  let loaded = 0;
  for (const url of urls) {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      loaded += value.length;
      onProgress(total ? loaded / total : 0);
    }
  }
  const bytes = new Uint8Array(loaded);
  let offset = 0;
  for (const part of parts) { bytes.set(part, offset); offset += part.length; }
  return bytes;
}

async function main() {
  if (location.protocol === "file:") {
    $("file-note").hidden = false;
    $("status").textContent = "serve this folder to run the model (see above)";
    return;
  }
  const meta = await (await fetch("model.json")).json();
  const [height, width] = meta.size;
  document.title = `pix2pix · ${meta.title}`;
  $("title").textContent = meta.title;
  for (const canvas of [$("input"), $("output")]) { canvas.width = width; canvas.height = height; }
  let session = null, backend = "", running = Promise.resolve(null);
  const input = $("input").getContext("2d", { willReadFrequently: true });
  const output = $("output").getContext("2d");
  input.imageSmoothingEnabled = false;

  // Brushes: exact class colours, drawn as whole pixels (no anti-aliasing to snap away).
  let colour = meta.palette.colours[0];
  meta.palette.names.forEach((name, k) => {
    const button = document.createElement("button");
    const [r, g, b] = meta.palette.colours[k];
    button.textContent = name;
    button.style.background = `rgb(${r},${g},${b})`;
    button.style.color = r * 0.299 + g * 0.587 + b * 0.114 > 140 ? "#000" : "#fff";
    button.onclick = () => {
      colour = meta.palette.colours[k];
      for (const other of $("brushes").children) other.classList.remove("active");
      button.classList.add("active");
    };
    if (k === 0) button.classList.add("active");
    $("brushes").appendChild(button);
  });
  let drawing = false, last = null;
  const at = (event) => {
    const box = $("input").getBoundingClientRect();
    return [Math.floor((event.clientX - box.left) * width / box.width),
            Math.floor((event.clientY - box.top) * height / box.height)];
  };
  const dab = ([x, y]) => {
    const size = Number($("size").value);
    input.fillStyle = `rgb(${colour[0]},${colour[1]},${colour[2]})`;
    input.fillRect(x - Math.floor(size / 2), y - Math.floor(size / 2), size, size);
  };
  $("input").addEventListener("pointerdown", (e) => {
    drawing = true; last = at(e); dab(last); $("input").setPointerCapture(e.pointerId);
  });
  $("input").addEventListener("pointermove", (e) => {
    if (!drawing) return;
    const [x1, y1] = at(e), [x0, y0] = last;
    const steps = Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0), 1);
    for (let s = 1; s <= steps; s++) {
      dab([Math.round(x0 + (x1 - x0) * s / steps), Math.round(y0 + (y1 - y0) * s / steps)]);
    }
    last = [x1, y1];
  });
  $("input").addEventListener("pointerup", () => { drawing = false; translate(); });

  const loadImage = (src) => new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = reject;
    image.src = src;
  });
  const drawSample = async () => {
    input.drawImage(await loadImage("sample.png"), 0, 0, width, height);
  };
  $("sample").onclick = async () => { await drawSample(); translate(); };
  $("clear").onclick = () => {
    const [r, g, b] = meta.palette.background;
    input.fillStyle = `rgb(${r},${g},${b})`;
    input.fillRect(0, 0, width, height);
    translate();
  };
  $("upload").onchange = async () => {
    const file = $("upload").files[0];
    if (!file) return;
    const image = await loadImage(URL.createObjectURL(file));
    let sx = 0, sw = image.width;
    if ($("aligned").checked) {  // A|B: the input half (B, the right one, for BtoA)
      sw = Math.floor(image.width / 2);
      sx = meta.direction === "BtoA" ? sw : 0;
    }
    input.imageSmoothingEnabled = true;
    input.imageSmoothingQuality = "high";
    input.drawImage(image, sx, 0, sw, image.height, 0, 0, width, height);
    input.imageSmoothingEnabled = false;
    translate();
  };
  await drawSample();

  // The runtime and the model.
  ort.env.wasm.wasmPaths = new URL("./", location.href).href;
  ort.env.wasm.numThreads = self.crossOriginIsolated ? (navigator.hardwareConcurrency || 1) : 1;
  const bytes = await fetchWithProgress(meta.model_parts, (p) => { $("progress").value = p; });
  $("status").textContent = "starting the runtime…";
  for (const provider of navigator.gpu ? ["webgpu", "wasm"] : ["wasm"]) {
    try {
      session = await ort.InferenceSession.create(bytes, { executionProviders: [provider] });
      backend = provider;
      break;
    } catch (error) {
      console.warn(`${provider}: ${error}`);
    }
  }
  if (session === null) throw new Error("onnxruntime-web could not start the model");
  const threads = backend === "wasm" ? `, ${ort.env.wasm.numThreads} thread(s)` : "";
  $("meta").textContent = `${meta.description} · ${meta.mode} mode · ${backend}${threads}`;
  $("loading").hidden = true;
  $("translate").disabled = false;

  async function run() {
    const pixels = input.getImageData(0, 0, width, height).data;
    const images = toUnitRange(pixels, meta.input_nc, width, height);
    const feeds = { images: new ort.Tensor("float32", images, [1, meta.input_nc, height, width]) };
    const masks = {};
    for (const mask of meta.masks) {  // paper mode: dropout masks drawn here, P(keep) = 1 - rate
      const dims = mask.shape.map((d) => d === "batch" ? 1 : typeof d === "number" ? d
          : Math.round((d.startsWith("height") ? height : width) / Number(d.split("/")[1] || 1)));
      const keep = new Uint8Array(dims.reduce((a, b) => a * b, 1));
      for (let i = 0; i < keep.length; i++) keep[i] = Math.random() >= mask.rate ? 1 : 0;
      feeds[mask.name] = new ort.Tensor("bool", keep, dims);
      masks[mask.name] = { dims, keep };
    }
    const start = performance.now();
    const result = await session.run(feeds);
    const seconds = (performance.now() - start) / 1000;
    const values = result.outputs.data;
    output.putImageData(new ImageData(toPixels(values, meta.output_nc, width, height), width,
                                      height), 0, 0);
    $("timing").textContent = `${(1000 * seconds).toFixed(0)} ms on ${backend}`;
    $("download").href = $("output").toDataURL("image/png");
    window.pix2pix.last = { input: images, output: values, masks, seconds };
    return window.pix2pix.last;
  }
  function translate() {  // one run at a time, in order
    if (session === null) return running;
    running = running.then(run, run);
    return running;
  }
  $("translate").onclick = translate;
  window.pix2pix.translate = translate;
  window.pix2pix.backend = backend;
  await translate();
}

window.pix2pix = {};
window.pix2pix.ready = main().catch((error) => {
  $("status").textContent = `error: ${error}`;
  throw error;
});
