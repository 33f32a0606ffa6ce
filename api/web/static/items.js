/* An item, not a photo: collect photos of an item's sides one by one (camera or files), send them
   together to POST /v1/items, show each side's answer in its row and the item's verdict.

   The sides are sent once, as one item: each photo is then kept once in the evidence log, under the
   item's id. Before that each row shows the side as taken; after, its own answer (verdict, score, the
   product it was recognised as, or why to retake it). A side to retake can be replaced in its row and
   the item checked again.

   Loaded after app.js, whose helpers it uses: $, api, authHeaders, problemFromBody, ApiProblem,
   describeProblem, currentFields, VERDICTS, formatScore, formatTime, refreshRecent. */
"use strict";

const ITEM_MIN_SIDES = 2;
const ITEM_MAX_SIDES = 8;  // what POST /v1/items takes
const ITEM_VERDICT_WORDS = { retake: "Retake" };  // "Retake the photo" reads wrong for a whole item

let itemSides = [];       // [{file, url, answer}] in the order taken
let itemId = null;        // the item on screen, once checked; null: nothing to record an outcome against
let itemChecking = false;


function addSides(files) {
  const room = ITEM_MAX_SIDES - itemSides.length;
  const taken = [...files].slice(0, Math.max(0, room));
  for (const file of taken) itemSides.push({ file, url: URL.createObjectURL(file), answer: null });
  if (files.length > taken.length) {
    showItemError({ title: `An item takes at most ${ITEM_MAX_SIDES} photos.`,
                    detail: "Remove a side before adding another." });
  } else {
    clearItemError();
  }
  hideItemResult();
  renderSides();
}

function replaceSide(index, file) {
  URL.revokeObjectURL(itemSides[index].url);
  itemSides[index] = { file, url: URL.createObjectURL(file), answer: null };
  hideItemResult();
  renderSides();
}

function removeSide(index) {
  URL.revokeObjectURL(itemSides[index].url);
  itemSides.splice(index, 1);
  hideItemResult();
  renderSides();
}

function clearItem() {
  itemSides.forEach((side) => URL.revokeObjectURL(side.url));
  itemSides = [];
  clearItemError();
  hideItemResult();
  renderSides();
}

function renderSides() {
  $("item-sides").replaceChildren(...itemSides.map(sideRow));
  const count = itemSides.length;
  $("item-count").textContent = count === 0 ? "No sides yet."
    : count < ITEM_MIN_SIDES ? `${count} side. Add at least one more.`
      : `${count} sides, ready to check.`;
  $("item-check").disabled = itemChecking || count < ITEM_MIN_SIDES;
  $("item-clear").disabled = itemChecking || count === 0;
  const full = itemChecking || count >= ITEM_MAX_SIDES;
  for (const id of ["item-photo-input", "item-file-input"]) $(id).disabled = full;
  for (const id of ["item-photo-button", "item-file-button"]) $(id).setAttribute("aria-disabled", String(full));
}

function sideRow(side, index) {
  const row = document.createElement("li");
  row.className = "item-side";
  row.dataset.index = String(index);
  const thumb = document.createElement("img");
  thumb.className = "item-side__thumb";
  thumb.src = side.url;
  thumb.alt = `Side ${index + 1}`;
  const body = document.createElement("div");
  body.className = "item-side__body";
  const title = document.createElement("p");
  title.className = "item-side__title";
  title.textContent = `Side ${index + 1}`;
  body.append(title, sideResult(side.answer), sideButtons(index));
  row.append(thumb, body);
  return row;
}

// What the server said about this side, or that it has not been checked yet.
function sideResult(answer) {
  const line = document.createElement("p");
  line.className = "item-side__result";
  if (!answer) {
    line.textContent = itemChecking ? "Checking…" : "Not checked yet.";
    return line;
  }
  const chip = document.createElement("span");
  chip.className = "chip";
  chip.dataset.verdict = answer.verdict;
  chip.textContent = (VERDICTS[answer.verdict] || { word: answer.verdict }).word.replace(" the photo", "");
  const details = [];
  if (typeof answer.score === "number") details.push(`score ${formatScore(answer.score)}`);
  if (answer.product) details.push(`recognised as ${answer.product}`);
  if (answer.verdict === "retake" && answer.quality) details.push(answer.quality.message);
  line.replaceChildren(chip, details.length ? ` ${details.join(" · ")}` : "");
  return line;
}

