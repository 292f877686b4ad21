// Local decoding and hashing of one picked file. Nothing here sends anything anywhere.
//
// Chromium gives the server's (Pillow's) pixels through createImageBitmap with orientation, colour
// management and premultiplication all off, with three measured exceptions handled here:
// it applies the EXIF orientation anyway (so the tag is set to 1 in a copy of the bytes first), a 2D
// canvas or a VideoFrame premultiplies alpha (so pixels are read back through WebGL, which does not),
// and an <img> colour-manages (so it is never used).

import { md5Hex } from "./md5.js";
import { SAMPLE, pdqFromRgba, sampleIndices } from "./pdq.js";
import { vpdqOfVideo } from "./video.js";

export const IMAGE = "image";
export const VIDEO = "video";
export const OTHER = "other";

function ascii(bytes, start, length) {
  return String.fromCharCode(...bytes.subarray(start, start + length));
}

// What a file is, from its first bytes (never its name). {media, format, decodable}
export function sniff(bytes) {
  const b = bytes;
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return { media: IMAGE, format: "jpeg", mime: "image/jpeg" };
  if (b.length >= 8 && b[0] === 0x89 && ascii(b, 1, 3) === "PNG") return { media: IMAGE, format: "png", mime: "image/png" };
  if (b.length >= 6 && ascii(b, 0, 4) === "GIF8") return { media: IMAGE, format: "gif", mime: "image/gif" };
  if (b.length >= 12 && ascii(b, 0, 4) === "RIFF" && ascii(b, 8, 4) === "WEBP") return { media: IMAGE, format: "webp", mime: "image/webp" };
  if (b.length >= 12 && ascii(b, 0, 4) === "RIFF" && ascii(b, 8, 4) === "AVI ") return { media: VIDEO, format: "avi" };
  if (b.length >= 2 && ascii(b, 0, 2) === "BM") return { media: IMAGE, format: "bmp", mime: "image/bmp" };
  if (b.length >= 4 && (ascii(b, 0, 4) === "II*\0" || ascii(b, 0, 4) === "MM\0*")) return { media: IMAGE, format: "tiff" };
  if (b.length >= 4 && b[0] === 0x1a && b[1] === 0x45 && b[2] === 0xdf && b[3] === 0xa3) return { media: VIDEO, format: "webm" };
  if (b.length >= 12 && ascii(b, 4, 4) === "ftyp") {
    const brand = ascii(b, 8, 4);
    if (["heic", "heix", "hevc", "hevx", "heim", "heis", "mif1", "msf1", "avif"].includes(brand)) {
      return { media: IMAGE, format: "heif" };
    }
    return { media: VIDEO, format: "mp4" };
  }
  return { media: OTHER, format: "unknown" };
}

// ---- EXIF orientation -----------------------------------------------------------------------

// Set the Orientation tag (0x0112) of a TIFF/EXIF block to 1, in place. True when one was changed.
function patchTiffOrientation(b, start, end) {
  if (end - start < 8) return false;
  const le = b[start] === 0x49; // "II" little-endian, "MM" big-endian
  const u16 = (p) => (le ? b[p] | (b[p + 1] << 8) : (b[p] << 8) | b[p + 1]);
  const u32 = (p) => (le ? (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16)) + b[p + 3] * 16777216 : b[p] * 16777216 + ((b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]));
  const ifd = start + u32(start + 4);
  if (ifd + 2 > end) return false;
  const count = u16(ifd);
  for (let i = 0; i < count; i++) {
    const entry = ifd + 2 + 12 * i;
    if (entry + 12 > end) return false;
    if (u16(entry) === 0x0112 && u16(entry + 2) === 3) {
      if (u16(entry + 8) === 1) return false;
      b[entry + 8] = le ? 1 : 0;
      b[entry + 9] = le ? 0 : 1;
      return true;
    }
  }
  return false;
}

const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

function crc32(b, start, end) {
  let c = -1;
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ b[i]) & 255] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

