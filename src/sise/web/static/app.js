"use strict";
const $ = (id) => document.getElementById(id);
let photo = null;      // {sample: name} or {image: base64, name: file name}
let poller = null;

function element(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function choose(choice, button) {
  photo = choice;
  for (const b of document.querySelectorAll(".photos button")) b.classList.remove("chosen");
  if (button) button.classList.add("chosen");
  $("photo-name").textContent = choice.sample ? "bundled photo: " + choice.sample
                                               : "uploaded: " + choice.name;
}

async function init() {
  const options = await (await fetch("/api/options")).json();
  for (const m of options.methods) $("method").add(new Option(m.name, m.key));
  $("method").value = options.defaults.method;
  for (const s of options.sizes) $("size").add(new Option(s + " px", s));
  $("size").value = options.defaults.size;
  $("model").value = options.defaults.model;
  for (const name of options.models) $("model-names").appendChild(element("option", {value: name}));
  for (const name of options.samples) {
    const button = element("button", {type: "button", title: name, "data-sample": name});
    button.appendChild(element("img", {src: "/api/sample/" + name + ".jpg", alt: name}));
    button.addEventListener("click", () => { $("photo-file").value = ""; choose({sample: name}, button); });
    $("samples").appendChild(button);
    if (name === options.defaults.sample) choose({sample: name}, button);
  }
  $("method").addEventListener("change", showOptions);
  showOptions();
}

function showOptions() {
  $("sise-options").style.display = $("method").value === "sise" ? "" : "none";
}

$("photo-file").addEventListener("change", () => {
  const file = $("photo-file").files[0];
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => choose({image: String(reader.result).split(",", 2)[1] || "", name: file.name});
  reader.onerror = () => showError("could not read " + file.name + " in the browser");
  reader.readAsDataURL(file);
});

// "1 forward pass", "1,093 forward passes" (as the command line says it)
function passesText(count) {
  return count.toLocaleString("en-US") + (count === 1 ? " forward pass" : " forward passes");
}

function showError(message) {
  $("error").textContent = message;
  $("error").style.display = "block";
  // the previous result is not the answer to this request: hide it, so it is not taken for one
  $("result").style.display = "none";
  $("result").dataset.state = "error";
}

async function poll() {
  try {
    const s = await (await fetch("/api/status")).json();
    if (!s.busy) return;
    let text = s.stage === "loading model" ? "Loading the model" :
               s.stage === "drawing" ? "Drawing the maps" : "Explaining";
    text += " … " + s.seconds.toFixed(0) + " s";
    if (s.images_scored) text += ", " + s.images_scored.toLocaleString() + " images through the model";
    $("status").textContent = text;
  } catch (e) { /* the next poll will tell */ }
}

async function explain() {
  if (!photo) { showError("Pick a bundled photo or upload one first."); return; }
  const body = {model: $("model").value, method: $("method").value,
                size: Number($("size").value), selection: $("selection").value,
                target: $("target").value || null};
  if (photo.sample) body.sample = photo.sample; else body.image = photo.image;
  $("error").style.display = "none";
  $("explain").disabled = true;
  $("result").dataset.state = "running";
  $("result").classList.add("stale");  // dimmed until this request's answer replaces it
  $("status").className = "busy";
  $("status").textContent = "Starting …";
  const started = performance.now();
  poller = setInterval(poll, 500);
  try {
    const response = await fetch("/api/explain", {method: "POST",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
    let answer;
    try { answer = await response.json(); }
    catch (e) { answer = {error: "the server answered " + response.status + " without a message"}; }
    if (!response.ok || answer.error) {
      showError(answer.error || ("the server answered " + response.status));
      $("status").textContent = "Failed after " + ((performance.now() - started) / 1000).toFixed(1) + " s.";
    } else {
      render(answer);
      $("status").textContent = answer.method_name + " on " + answer.model + " (" + answer.device +
        "): " + answer.seconds.toFixed(1) + " s, " + passesText(answer.forward_passes) + ".";
    }
  } catch (e) {
    showError("no answer from the server: is `sise app` still running? (" + e + ")");
    $("status").textContent = "";
  } finally {
    clearInterval(poller);
    $("status").className = "";
    $("explain").disabled = false;
  }
}

function render(r) {
  $("map-title").textContent = r.method_name + ": " + r.target.name;
  $("photo").src = r.images.photo;
  $("overlay").src = r.images.overlay;
  $("overlay-caption").textContent = r.method_name + " map (red: most important)";
  $("summary").textContent = "Explained class " + r.target.index + " “" + r.target.name +
    "”, softmax score " + r.target.score.toFixed(3) + "; " + r.photo + ", " + r.size +
    " px input.";
  const list = document.querySelector("#prediction ol");
  list.replaceChildren();
  for (const p of r.top5) {
    const item = element("li", {title: "explain class " + p.index, "data-index": p.index});
    if (p.index === r.target.index) item.className = "explained";
    const bar = element("div", {class: "bar"});
    bar.style.width = (100 * p.probability).toFixed(1) + "%";
    item.append(bar, element("span", {}, p.name), element("span", {class: "p"},
                (100 * p.probability).toFixed(1) + " %"));
    item.addEventListener("click", () => { $("target").value = String(p.index); explain(); });
    list.appendChild(item);
  }
  const layers = $("layers");
  layers.replaceChildren();
  $("layer-section").style.display = r.layers ? "" : "none";
  (r.layers || []).forEach((layer, i) => {
    const card = element("div", {class: "layer " + layer.role});
    card.appendChild(element("h4", {}, (i + 1) + ". " + layer.name));
    const pair = element("div", {class: "pair"});
    for (const [src, caption] of [[layer.map, "layer map"], [layer.gate, "gate"]]) {
      const figure = element("figure");
      figure.append(element("img", {src: src, alt: caption + " of " + layer.name}),
                    element("figcaption", {}, caption));
      pair.appendChild(figure);
    }
    card.appendChild(pair);
    const kept = layer.kept + (layer.kept === 1 ? " feature map kept" : " feature maps kept");
    const gate = layer.role === "skipped" ? "no map kept: not part of the fusion" :
      "gate keeps " + (100 * layer.gate_share).toFixed(0) + " % (Otsu t = " +
      layer.threshold.toFixed(2) + ")" + (layer.role === "start" ? "; starts the fusion, ungated" : "");
    card.appendChild(element("p", {class: "kept"}, kept + " · " + gate));
    layers.appendChild(card);
  });
  $("result").style.display = "block";
  $("result").classList.remove("stale");
  $("result").dataset.state = "done";
}

$("explain").addEventListener("click", explain);
init().catch((e) => showError("could not load the page's options: " + e));
