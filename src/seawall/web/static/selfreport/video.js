// vPDQ of a video on this device: a PDQ hash of sampled frames, numbered and timed as the server's
// vPDQ (src/seawall/media/video.py) numbers and times them, so a platform's vPDQ finds the video.
//
// No demuxer: the MP4 headers give the frame count and rate; a detached, muted <video> element is
// seeked to the middle of each sampled frame and the decoded frame is read through a VideoFrame.
// The server converts YUV to RGB itself (BT.601, limited range, whatever the stream is tagged
// with); the planes are converted here the same way, so only the decoders' rounding differs.

import { pdqFromRgba } from "./pdq.js";

const f32 = Math.fround;

// ---- MP4 headers ----------------------------------------------------------------------------

function u32(b, p) {
  return b[p] * 16777216 + ((b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]);
}

function fourcc(b, p) {
  return String.fromCharCode(b[p], b[p + 1], b[p + 2], b[p + 3]);
}

// The child boxes of b[start:end] as [{type, start (of the payload), end}].
function boxes(b, start, end) {
  const out = [];
  let p = start;
  while (p + 8 <= end) {
    let size = u32(b, p);
    let header = 8;
    if (size === 1) {
      if (p + 16 > end) break;
      size = u32(b, p + 8) * 4294967296 + u32(b, p + 12);
      header = 16;
    } else if (size === 0) {
      size = end - p;
    }
    if (size < header || p + size > end) break;
    out.push({ type: fourcc(b, p + 4), start: p + header, end: p + size });
    p += size;
  }
  return out;
}

function child(b, box, type) {
  return boxes(b, box.start, box.end).find((x) => x.type === type) || null;
}

// The first video track's frame count and average frame rate (ffmpeg's: frames over the track's
// media duration), or null when the headers are not there (fragmented MP4, not an MP4).
export function mp4VideoTrack(b) {
  const moov = boxes(b, 0, b.length).find((x) => x.type === "moov");
  if (!moov) return null;
  for (const trak of boxes(b, moov.start, moov.end).filter((x) => x.type === "trak")) {
    const mdia = child(b, trak, "mdia");
    const hdlr = mdia && child(b, mdia, "hdlr");
    if (!hdlr || fourcc(b, hdlr.start + 8) !== "vide") continue;
    const mdhd = child(b, mdia, "mdhd");
    const minf = child(b, mdia, "minf");
    const stbl = minf && child(b, minf, "stbl");
    const stts = stbl && child(b, stbl, "stts");
    if (!mdhd || !stts) return null;
    const v1 = b[mdhd.start] === 1;
    const timescale = u32(b, mdhd.start + (v1 ? 20 : 12));
    let frames = 0;
    let duration = 0;
    const count = u32(b, stts.start + 4);
    for (let i = 0; i < count; i++) {
      const p = stts.start + 8 + 8 * i;
      if (p + 8 > stts.end) return null;
      frames += u32(b, p);
      duration += u32(b, p) * u32(b, p + 4);
    }
    if (!frames || !duration || !timescale) return null;
    return { frames, fps: (frames * timescale) / duration };
  }
  return null;
}

// ---- frames ---------------------------------------------------------------------------------

function once(target, event, ms) {
  return new Promise((resolve, reject) => {
    const done = (error) => {
      clearTimeout(timer);
      target.removeEventListener(event, ok);
      target.removeEventListener("error", failed);
      if (error) reject(error);
      else resolve();
    };
    const ok = () => done(null);
    const failed = () => done(new Error("the browser cannot decode this video"));
    const timer = setTimeout(() => done(new Error(`no ${event} in time`)), ms);
    target.addEventListener(event, ok);
    target.addEventListener("error", failed);
  });
}

// BT.601 limited range to RGB, as the server's swscale default: chroma of each 2x2 block shared.
function rgbaFromPlanes(buf, layout, width, height, nv12) {
  const rgba = new Uint8Array(width * height * 4);
  const [yl, ul, vl] = layout;
  for (let y = 0; y < height; y++) {
    const cy = y >> 1;
    for (let x = 0; x < width; x++) {
      const cx = x >> 1;
      const Y = buf[yl.offset + y * yl.stride + x];
      let U;
      let V;
      if (nv12) {
        U = buf[ul.offset + cy * ul.stride + 2 * cx];
        V = buf[ul.offset + cy * ul.stride + 2 * cx + 1];
      } else {
        U = buf[ul.offset + cy * ul.stride + cx];
        V = buf[vl.offset + cy * vl.stride + cx];
      }
      const c = 1.164383 * (Y - 16);
      const d = U - 128;
      const e = V - 128;
      const p = 4 * (y * width + x);
      rgba[p] = Math.min(255, Math.max(0, Math.round(c + 1.596027 * e)));
      rgba[p + 1] = Math.min(255, Math.max(0, Math.round(c - 0.391762 * d - 0.812968 * e)));
      rgba[p + 2] = Math.min(255, Math.max(0, Math.round(c + 2.017232 * d)));
      rgba[p + 3] = 255;
    }
  }
  return rgba;
}