// A copy of the file with any EXIF Orientation set to 1 (the same bytes when there is none):
// Chromium rotates by the tag whatever createImageBitmap is told, the reference hash never does.
export function withoutOrientation(bytes, format) {
  const b = Uint8Array.from(bytes);
  if (format === "jpeg") {
    let p = 2;
    while (p + 4 <= b.length && b[p] === 0xff) {
      const marker = b[p + 1];
      if (marker === 0xda || marker === 0xd9) break; // start of scan: no more headers
      const length = (b[p + 2] << 8) | b[p + 3];
      if (marker === 0xe1 && ascii(b, p + 4, 6) === "Exif\0\0") {
        patchTiffOrientation(b, p + 10, Math.min(b.length, p + 2 + length));
      }
      p += 2 + length;
    }
  } else if (format === "webp") {
    let p = 12;
    while (p + 8 <= b.length) {
      const size = b[p + 4] | (b[p + 5] << 8) | (b[p + 6] << 16) | (b[p + 7] << 24);
      if (ascii(b, p, 4) === "EXIF") {
        let s = p + 8;
        if (ascii(b, s, 6) === "Exif\0\0") s += 6;
        patchTiffOrientation(b, s, Math.min(b.length, p + 8 + size));
      }
      p += 8 + size + (size & 1);
    }
  } else if (format === "png") {
    let p = 8;
    while (p + 12 <= b.length) {
      const size = ((b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]) >>> 0;
      if (ascii(b, p + 4, 4) === "eXIf" && p + 12 + size <= b.length) {
        if (patchTiffOrientation(b, p + 8, p + 8 + size)) {
          const crc = crc32(b, p + 4, p + 8 + size);
          const q = p + 8 + size;
          b[q] = crc >>> 24;
          b[q + 1] = (crc >>> 16) & 255;
          b[q + 2] = (crc >>> 8) & 255;
          b[q + 3] = crc & 255;
        }
      }
      if (ascii(b, p + 4, 4) === "IDAT") break;
      p += 12 + size;
    }
  }
  return b;
}

// ---- pixels ---------------------------------------------------------------------------------

// RGBA bytes of a bitmap as decoded: through WebGL (exact, alpha included); without WebGL (or for a
// picture over its texture size) through a VideoFrame, then a 2D canvas: both exact for opaque
// pictures, but they premultiply, so translucent pixels lose colour there (docs/self-report.md).
// RGBA bytes through WebGL: an unpremultiplied ImageBitmap uploads as it is, and reading the
// framebuffer back gives the decoder's colour even where alpha is below 255. Null without WebGL.
function readWithWebGL(bitmap) {
  const width = bitmap.width;
  const height = bitmap.height;
  const canvas = new OffscreenCanvas(1, 1);
  const gl = canvas.getContext("webgl2") || canvas.getContext("webgl");
  if (!gl) return null;
  if (width > gl.getParameter(gl.MAX_TEXTURE_SIZE) || height > gl.getParameter(gl.MAX_TEXTURE_SIZE)) return null;
  const texture = gl.createTexture();
  gl.bindTexture(gl.TEXTURE_2D, texture);
  gl.pixelStorei(gl.UNPACK_PREMULTIPLY_ALPHA_WEBGL, false);
  gl.pixelStorei(gl.UNPACK_COLORSPACE_CONVERSION_WEBGL, gl.NONE);
  gl.pixelStorei(gl.UNPACK_FLIP_Y_WEBGL, false);
  gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, bitmap);
  const fb = gl.createFramebuffer();
  gl.bindFramebuffer(gl.FRAMEBUFFER, fb);
  gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, texture, 0);
  if (gl.checkFramebufferStatus(gl.FRAMEBUFFER) !== gl.FRAMEBUFFER_COMPLETE) return null;
  const rgba = new Uint8Array(width * height * 4);
  gl.readPixels(0, 0, width, height, gl.RGBA, gl.UNSIGNED_BYTE, rgba);
  gl.deleteFramebuffer(fb);
  gl.deleteTexture(texture);
  const lose = gl.getExtension("WEBGL_lose_context");
  if (lose) lose.loseContext();
  return { rgba, width, height, path: "webgl" };
}

