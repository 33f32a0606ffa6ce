/* The inspector's page: take a photo, send it to POST /v1/inspections, show the verdict with the
   heatmap over the photo, list recent inspections and record confirmed outcomes.

   Plain ES2020, no framework and no build step: the server ships this file as it is, and the page
   must work on a site network without internet. Everything the inspector types that is worth
   keeping (API key, location, case, note, this device's inspection ids) lives in localStorage. */
"use strict";

const STORE = {
  key: "counterfeit.apiKey",
  location: "counterfeit.location",
  case: "counterfeit.case",
  note: "counterfeit.note",
  overlay: "counterfeit.overlay",
  ids: "counterfeit.deviceInspections",
};
const MAX_DEVICE_IDS = 50;    // remembered ids of this device's inspections
const DEVICE_IDS_SHOWN = 10;  // of those, how many are fetched one by one for the recent list
const RECENT_SHOWN = 20;
const UPLOAD_TIMEOUT_MS = 120000;  // a large photo over a weak mobile link takes a while

const VERDICTS = {
  genuine: {
    word: "Genuine", icon: "#i-check",
    advice: "No signs of a counterfeit. The item can go on; record the outcome below if it is checked further.",
  },
  counterfeit: {
    word: "Counterfeit", icon: "#i-cross",
    advice: "Signs of a counterfeit. Set the item aside and follow the seizure procedure. " +
            "The red marks on the photo show where to look.",
  },
  inconclusive: {
    word: "Inconclusive", icon: "#i-question",
    advice: "The photo does not settle it. Take another photo closer to the label or print, in good light. " +
            "If it stays inconclusive, set the item aside for an expert check.",
  },
  retake: {
    word: "Retake the photo", icon: "#i-retake",
    advice: "The photo is too poor to judge. Take it again.",
  },
};
// A model never validated on real photos (GET /v1/model's notice; every answer's model.demo) advises nothing.
const DEMO_ADVICE = {
  genuine: "Demo: not evidence. This model has seen synthetic photos only; it cannot clear a real item.",
  counterfeit: "Demo: not evidence. This model has seen synthetic photos only: no reason to hold an item. " +
               "The red marks show what it reacted to.",
};
const REASONS = { too_small: "Too small", blurry: "Blurry", too_dark: "Too dark", overexposed: "Too bright",
  glare: "Reflection on the label", grayscale: "No colour", not_recognised: "Not one of the model's products" };
const OUTCOME_WORDS = { genuine: "Genuine", counterfeit: "Counterfeit", unknown: "Unknown" };

const $ = (id) => document.getElementById(id);
let photoUrl = null;        // object URL of the photo on screen, revoked when the next one replaces it
let thumbUrls = [];         // object URLs of the recent list's thumbnails, revoked on each redraw
let recentRequest = 0;      // only the newest recent-list request may draw (answers can arrive out of order)
let photoShown = 0;         // counts photos shown, so a late heatmap of an earlier photo is not drawn
let overlayReady = false;   // the canvas holds the heatmap of the photo on screen
let verdictRecordId = null; // the evidence record of the verdict on screen; null: nothing to record against
let catalogue = new Map();  // product -> {product, line, reference_image}: GET /v1/model, on load
let validatedOn = "not said by the model file";  // GET /v1/model's provenance.validated_on, in words


/* ---------- storage: localStorage can throw (private mode, quota, disabled), never let that break the page */

function stored(name, fallback = "") {
  try {
    const value = localStorage.getItem(name);
    return value === null ? fallback : value;
  } catch {
    return fallback;
  }
}

function store(name, value) {
  try {
    if (value) localStorage.setItem(name, value);
    else localStorage.removeItem(name);
  } catch {
    /* nothing to do: the page still works, it just forgets */
  }
}

function deviceIds() {
  try {
    const ids = JSON.parse(stored(STORE.ids, "[]"));
    return Array.isArray(ids) ? ids.filter((id) => typeof id === "string") : [];
  } catch {
    return [];
  }
}

function rememberId(id) {
  const ids = [id, ...deviceIds().filter((known) => known !== id)].slice(0, MAX_DEVICE_IDS);
  store(STORE.ids, JSON.stringify(ids));
}

function forgetIds(gone) {
  store(STORE.ids, JSON.stringify(deviceIds().filter((id) => !gone.includes(id))));
}


/* ---------- talking to the API ---------- */

// An API failure, with what the server said: {"error": {"code", "message"}}. Status 0 = no answer at all.
class ApiProblem extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.serverMessage = message || "";
  }
}