// RGBA of the frame the element shows now. {rgba, width, height, path, at: its timestamp in µs}
async function framePixels(video, planes = true) {
  const frame = new VideoFrame(video);
  try {
    const width = frame.visibleRect ? frame.visibleRect.width : frame.displayWidth;
    const height = frame.visibleRect ? frame.visibleRect.height : frame.displayHeight;
    if (planes && (frame.format === "I420" || frame.format === "NV12")) {
      const buf = new Uint8Array(frame.allocationSize());
      const layout = await frame.copyTo(buf);
      const rgba = rgbaFromPlanes(buf, layout, width, height, frame.format === "NV12");
      return { rgba, width, height, path: frame.format, at: frame.timestamp };
    }
    const rgba = new Uint8Array(width * height * 4);
    await frame.copyTo(rgba, { format: "RGBA" });
    return { rgba, width, height, path: "RGBA", at: frame.timestamp };
  } finally {
    frame.close();
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The pixels of frame n. 'seeked' can fire while the element still shows the previous frame, or
// before it has a frame to give at all (seen under load): the frame's own timestamp says which
// frame was read, so a stale or missing one is read again, waiting a little longer each time, then
// sought again; a frame that cannot be had is an error, never a wrong hash.
async function frameAt(video, n, fps, base, planes) {
  let failure = null;
  for (let seek = 0; seek < 3; seek++) {
    const seeked = once(video, "seeked", 15000);
    // The middle of frame n: clear of rounding at the frame's edges.
    video.currentTime = (n + 0.5) / fps;
    await seeked;
    for (let attempt = 0; attempt < 12; attempt++) {
      try {
        const px = await framePixels(video, planes);
        if (base === null || !Number.isFinite(px.at) || Math.round(((px.at - base) * fps) / 1e6) === n) return px;
      } catch (err) {
        failure = err; // no frame to read yet (VideoFrame refuses an element without current data)
      }
      await sleep(Math.min(250, 30 * 2 ** attempt));
    }
  }
  const why = failure && failure.message ? `: ${failure.message}` : "";
  throw new Error(`frame ${n} could not be read${why}`);
}

// vPDQ frames of a video: [{frame, quality, pdq, timestamp}], at most `maxFrames` (every frame
// when the video has that few, else every n-th frame as the server's every_n_frames picks them).
// Throws when this browser cannot decode the video or read its frames.
export async function vpdqOfVideo(bytes, mime, maxFrames, { planes = true } = {}) {
  if (typeof VideoFrame === "undefined") throw new Error("this browser cannot read video frames");
  const track = mp4VideoTrack(bytes);
  if (!track) throw new Error("the video's frame count is not in its headers");
  const url = URL.createObjectURL(new Blob([bytes], { type: mime }));
  const video = document.createElement("video");
  video.muted = true;
  video.preload = "auto";
  video.playsInline = true;
  try {
    const loaded = once(video, "loadeddata", 15000);
    video.src = url;
    await loaded;
    const step = Math.max(1, Math.ceil(track.frames / maxFrames));
    const out = [];
    let pixels = "none";
    let base = null; // the first frame's timestamp (microseconds): an edit list may shift them all
    for (let n = 0; n < track.frames && out.length < maxFrames; n += step) {
      const px = await frameAt(video, n, track.fps, base, planes);
      if (base === null) base = px.at - (n * 1e6) / track.fps;
      pixels = px.path;
      const r = pdqFromRgba(px.rgba, px.width, px.height, false, false, true);
      const timestamp = f32(f32(n) / f32(track.fps));
      out.push({ frame: n, quality: r.quality, pdq: r.pdq, timestamp: Math.round(timestamp * 1000) / 1000 });
    }
    return { frames: out, step, total: track.frames, fps: track.fps, pixels };
  } finally {
    video.removeAttribute("src");
    video.load();
    URL.revokeObjectURL(url);
  }
}