// An opaque picture larger than 512 px through a 2D canvas, only the rows PDQ samples: each row is
// copied 1:1 (no scaling), so only 512 rows are read back. {rgba, width, height: 512, rowsSampled}.
function readSampledRows(bitmap) {
  const width = bitmap.width;
  const rows = sampleIndices(bitmap.height);
  const canvas = new OffscreenCanvas(width, rows.length);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.imageSmoothingEnabled = false;
  for (let i = 0; i < rows.length; i++) ctx.drawImage(bitmap, 0, rows[i], width, 1, 0, i, width, 1);
  const data = ctx.getImageData(0, 0, width, rows.length).data;
  return { rgba: new Uint8Array(data.buffer), width, height: rows.length, rowsSampled: true, path: "canvas-rows" };
}

export async function readPixels(bitmap, path = "auto", opaque = false) {
  const width = bitmap.width;
  const height = bitmap.height;
  // A JPEG has no alpha: the canvas is exact for it and much quicker than WebGL's read-back.
  if ((path === "auto" && opaque && (width > SAMPLE || height > SAMPLE)) || path === "canvas-rows") {
    return readSampledRows(bitmap);
  }
  if (path === "auto" || path === "webgl") {
    const px = readWithWebGL(bitmap);
    if (px) return px;
  }
  if (path !== "canvas" && typeof VideoFrame !== "undefined") {
    const frame = new VideoFrame(bitmap, { timestamp: 0, alpha: "keep" });
    try {
      const rgba = new Uint8Array(width * height * 4);
      await frame.copyTo(rgba, { format: "RGBA" });
      return { rgba, width, height, path: "videoframe" };
    } finally {
      frame.close();
    }
  }
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const data = ctx.getImageData(0, 0, width, height).data;
  return { rgba: new Uint8Array(data.buffer), width, height, path: "canvas" };
}

export async function decodeImage(bytes, kind, path = "auto") {
  const blob = new Blob([withoutOrientation(bytes, kind.format)], { type: kind.mime });
  const bitmap = await createImageBitmap(blob, {
    imageOrientation: "none",
    colorSpaceConversion: "none",
    premultiplyAlpha: "none",
  });
  try {
    return await readPixels(bitmap, path, kind.format === "jpeg");
  } finally {
    bitmap.close();
  }
}

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (x) => x.toString(16).padStart(2, "0")).join("");
}

// Every hash of one file the page can compute: {media, format, md5, sha256, pdq?, pdq_quality?,
// pdq_dihedral?, vpdq?, exact_only, reason?}. exact_only: only exact copies can be matched (a video
// or picture this browser cannot decode), and `reason` says why in plain words. `maxFrames`: the
// most vPDQ frames to hash of a video (0: none).
export async function hashBytes(bytes, { dihedral = false, path = "auto", maxFrames = 64 } = {}) {
  const kind = sniff(bytes);
  const out = { media: kind.media, format: kind.format, exact_only: true };
  out.sha256 = hex(await crypto.subtle.digest("SHA-256", bytes));
  out.md5 = md5Hex(bytes);
  if (kind.media === IMAGE && kind.mime) {
    try {
      const px = await decodeImage(bytes, kind, path);
      const r = pdqFromRgba(px.rgba, px.width, px.height, dihedral, px.rowsSampled);
      out.pdq = r.pdq;
      out.pdq_quality = r.quality;
      if (dihedral) out.pdq_dihedral = r.dihedral;
      out.pixels = px.path;
      out.exact_only = false;
    } catch (err) {
      out.reason = "undecodable";
      out.error = String(err && err.message ? err.message : err);
    }
  } else if (kind.media === IMAGE) {
    out.reason = kind.format === "heif" ? "heif" : "undecodable";
  } else if (kind.media === VIDEO) {
    out.reason = "video";
    if (kind.format === "mp4" && maxFrames > 0) {
      try {
        const v = await vpdqOfVideo(bytes, "video/mp4", maxFrames);
        if (v.frames.length) {
          out.vpdq = v.frames;
          out.vpdq_step = v.step;
          out.pixels = v.pixels;
          out.exact_only = false;
          delete out.reason;
        }
      } catch (err) {
        out.error = String(err && err.message ? err.message : err);
      }
    }
  } else {
    out.reason = "unknown";
  }
  return out;
}

export async function hashFile(file, options = {}) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  return hashBytes(bytes, options);
}