function authHeaders() {
  const key = stored(STORE.key);
  return key ? { "X-API-Key": key } : {};
}

function problemFromBody(status, text) {
  try {
    const body = JSON.parse(text);
    if (body && body.error) return new ApiProblem(status, body.error.code, body.error.message);
  } catch {
    /* not JSON: a proxy's HTML error page, for instance */
  }
  return new ApiProblem(status, `http_${status}`, "");
}

// fetch + JSON + the API's error shape; a failed connection becomes status 0 so callers handle one type.
async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  } catch {
    throw new ApiProblem(0, "network", "");
  }
  if (!response.ok) throw problemFromBody(response.status, await response.text());
  return options.raw ? response : response.json();
}

// XMLHttpRequest rather than fetch: only XHR reports upload progress, which matters on a slow link.
function uploadPhoto(file, fields, explain, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append("image", file, file.name || "photo.jpg");
    for (const [name, value] of Object.entries(fields)) if (value) form.append(name, value);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1/inspections${explain ? "?explain=true" : ""}`);
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.timeout = UPLOAD_TIMEOUT_MS;
    xhr.upload.onprogress = (event) => { if (event.lengthComputable) onProgress(event.loaded / event.total); };
    xhr.upload.onload = () => onProgress(1);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve(JSON.parse(xhr.responseText));
        } catch {
          reject(new ApiProblem(xhr.status, "bad_answer", "The server's answer could not be read."));
        }
      } else {
        reject(problemFromBody(xhr.status, xhr.responseText));
      }
    };
    xhr.onerror = () => reject(new ApiProblem(0, "network", ""));
    xhr.ontimeout = () => reject(new ApiProblem(0, "timeout", ""));
    xhr.send(form);
  });
}


/* ---------- errors in words: what happened, then what to do ---------- */

function describeProblem(problem) {
  const said = problem.serverMessage;
  switch (problem.status) {
    case -1:
      return { title: "This page failed to show the answer.", detail: `${said} Reload the page and try again.` };
    case 0:
      return problem.code === "timeout"
        ? { title: "The server did not answer in time.", detail: "The connection may be slow. Try again." }
        : { title: "Cannot reach the server.",
            detail: "Check the phone's connection (Wi-Fi or mobile data) and try again. " +
                    "If it keeps failing, the server may be down: tell your supervisor." };
    case 401:
      return stored(STORE.key)
        ? { title: "Wrong API key: the server did not accept it.",
            detail: "Check the key under “API key” at the top; it may be mistyped or withdrawn." }
        : { title: "This server needs an API key.", detail: "Enter the key you were given under “API key” at the top." };
    case 403:
      return { title: "This API key may not do that.", detail: `${said} Ask your supervisor for an inspector key.` };
    case 404:
      return { title: "Not found on the server.", detail: said };
    case 413:
      return { title: "The photo is too large.", detail: `${said} Take the photo at a lower resolution, or choose a smaller file.` };
    case 415:  // the server names the formats it takes; the page adds the way out
      return { title: "That file is not a photo the server can read.",
               detail: `${said || "It takes JPEG, PNG, WebP and HEIC photos."} Choose a photo of the item in ` +
                       "one of these formats, or take a new one with “Take a photo”." };
    case 422:
      if (problem.code === "empty_image" || problem.code === "corrupt_image")
        return { title: "The photo could not be read: the file is empty or damaged.", detail: `${said} Take the photo again.` };
      return { title: "The server refused the request.", detail: said };
    case 503:
      return problem.code === "model_not_loaded"
        ? { title: "The server is starting up.", detail: "Wait a few seconds and try again." }
        : { title: "The server is not ready right now.", detail: `${said} Wait a moment and try again.` };
    default:
      return problem.status >= 500
        ? { title: "The server failed to process this.", detail: `${said} Try again; if it keeps failing, tell your supervisor.` }
        : { title: `The server answered with an error (${problem.status}).`, detail: said };
  }
}

function showError(problem) {
  const { title, detail } = describeProblem(problem);
  $("error-title").textContent = title;
  $("error-detail").textContent = detail.trim();
  $("error").hidden = false;
  if (problem.status === 401) openKeyPanel();
}

function clearError() {
  $("error").hidden = true;
  $("error-title").textContent = "";
  $("error-detail").textContent = "";
}


/* ---------- API key ---------- */

function showKeyState() {
  const key = stored(STORE.key);
  $("key-state").textContent = key ? `saved (…${key.slice(-4)})` : "not set";
  $("key-state").dataset.state = key ? "saved" : "missing";
}

function openKeyPanel() {
  $("key-panel").open = true;
  $("api-key").focus();
}

function setupKey() {
  $("api-key").value = stored(STORE.key);
  showKeyState();
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    store(STORE.key, $("api-key").value.trim());
    showKeyState();
    clearError();
    $("key-panel").open = false;
    checkServer();
    refreshRecent();
  });
  $("key-forget").addEventListener("click", () => {
    $("api-key").value = "";
    store(STORE.key, "");
    showKeyState();
    checkServer();
  });
  // Show/hide: long random keys are easy to mistype on a phone keyboard.
  $("key-show").addEventListener("click", () => {
    const shown = $("api-key").type === "text";
    $("api-key").type = shown ? "password" : "text";
    $("key-show").textContent = shown ? "Show" : "Hide";
    $("key-show").setAttribute("aria-pressed", String(!shown));
  });
}

// The dot in the top bar: is the server there, and does it take our key? Asked on load and after a key change.
async function checkServer() {
  const line = $("connection");
  try {
    const model = await api("/v1/model");
    catalogue = new Map((model.catalogue || []).map((entry) => [entry.product, entry]));
    validatedOn = describeData((model.provenance || {}).validated_on) || validatedOn;
    $("model-notice").textContent = model.notice || "";
    $("model-notice").hidden = !model.notice;
    line.dataset.state = "ok";
    line.textContent = `Connected · model ${model.name || ""}`.trim();
    if (!stored(STORE.key)) {  // answered without a key: this server runs open, nothing to enter
      $("key-state").textContent = "not needed here";
      $("key-state").dataset.state = "open";
    }
  } catch (problem) {
    if (problem.status === 401) {
      line.dataset.state = "key";
      line.textContent = stored(STORE.key) ? "Wrong API key" : "API key needed";
      $("key-panel").open = true;
    } else if (problem.status === 403) {
      line.dataset.state = "ok";
      line.textContent = "Connected";
    } else if (problem.status === 503) {
      line.dataset.state = "key";
      line.textContent = "Server starting…";
      setTimeout(checkServer, 3000);
    } else {
      line.dataset.state = "down";
      line.textContent = "Server unreachable";
    }
  }
}


/* ---------- location, case, note: remembered between photos ---------- */

function setupFields() {
  for (const name of ["location", "case", "note"]) {
    const input = $(name);
    input.value = stored(STORE[name]);
    input.addEventListener("input", () => store(STORE[name], input.value));
  }
  // The recent list follows the case; reload when the case is settled, not on every keystroke.
  $("case").addEventListener("change", () => refreshRecent());
}

function currentFields() {
  return { location: $("location").value.trim(), case: $("case").value.trim(), note: $("note").value.trim() };
}


/* ---------- taking and sending a photo ---------- */

function setBusy(busy) {
  $("photo-input").disabled = busy;
  $("file-input").disabled = busy;
  $("photo-button").setAttribute("aria-disabled", String(busy));
  $("file-button").setAttribute("aria-disabled", String(busy));
  $("photo-button-text").textContent = busy ? "Checking…" : "Take a photo";
  $("next-photo").disabled = busy;
  $("progress").hidden = !busy;
  $("photo-section").setAttribute("aria-busy", String(busy));
}

function showProgress(fraction) {
  const bar = $("progress-bar");
  if (fraction >= 1) {
    // Uploaded: the server is scoring now, and we cannot know how far along it is.
    bar.removeAttribute("value");
    $("progress-text").textContent = "Checking the photo…";
  } else {
    bar.value = Math.round(fraction * 100);
    $("progress-text").textContent = `Uploading… ${Math.round(fraction * 100)}%`;
  }
}

async function inspect(file) {
  if (!file) return;
  clearError();
  $("result").hidden = true;  // never leave the previous verdict on screen next to a new photo's error
  $("announce").textContent = "";
  setBusy(true);
  showProgress(0);
  // Keep the bar in sight while the photo goes up (after "Take the next photo" at the bottom of a long
  // verdict, hiding that verdict can leave it above the screen).
  $("progress").scrollIntoView({ block: "nearest", behavior: motion() });
  const fields = currentFields();
  let reveal = null;  // what to scroll to once the page has its final layout
  try {
    let result;
    try {
      result = await uploadPhoto(file, fields, true, showProgress);
    } catch (problem) {
      // A model exported without a heatmap still gives verdicts: ask again without one.
      if (problem.code !== "explain_unavailable") throw problem;
      showProgress(0);
      result = await uploadPhoto(file, fields, false, showProgress);
    }
    showResult(result, file);
    reveal = revealVerdict;
    if (result.id) {
      rememberId(result.id);
      refreshRecent(result.id);
    }
  } catch (problem) {
    if (problem instanceof ApiProblem) {
      showError(problem);
    } else {
      // A bug in this page, not the network: say so, and let it reach the console (and the tests).
      showError(new ApiProblem(-1, "page_error", String(problem)));
      setTimeout(() => { throw problem; });
    }
    reveal = () => $("error").scrollIntoView({ block: "center", behavior: motion() });
  } finally {
    setBusy(false);
    $("photo-input").value = "";  // so choosing the same file again still fires "change"
    $("file-input").value = "";
  }
  // Only now: hiding the progress bar (above the verdict on a phone) moves everything below it up, so
  // a verdict scrolled into place before that ended with its banner half above the screen.
  if (reveal) reveal();
}

function motion() {
  return window.matchMedia("(prefers-reduced-motion: reduce)").matches ? "auto" : "smooth";
}

function setupPhoto() {
  for (const id of ["photo-input", "file-input"]) $(id).addEventListener("change", () => inspect($(id).files[0]));
  $("next-photo").addEventListener("click", () => $("photo-input").click());

  // Desktop: drop a photo on the photo card. Elsewhere on the page a drop must not navigate away.
  const zone = $("photo-section");
  for (const type of ["dragover", "drop"]) document.addEventListener(type, (event) => event.preventDefault());
  zone.addEventListener("dragover", (event) => {
    event.dataTransfer.dropEffect = "copy";
    $("dropzone").classList.add("is-over");
  });
  zone.addEventListener("dragleave", (event) => {
    if (!zone.contains(event.relatedTarget)) $("dropzone").classList.remove("is-over");
  });
  zone.addEventListener("drop", (event) => {
    $("dropzone").classList.remove("is-over");
    const file = event.dataTransfer.files[0];
    if (!$("photo-input").disabled) inspect(file);
  });
}


/* ---------- the verdict ---------- */

function formatScore(score) {
  return typeof score === "number" ? score.toFixed(2) : "–";
}

// Local time, short: "today 14:05", or "12 Mar 2025, 14:05" on other days (lists are read at a glance).
function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso || "";
  const today = date.toDateString() === new Date().toDateString();
  return today
    ? `today ${date.toLocaleTimeString(undefined, { timeStyle: "short" })}`
    : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function showResult(result, file) {
  const verdict = VERDICTS[result.verdict] ? result.verdict : "inconclusive";
  const copy = VERDICTS[verdict];
  $("verdict").dataset.verdict = verdict;
  $("verdict-icon").setAttribute("href", copy.icon);
  $("verdict-word").textContent = copy.word;

  // A retake says why, in the server's own sentence (it names the problem and the fix).
  const demo = Boolean(result.model && result.model.demo) && Boolean(DEMO_ADVICE[verdict]);
  $("verdict-kicker").textContent = demo ? "Demo verdict, not evidence" : "Verdict";
  const advice = verdict === "retake" && result.quality && result.quality.message ? result.quality.message
    : demo ? DEMO_ADVICE[verdict] : copy.advice;
  $("verdict-advice").textContent = advice;
  showReasons(verdict === "retake" && result.quality ? result.quality.reasons || [] : []);
  showScore(result);
  showPhoto(result, file);
  showFacts(result);
  showProduct(result.product);
  // After a retake or an unclear answer the next step is another photo of the same item: say so.
  const again = verdict === "retake" || verdict === "inconclusive";
  $("next-photo-text").textContent = verdict === "retake" ? "Take the photo again"
    : verdict === "inconclusive" ? "Take another photo" : "Take the next photo";
  $("next-photo").classList.toggle("btn--primary", again);
  $("next-photo").classList.toggle("btn--secondary", !again);

  $("result").hidden = false;
  const scoreWords = typeof result.score === "number" ? ` Score ${formatScore(result.score)}.` : "";
  $("announce").textContent = `Verdict: ${copy.word}.${scoreWords} ${advice}`;
  // Focus moves to the verdict so screen readers and keyboards land on it; revealVerdict scrolls to it.
  $("verdict").focus({ preventScroll: true });
  showVerdictOutcome(verdict === "retake" ? null : result.id);
}

// The banner whole, at the top of the screen, unless it already shows high enough (a desktop's side column).
function revealVerdict() {
  const banner = $("verdict").getBoundingClientRect();
  if (banner.top < 0 || banner.bottom > window.innerHeight || banner.top > window.innerHeight / 3) {
    $("result").scrollIntoView({ block: "start", behavior: motion() });
  }
}

function showReasons(reasons) {
  const list = $("reasons");
  list.replaceChildren(...reasons.map((reason) => {
    const item = document.createElement("li");
    item.textContent = REASONS[reason] || reason.replace(/_/g, " ");
    return item;
  }));
  list.hidden = reasons.length === 0;
}

function showScore(result) {
  const hasScore = typeof result.score === "number";
  $("score-block").hidden = !hasScore;
  $("verdict-score").replaceChildren();
  if (!hasScore) return;
  const big = document.createElement("strong");
  big.textContent = formatScore(result.score);
  $("verdict-score").replaceChildren("Score", big);
  const { low, high } = result.thresholds;
  $("score-value").textContent = formatScore(result.score);
  $("meter-low").style.width = `${low * 100}%`;
  $("meter-mid").style.width = `${(high - low) * 100}%`;
  $("meter-high").style.width = `${(1 - high) * 100}%`;
  $("meter-mark").style.left = `${Math.min(Math.max(result.score, 0), 1) * 100}%`;
  $("score-thresholds").textContent =
    `Genuine up to ${formatScore(low)}, counterfeit from ${formatScore(high)}, inconclusive between.`;
}

// The product a reference model recognised, beside its reference image from GET /v1/model's catalogue.
function showProduct(product) {
  const entry = product ? catalogue.get(product) : null;
  $("product-match").hidden = !product;
  $("product-name").textContent = product || "";
  const image = $("product-reference");
  image.hidden = !(entry && entry.reference_image);
  image.src = entry && entry.reference_image ? entry.reference_image : "";
  image.alt = product ? `The model's reference for ${product}` : "";
}

