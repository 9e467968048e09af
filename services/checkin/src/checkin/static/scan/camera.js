// Continuous QR reading from the rear camera: the browser's BarcodeDetector where it has one, otherwise
// jsQR in a worker so decoding never blocks the page.

const FRAME_GAP_MS = 120;
const DECODE_WIDTH = 720;

async function nativeDetector() {
  if (!("BarcodeDetector" in globalThis)) return null;
  try {
    const formats = await globalThis.BarcodeDetector.getSupportedFormats();
    if (!formats.includes("qr_code")) return null;
    const detector = new globalThis.BarcodeDetector({ formats: ["qr_code"] });
    return async (video) => {
      const found = await detector.detect(video);
      return found.length ? found[0].rawValue : null;
    };
  } catch {
    return null;
  }
}

function workerDetector() {
  const worker = new Worker("/scan/decoder.js");
  const canvas = document.createElement("canvas");
  const context = canvas.getContext("2d", { willReadFrequently: true });
  let asked = 0;
  const waiting = new Map();
  worker.onmessage = ({ data }) => {
    waiting.get(data.id)?.(data.text ?? null);
    waiting.delete(data.id);
  };
  worker.onerror = () => {
    for (const resolve of waiting.values()) resolve(null);
    waiting.clear();
  };
  const detect = (video) => {
    const scale = Math.min(1, DECODE_WIDTH / video.videoWidth);
    const width = Math.round(video.videoWidth * scale);
    const height = Math.round(video.videoHeight * scale);
    if (!width || !height) return Promise.resolve(null);
    canvas.width = width;
    canvas.height = height;
    context.drawImage(video, 0, 0, width, height);
    const pixels = context.getImageData(0, 0, width, height);
    const id = ++asked;
    return new Promise((resolve) => {
      waiting.set(id, resolve);
      worker.postMessage({ id, width, height, pixels: pixels.data.buffer }, [pixels.data.buffer]);
    });
  };
  detect.close = () => worker.terminate();
  return detect;
}

export class Camera {
  /** `onText(text)` is called for every code read while not paused. */
  constructor(video, onText) {
    this.video = video;
    this.onText = onText;
    this.stream = null;
    this.detect = null;
    this.paused = false;
    this.running = false;
    this.timer = null;
  }

  async start() {
    if (this.running) return;
    if (!navigator.mediaDevices?.getUserMedia) throw new Error("no camera access in this browser");
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: false,
      video: { facingMode: { ideal: "environment" }, width: { ideal: 1280 }, height: { ideal: 720 } },
    });
    this.video.srcObject = this.stream;
    await this.video.play();
    this.detect = this.detect ?? (await nativeDetector()) ?? workerDetector();
    this.running = true;
    this.#next();
  }

  pause() {
    this.paused = true;
  }

  resume() {
    this.paused = false;
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.stream = null;
    this.video.srcObject = null;
    this.detect?.close?.();
    this.detect = null;
  }

  #next() {
    if (!this.running) return;
    this.timer = setTimeout(() => this.#read(), FRAME_GAP_MS);
  }

  async #read() {
    if (!this.running) return;
    try {
      const ready = this.video.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA && this.video.videoWidth > 0;
      if (!this.paused && ready && document.visibilityState === "visible") {
        const text = await this.detect(this.video);
        if (text && !this.paused && this.running) await this.onText(text);
      }
    } catch (error) {
      // A frame that cannot be read is skipped; the next one is tried as usual.
      console.warn("camera frame skipped:", error?.name ?? "error");
    }
    this.#next();
  }
}