function sideButtons(index) {
  const buttons = document.createElement("div");
  buttons.className = "item-side__buttons";
  const replace = document.createElement("label");
  replace.className = "btn btn--quiet btn--small";
  const input = document.createElement("input");
  input.type = "file";
  input.accept = "image/*";
  input.className = "visually-hidden item-side__replace";
  input.disabled = itemChecking;
  input.addEventListener("change", () => { if (input.files[0]) replaceSide(index, input.files[0]); });
  replace.append(input, "Replace photo");  // not "Retake": that is a verdict's word on this page
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "btn btn--quiet btn--small item-side__remove";
  remove.textContent = "Remove";
  remove.disabled = itemChecking;
  remove.addEventListener("click", () => removeSide(index));
  buttons.append(replace, remove);
  return buttons;
}


/* ---------- sending the item ---------- */

function sendItem(files, fields) {
  const form = new FormData();
  files.forEach((file, index) => form.append("images", file, file.name || `side-${index + 1}.jpg`));
  for (const [name, value] of Object.entries(fields)) if (value) form.append(name, value);
  return api("/v1/items", { method: "POST", body: form });
}

async function checkItem() {
  if (itemSides.length < ITEM_MIN_SIDES || itemChecking) return;
  clearItemError();
  hideItemResult();
  itemChecking = true;
  itemSides.forEach((side) => { side.answer = null; });
  renderSides();
  try {
    const item = await sendItem(itemSides.map((side) => side.file), currentFields());
    item.photos.forEach((answer, index) => { if (itemSides[index]) itemSides[index].answer = answer; });
    showItem(item);
    refreshRecent();
  } catch (problem) {
    if (!(problem instanceof ApiProblem)) {
      setTimeout(() => { throw problem; });  // a bug in this page: let it reach the console (and the tests)
      problem = new ApiProblem(-1, "page_error", String(problem));
    }
    showItemError(describeProblem(problem));
  } finally {
    itemChecking = false;
    renderSides();
  }
}

function showItem(item) {
  const verdict = VERDICTS[item.verdict] ? item.verdict : "inconclusive";
  $("item-verdict").dataset.verdict = verdict;
  $("item-verdict-icon").setAttribute("href", VERDICTS[verdict].icon);
  $("item-verdict-word").textContent = ITEM_VERDICT_WORDS[verdict] || VERDICTS[verdict].word;
  $("item-message").textContent = item.message || VERDICTS[verdict].advice;
  const how = item.combination === "calibrated" ? "sides combined as calibrated for this model"
    : "scored as its most suspicious side";
  const score = typeof item.score === "number" ? `Score ${formatScore(item.score)} (${how}). ` : "";
  $("item-facts").textContent = `${score}Recorded ${formatTime(item.recorded_at)} · item ${item.id}`;
  itemId = verdict === "retake" ? null : item.id;  // a retake is no evidence of what the item is
  $("item-outcome").hidden = !itemId;
  resetOutcome("item-outcome", "item-outcome-status");
  $("item-result").hidden = false;
  $("announce").textContent = `Item verdict: ${$("item-verdict-word").textContent}. ${$("item-message").textContent}`;
  $("item-verdict").focus({ preventScroll: true });
  $("item-result").scrollIntoView({ block: "nearest" });
}

function hideItemResult() {
  $("item-result").hidden = true;
  itemId = null;
}

function showItemError({ title, detail }) {
  $("item-error-title").textContent = title;
  $("item-error-detail").textContent = (detail || "").trim();
  $("item-error").hidden = false;
}

function clearItemError() {
  $("item-error").hidden = true;
}


/* ---------- the item's outcome ---------- */

async function saveItemOutcome(button) {
  const id = itemId;
  await recordOutcome(button, "item-outcome", "item-outcome-status",
    (label) => api(`/v1/items/${encodeURIComponent(id)}/outcome`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ label, note: "" }),
    }), () => id === itemId, `Saved: ${button.textContent.toLowerCase()}.`);
}


function setupItems() {
  for (const id of ["item-photo-input", "item-file-input"]) {
    $(id).addEventListener("change", () => {
      addSides($(id).files);
      $(id).value = "";  // so the same file can be chosen again
    });
  }
  $("item-check").addEventListener("click", checkItem);
  $("item-clear").addEventListener("click", clearItem);
  for (const button of $("item-outcome").querySelectorAll("button[data-label]")) {
    button.addEventListener("click", () => saveItemOutcome(button));
  }
  renderSides();
}

setupItems();