// "synthetic photos: 80 genuine, 80 counterfeit (synthetic)": what a model's thresholds were set on.
function describeData(part) {
  if (!part || !part.photos) return "";
  const counts = `${part.genuine ?? "?"} genuine, ${part.counterfeit ?? "?"} counterfeit`;
  return `${part.photos} photos: ${counts} (counterfeits ${part.counterfeits || "unknown"})`;
}

function showFacts(result) {
  const model = result.model || {};
  $("fact-model").textContent = `${model.name || "?"} · version ${(model.version || "?").slice(0, 12)}`;
  $("fact-validated").textContent = validatedOn;
  $("fact-photo").textContent = result.image ? `${result.image.width} × ${result.image.height} px` : "–";
  $("fact-record-row").hidden = !result.id;
  $("fact-record").textContent = result.id ? `${formatTime(result.recorded_at)} · id ${result.id}` : "";
}

function showPhoto(result, file) {
  if (photoUrl) URL.revokeObjectURL(photoUrl);
  photoUrl = URL.createObjectURL(file);
  const photo = $("photo");
  const shown = ++photoShown;
  overlayReady = false;
  $("overlay").hidden = true;
  $("photo-frame").hidden = false;
  $("overlay-controls").hidden = !result.heatmap;
  $("photo-caption").textContent = result.heatmap
    ? "Red marks signs of counterfeiting the model found: where the photo differs from its product's genuine " +
      "photos more than they differ from one another. A white and black ring circles the strongest."
    : "";
  photo.onload = () => { if (result.heatmap) drawHeatmap(result, shown); };
  photo.onerror = () => {
    // HEIC, for one, is scored by the server but not shown by most browsers.
    $("photo-frame").hidden = true;
    $("overlay-controls").hidden = true;
    $("photo-caption").textContent = "This browser cannot show this photo's format; the verdict above still stands.";
  };
  photo.src = photoUrl;
}

