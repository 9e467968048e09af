// Worker: finds a QR code in one camera frame with jsQR (vendored from npm, see services/checkin/vendor.json).
/* global jsQR */
importScripts("/static/vendor/jsQR.js");

self.onmessage = ({ data }) => {
  let text = null;
  try {
    const found = jsQR(new Uint8ClampedArray(data.pixels), data.width, data.height, {
      inversionAttempts: "dontInvert",
    });
    text = found?.data || null;
  } catch {
    text = null;
  }
  self.postMessage({ id: data.id, text });
};
