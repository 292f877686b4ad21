// The self-report page: hashes each chosen file on this device and sends only the hashes.

import { hashFile } from "./decode.js";

const form = document.getElementById("send-form");
const input = document.getElementById("files");
const list = document.getElementById("file-list");
const progress = document.getElementById("progress");
const consent = document.getElementById("consent");
const send = document.getElementById("send");
const sendError = document.getElementById("send-error");
const done = document.getElementById("done");
const maxFiles = Number(form.dataset.maxFiles);
const maxFrames = Number(form.dataset.maxFrames);
const maxVideoFrames = Number(form.dataset.maxVideoFrames);
const token = document.querySelector('meta[name="csrf-token"]').content;

const NOTES = {
  video: "This browser can't look inside this video, so it will be found only as an exact copy of this file.",
  heif: "This browser can't open this kind of photo (HEIC), so it will be found only as an exact copy.",
  undecodable: "This browser couldn't open this picture, so it will be found only as an exact copy.",
  unknown: "This doesn't look like a picture or a video. It will be found only as an exact copy.",
};

let results = [];
let busy = false;

function refresh() {
  send.disabled = busy || results.length === 0 || !consent.checked;
}

function item(label, note) {
  const li = document.createElement("li");
  const ok = document.createElement("span");
  ok.className = "ok";
  ok.textContent = label;
  li.append(ok);
  if (note) {
    const n = document.createElement("span");
    n.className = "note";
    n.textContent = note;
    li.append(n);
  }
  list.append(li);
}

input.addEventListener("change", async () => {
  const files = Array.from(input.files);
  results = [];
  list.textContent = "";
  sendError.hidden = true;
  if (files.length > maxFiles) {
    progress.textContent = `Please choose at most ${maxFiles} files at a time. You can send the others afterwards.`;
    refresh();
    return;
  }
  busy = true;
  refresh();
  // The report carries at most maxFrames video frames: the videos share them.
  const videos = files.filter((f) => f.type.startsWith("video/")).length;
  const perVideo = Math.min(maxVideoFrames, Math.floor(maxFrames / Math.max(1, videos)));
  for (let i = 0; i < files.length; i++) {
    const word = files[i].type.startsWith("video/") ? "video" : "picture";
    progress.textContent = `Making fingerprints on your device: ${i + 1} of ${files.length}…`;
    try {
      const r = await hashFile(files[i], { maxFrames: perVideo });
      results.push(r);
      const note = r.exact_only ? NOTES[r.reason] : r.vpdq ? "This video will also be found as similar copies." : "";
      item(`${word[0].toUpperCase()}${word.slice(1)} ${i + 1}: fingerprint ready`, note);
    } catch (err) {
      item(`File ${i + 1}: we couldn't read this file`, "Try choosing it again, or choose another copy.");
    }
  }
  busy = false;
  progress.textContent = results.length
    ? `${results.length} fingerprint${results.length === 1 ? "" : "s"} ready. Nothing has been sent yet.`
    : "";
  refresh();
});

consent.addEventListener("change", refresh);

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (send.disabled) return;
  // Hashes only: no pixels, no thumbnails, no file names.
  const body = {
    files: results.map((r) => {
      const f = { md5: r.md5, sha256: r.sha256 };
      if (r.pdq) {
        f.pdq = r.pdq;
        f.pdq_quality = r.pdq_quality;
      }
      if (r.vpdq) f.vpdq = r.vpdq.map(({ frame, quality, pdq, timestamp }) => ({ frame, quality, pdq, timestamp }));
      return f;
    }),
    age_band: document.getElementById("age-band").value || null,
    consent: consent.checked,
    csrf_token: token,
  };
  busy = true;
  refresh();
  sendError.hidden = true;
  try {
    const response = await fetch("/self-report/submit", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(answer.detail || "Something went wrong. Please try again in a moment.");
    document.getElementById("case-number").textContent = answer.case;
    document.getElementById("case-pin").textContent = answer.pin;
    done.hidden = false;
    done.focus();
    results = [];
    input.value = "";
  } catch (err) {
    sendError.textContent = err.message || String(err);
    sendError.hidden = false;
  } finally {
    busy = false;
    refresh();
  }
});