// The heatmap covers the model input, where the photo was letterboxed: scaled to fit inside it,
// keeping its aspect ratio, and centred. Cut out that content area and stretch it over the photo.
function drawHeatmap(result, shown) {
  const heat = new Image();
  heat.onload = () => {
    if (shown !== photoShown) return;
    const canvas = $("overlay");
    const { width, height } = result.image;  // upright, as the browser shows the photo
    const scale = Math.min(heat.naturalWidth / width, heat.naturalHeight / height);
    const contentW = Math.max(1, Math.round(width * scale));
    const contentH = Math.max(1, Math.round(height * scale));
    const left = Math.floor((heat.naturalWidth - contentW) / 2);
    const top = Math.floor((heat.naturalHeight - contentH) / 2);
    // Enough canvas pixels for a smooth overlay, no more than the screen can use.
    canvas.width = Math.min(width, 1280);
    canvas.height = Math.max(1, Math.round(canvas.width * height / width));
    const context = canvas.getContext("2d");
    context.imageSmoothingEnabled = true;
    context.imageSmoothingQuality = "high";
    context.clearRect(0, 0, canvas.width, canvas.height);
    context.drawImage(heat, left, top, contentW, contentH, 0, 0, canvas.width, canvas.height);
    outlineHotSpots(context, canvas);
    overlayReady = true;
    canvas.hidden = !$("overlay-toggle").checked;
  };
  heat.src = `data:image/png;base64,${result.heatmap}`;
}

// Red marks vanish on a red label or box: ring the strongest areas with a light line inside a dark one,
// which stands out on every colour. The server scales each map to its own peak, so "strong" is relative.
const OUTLINE_LEVEL = 0.5;     // ringed: alpha at least half the map's peak
const OUTLINE_MIN_PEAK = 32;   // alpha 0..255; a fainter map points nowhere in particular: no rings
const OUTLINE_CSS_PX = 2;      // width of each of the two lines, in CSS pixels as shown

function outlineHotSpots(context, canvas) {
  const { width, height } = canvas;
  const image = context.getImageData(0, 0, width, height);
  const pixels = image.data;
  let peak = 0;
  for (let i = 3; i < pixels.length; i += 4) peak = Math.max(peak, pixels[i]);
  if (peak < OUTLINE_MIN_PEAK) return;
  const hot = new Uint8Array(width * height);
  for (let i = 0; i < hot.length; i += 1) hot[i] = pixels[i * 4 + 3] >= peak * OUTLINE_LEVEL ? 1 : 0;
  // The canvas has more pixels than the photo on screen: scale the line width to stay OUTLINE_CSS_PX.
  const shownWidth = $("photo").clientWidth || width;
  const line = Math.max(1, Math.round(OUTLINE_CSS_PX * width / shownWidth));
  const nearHot = dilate(hot, width, height, line);
  const nearCold = dilate(hot.map((v) => 1 - v), width, height, line);
  for (let i = 0; i < hot.length; i += 1) {
    if (hot[i] && nearCold[i]) pixels.set([255, 255, 255, 255], i * 4);      // light line, just inside
    else if (!hot[i] && nearHot[i]) pixels.set([17, 24, 39, 255], i * 4);    // dark line, just outside
  }
  context.putImageData(image, 0, 0);
}

// 1 where a set pixel of `mask` lies within `radius` (a square), in two passes: along rows, then columns.
function dilate(mask, width, height, radius) {
  const spread = (source, count, stride, lineStep, lines) => {
    const out = new Uint8Array(source.length);
    for (let l = 0; l < lines; l += 1) {
      const start = l * lineStep;
      let inWindow = 0;
      for (let k = -radius; k < count; k += 1) {
        if (k + radius < count) inWindow += source[start + (k + radius) * stride];
        if (k - radius - 1 >= 0) inWindow -= source[start + (k - radius - 1) * stride];
        if (k >= 0) out[start + k * stride] = inWindow > 0 ? 1 : 0;
      }
    }
    return out;
  };
  return spread(spread(mask, width, 1, width, height), height, width, 1, width);
}

function setupOverlayToggle() {
  const toggle = $("overlay-toggle");
  toggle.checked = stored(STORE.overlay, "on") === "on";
  toggle.addEventListener("change", () => {
    store(STORE.overlay, toggle.checked ? "on" : "off");
    if (overlayReady) $("overlay").hidden = !toggle.checked;
  });
}


/* ---------- outcomes, recorded from a card's label buttons (the verdict card here, the item card) ---------- */

function setOutcomeStatus(statusId, text, state) {
  $(statusId).textContent = text;
  $(statusId).dataset.state = state;
}

// Enabled label buttons and an empty status line: a new answer on the card, nothing recorded for it yet.
function resetOutcome(groupId, statusId) {
  setOutcomeStatus(statusId, "", "");
  for (const button of $(groupId).querySelectorAll("button[data-label]")) button.disabled = false;
}

// The buttons wait while `post(label)` saves; the status line then says whether it was saved. When
// `stillShown()` has turned false meanwhile (another answer is on the card), the card is left as it is.
// -> true once saved.
async function recordOutcome(button, groupId, statusId, post, stillShown, savedText) {
  const buttons = [...$(groupId).querySelectorAll("button[data-label]")];
  buttons.forEach((b) => { b.disabled = true; });
  setOutcomeStatus(statusId, "Saving…", "busy");
  try {
    await post(button.dataset.label);
    if (!stillShown()) return false;
    setOutcomeStatus(statusId, savedText, "ok");
    return true;
  } catch (problem) {
    if (!stillShown()) return false;
    const { title, detail } = describeProblem(problem);
    setOutcomeStatus(statusId, `Not saved. ${title} ${detail}`.trim(), "error");
    return false;
  } finally {
    if (stillShown()) buttons.forEach((b) => { b.disabled = false; });
  }
}

// Shown for a recorded verdict; not for a retake (a poor photo is no evidence of what the item is).
function showVerdictOutcome(recordId) {
  verdictRecordId = recordId || null;
  $("verdict-outcome").hidden = !verdictRecordId;
  $("verdict-outcome-note").value = "";
  resetOutcome("verdict-outcome", "verdict-outcome-status");
}

async function saveVerdictOutcome(button) {
  const id = verdictRecordId;
  const saved = await recordOutcome(button, "verdict-outcome", "verdict-outcome-status",
    (label) => postOutcome(id, label, $("verdict-outcome-note").value), () => id === verdictRecordId,
    `Saved: ${button.textContent.toLowerCase()}. It is in this inspection's record.`);
  if (saved) refreshRecent(id);
}

function setupVerdictOutcome() {
  for (const button of $("verdict-outcome").querySelectorAll("button[data-label]")) {
    button.addEventListener("click", () => saveVerdictOutcome(button));
  }
}


/* ---------- recent inspections: this case (every device) and this device ---------- */

async function refreshRecent(highlightId) {
  const request = ++recentRequest;
  const caseRef = $("case").value.trim();
  $("recent-scope").textContent = caseRef
    ? `This device and case ${caseRef}.`
    : "This device. Enter a case reference to see the case's inspections from every device.";
  let records;
  try {
    records = await loadRecent(caseRef);
  } catch (problem) {
    if (request !== recentRequest) return;
    $("recent-list").replaceChildren();
    $("recent-status").textContent = recentProblem(problem);
    return;
  }
  if (request !== recentRequest) return;
  renderRecent(records, highlightId);
}

function recentProblem(problem) {
  if (problem.status === 404 || problem.status === 405) return "This server does not keep a history of inspections.";
  if (problem.status === 401) return "Enter the API key to see recent inspections.";
  if (problem.status === 0) return "Cannot reach the server to load recent inspections.";
  return describeProblem(problem).title;
}

async function loadRecent(caseRef) {
  const byId = new Map();
  if (caseRef) {
    const query = new URLSearchParams({ case: caseRef, limit: String(RECENT_SHOWN) });
    const page = await api(`/v1/inspections?${query}`);
    for (const record of page.items || []) byId.set(record.id, record);
  }
  // This device's own inspections (other cases too): fetched one by one, as there is no "by ids" query.
  const missing = deviceIds().slice(0, DEVICE_IDS_SHOWN).filter((id) => !byId.has(id));
  const answers = await Promise.allSettled(missing.map((id) => api(`/v1/inspections/${encodeURIComponent(id)}`)));
  const gone = [];
  const failures = [];
  answers.forEach((answer, index) => {
    if (answer.status === "fulfilled") byId.set(answer.value.id, answer.value);
    else if (answer.reason.status === 404) gone.push(missing[index]);  // deleted on the server: stop asking
    else failures.push(answer.reason);
  });
  if (gone.length) forgetIds(gone);
  // Nothing to show and every request failed (no key, server down): say why rather than "no inspections".
  if (byId.size === 0 && failures.length) throw failures[0];
  return [...byId.values()]
    .sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)))
    .slice(0, RECENT_SHOWN);
}

function renderRecent(records, highlightId) {
  thumbUrls.forEach((url) => URL.revokeObjectURL(url));
  thumbUrls = [];
  $("recent-list").replaceChildren(...records.map((record) => renderItem(record, record.id === highlightId)));
  $("recent-status").textContent = records.length ? "" : "No inspections yet. They appear here after the first photo.";
}

function renderItem(record, isNew) {
  const item = $("recent-item").content.firstElementChild.cloneNode(true);
  item.dataset.id = record.id;
  if (isNew) item.classList.add("item--new");
  const chip = item.querySelector(".chip");
  chip.dataset.verdict = record.verdict;
  chip.textContent = (VERDICTS[record.verdict] || { word: record.verdict }).word.replace(" the photo", "");
  item.querySelector(".item__score").textContent =
    typeof record.score === "number" ? `score ${formatScore(record.score)}` : "no score";
  // The case is left out when the list is of that case anyway: less to read on a small screen.
  const otherCase = record.case && record.case !== $("case").value.trim() ? `case ${record.case}` : "";
  const meta = [formatTime(record.created_at), record.location, otherCase].filter(Boolean);
  item.querySelector(".item__meta").textContent = meta.join(" · ");
  item.querySelector(".item__note").textContent = record.note || "";
  const thumb = item.querySelector(".item__thumb");
  thumb.alt = `Photo, ${formatTime(record.created_at)}`;
  loadThumbnail(thumb, record.id);
  if (record.verdict === "retake") {
    // A poor photo is no evidence of what the item is: no outcome is recorded on it (as on the verdict card).
    item.querySelector(".item__outcome").remove();
    item.querySelector(".outcome").remove();
    return item;
  }
  showOutcome(item.querySelector(".item__outcome"), record.outcomes || []);
  if ((record.outcomes || []).length) item.querySelector(".outcome__summary").textContent = "Change outcome";
  setupOutcomeForm(item, record);
  return item;
}

// The thumbnail needs the API key header, which an <img src> cannot send: fetch it, show a blob URL.
async function loadThumbnail(img, id) {
  try {
    const response = await api(`/v1/inspections/${encodeURIComponent(id)}/thumbnail`, { raw: true });
    const url = URL.createObjectURL(await response.blob());
    thumbUrls.push(url);
    img.src = url;
  } catch {
    img.alt = "";  // a grey square says "no picture" well enough; the details are in the text
  }
}

function showOutcome(line, outcomes) {
  if (!outcomes.length) {
    line.dataset.state = "none";
    line.textContent = "No confirmed outcome yet.";
    return;
  }
  const latest = outcomes[outcomes.length - 1];
  line.dataset.state = "set";
  const label = document.createElement("strong");
  label.textContent = OUTCOME_WORDS[latest.label] || latest.label;
  const rest = [latest.note, formatTime(latest.created_at)].filter(Boolean).join(" · ");
  const earlier = outcomes.length > 1 ? ` (${outcomes.length - 1} earlier)` : "";
  line.replaceChildren("Confirmed: ", label, rest ? ` · ${rest}` : "", earlier);
}

// Appended to the record's outcomes (never overwriting earlier ones); -> the updated record.
function postOutcome(id, label, note) {
  return api(`/v1/inspections/${encodeURIComponent(id)}/outcome`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ label, note: note.trim() }),
  });
}

function setupOutcomeForm(item, record) {
  const form = item.querySelector(".outcome__form");
  // One radio group per item: the name ties the three buttons together and keeps arrow keys inside it.
  form.querySelectorAll('input[type="radio"]').forEach((radio) => { radio.name = `outcome-${record.id}`; });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = form.querySelector("input[type=radio]:checked");
    const error = form.querySelector(".outcome__error");
    const button = form.querySelector("button[type=submit]");
    if (!chosen) {
      error.textContent = "Choose genuine, counterfeit or unknown first.";
      return;
    }
    error.textContent = "";
    button.disabled = true;
    try {
      const updated = await postOutcome(record.id, chosen.value, form.querySelector(".outcome__note").value);
      const fresh = renderItem(updated, item.classList.contains("item--new"));
      item.replaceWith(fresh);
      $("announce").textContent = `Outcome saved: ${OUTCOME_WORDS[chosen.value]}.`;
      fresh.querySelector(".outcome__summary").focus();  // keep keyboard users where they were
    } catch (problem) {
      const { title, detail } = describeProblem(problem);
      error.textContent = `${title} ${detail}`.trim();
      button.disabled = false;
    }
  });
}


/* ---------- start ---------- */

function start() {
  setupKey();
  setupFields();
  setupPhoto();
  setupOverlayToggle();
  setupVerdictOutcome();
  $("recent-refresh").addEventListener("click", () => refreshRecent());
  window.addEventListener("online", () => { checkServer(); refreshRecent(); });
  checkServer();
  refreshRecent();
}

start();
