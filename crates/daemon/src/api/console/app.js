// facegate console: plain JavaScript, no library. Every call goes through the documented API
// with the key from session storage in the x-api-key header; text from the API is only ever
// set as textContent (never parsed as HTML); images come as data: or blob: URLs.
'use strict';

const KEY_ITEM = 'facegate-api-key';
const $ = (id) => document.getElementById(id);
const state = { view: null, collection: '', persons: [], cursor: null, feed: null, snapshotTimer: null, stream: null };
// What the live view received: [{event_id, received_ms, latency_ms}] (read by the tests).
window.facegateLive = [];

function key() { return sessionStorage.getItem(KEY_ITEM) || ''; }

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || ('HTTP ' + status));
    this.status = status;
    this.code = body && body.code;
    this.metadata = (body && body.metadata) || {};
  }
}

async function api(method, path, body) {
  const headers = { 'x-api-key': key() };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  if (res.status === 401 || res.status === 403) {
    sessionStorage.removeItem(KEY_ITEM);
    showLogin('The API key was refused.');
    throw new ApiError(res.status, await res.json().catch(() => null));
  }
  if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
  return res;
}
const getJson = async (path) => (await api('GET', path)).json();
const send = async (method, path, body) => (await api(method, path, body)).json();

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') e.textContent = v;
    else if (k === 'on') for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}
const jpeg = (b64) => 'data:image/jpeg;base64,' + b64;
const when = (ts) => (ts ? new Date(ts).toLocaleString() : '');

function notice(text) {
  const n = $('notice');
  n.textContent = text || '';
  n.hidden = !text;
}
function say(id, text, bad) {
  const p = $(id);
  p.textContent = text;
  p.classList.toggle('bad', !!bad);
}
function explain(err) {
  if (err instanceof ApiError) {
    let text = (err.code ? err.code + ': ' : '') + err.message;
    const checks = err.metadata && err.metadata.checks;
    if (Array.isArray(checks)) {
      const failed = checks.filter((c) => c.result === 'failed').map((c) => c.name + ' ' + c.value + ' (limit ' + c.limit + ')');
      if (failed.length) text += ' Failed checks: ' + failed.join('; ') + '.';
    }
    return text;
  }
  return String(err && err.message ? err.message : err);
}

// ---- views ----
const VIEWS = ['live', 'events', 'people', 'strangers', 'system'];

function showLogin(message) {
  for (const v of VIEWS) $('view-' + v).hidden = true;
  $('view-login').hidden = false;
  $('logout').hidden = true;
  notice(message || '');
  stopLive();
  $('login-key').focus();
}

async function route() {
  if (!key()) { showLogin(); return; }
  const view = VIEWS.includes(location.hash.slice(1)) ? location.hash.slice(1) : 'live';
  $('view-login').hidden = true;
  $('logout').hidden = false;
  notice('');
  for (const v of VIEWS) $('view-' + v).hidden = v !== view;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.view === view) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (view !== 'live') stopLive();
  state.view = view;
  try {
    if (view === 'live') await showLive();
    else if (view === 'events') await showEvents(true);
    else if (view === 'people') await showPeople();
    else if (view === 'strangers') await showStrangers();
    else if (view === 'system') await showSystem();
    document.body.dataset.ready = view;
  } catch (e) {
    if (!(e instanceof ApiError && (e.status === 401 || e.status === 403))) notice(explain(e));
  }
}

// ---- live ----
function stopLive() {
  if (state.snapshotTimer) clearInterval(state.snapshotTimer);
  state.snapshotTimer = null;
  if (state.stream) state.stream.abort();
  state.stream = null;
}

function linkState(health) {
  const mqtt = health.mqtt || {};
  say('live-status', mqtt.enabled
    ? 'MQTT ' + (mqtt.connected ? 'connected' : 'not connected') + ' to ' + mqtt.broker + ', outbox ' + mqtt.outbox_depth + ' waiting'
    : 'MQTT off');
}

async function showLive() {
  const health = await getJson('/health');
  linkState(health);
  const box = $('live-cameras');
  box.replaceChildren();
  const cameras = health.cameras || [];
  if (!cameras.length) box.append(el('p', { text: 'No cameras configured ([[cameras]] in the configuration).' }));
  for (const cam of cameras) {
    const img = el('img', { alt: 'Latest frame of camera ' + cam.name, 'data-camera': cam.name, width: 640, height: 360 });
    const caption = el('figcaption', { 'data-camera': cam.name, text: cameraState(cam) });
    box.append(el('figure', { class: 'camera' }, img, caption));
  }
  let ticks = 0;
  const refresh = async () => {
    // Camera and link state every 5 s, the frames every second.
    if (ticks++ % 5 === 4) {
      try {
        const h = await getJson('/health');
        linkState(h);
        for (const cam of h.cameras || []) {
          const c = box.querySelector('figcaption[data-camera="' + CSS.escape(cam.name) + '"]');
          if (c) { c.dataset.state = cameraState(cam); c.textContent = c.dataset.state; }
        }
      } catch (e) { /* shown on the next view */ }
    }
    for (const img of box.querySelectorAll('img[data-camera]')) {
      try {
        const res = await api('GET', '/cameras/' + encodeURIComponent(img.dataset.camera) + '/snapshot?width=640');
        const faces = res.headers.get('x-facegate-faces') || '0';
        const url = URL.createObjectURL(await res.blob());
        img.dataset.faces = faces;
        const caption = img.parentElement.querySelector('figcaption');
        caption.textContent = (caption.dataset.state || caption.textContent.replace(/ · \d+ faces? in view$/, '')) + ' · ' + faces + (faces === '1' ? ' face' : ' faces') + ' in view';
        const old = img.src;
        img.src = url;
        if (old.startsWith('blob:')) URL.revokeObjectURL(old);
      } catch (e) { /* no frame yet */ }
    }
  };
  refresh();
  state.snapshotTimer = setInterval(refresh, 1000);
  startStream();
}

const cameraState = (cam) => cam.name + ': ' + cam.state + ', ' + (cam.fps || 0).toFixed(1) + ' fps';

function feedItem(ev) {
  const who = ev.person_name || ev.person_id || ev.unknown_id || '';
  const face = el('img', { class: 'thumb', alt: 'Face of this decision', width: 40, height: 40 });
  loadEventThumbnail(ev.event_id, face);
  const li = el('li', { class: 'decision ' + ev.type, 'data-event-id': ev.event_id, 'data-type': ev.type },
    face,
    el('span', { class: 'badge', text: ev.type }),
    el('span', { text: ' ' + when(ev.ts) + ' · ' + ev.camera + (who ? ' · ' + who : '') }),
    ev.sightings ? el('span', { text: ' · seen ' + ev.sightings + '×' }) : null,
    ev.door ? el('span', { text: ' · door ' + ev.door + (ev.granted ? ' opened' : ' closed (' + ev.access_reason + ')') }) : null);
  return li;
}

// Server-Sent Events read with fetch, so that the key goes in a header (EventSource cannot).
async function startStream() {
  if (state.stream) return;
  const ctrl = new AbortController();
  state.stream = ctrl;
  try {
    const res = await fetch('/events/stream', { headers: { 'x-api-key': key() }, signal: ctrl.signal, cache: 'no-store' });
    if (res.status === 401 || res.status === 403) {
      state.stream = null;
      sessionStorage.removeItem(KEY_ITEM);
      showLogin('The API key was refused.');
      return;
    }
    if (!res.ok) throw new Error('HTTP ' + res.status);
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let type = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) type = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
        }
        if (type === 'decision') onDecision(JSON.parse(data.join('\n')));
      }
    }
  } catch (e) {
    if (ctrl.signal.aborted) return;
  }
  // The stream ended (server restart): try again while the live view is shown.
  if (state.stream === ctrl) {
    state.stream = null;
    setTimeout(() => { if (state.view === 'live' && key()) startStream(); }, 2000);
  }
}

function onDecision(ev) {
  const received = Date.now();
  // From the decision (capture time plus the pipeline's time to the outbox) to this page.
  const decided = Date.parse(ev.ts) + ((ev.latency_ms && ev.latency_ms.total) || 0);
  window.facegateLive.push({ event_id: ev.event_id, received_ms: received, latency_ms: received - decided });
  const feed = $('live-feed');
  feed.prepend(feedItem(ev));
  while (feed.children.length > 50) feed.lastChild.remove();
}

// ---- events ----
function eventQuery() {
  const form = $('events-filter');
  const q = new URLSearchParams();
  for (const input of form.querySelectorAll('input, select')) {
    if (!input.value) continue;
    if (input.type === 'datetime-local') q.set(input.name, new Date(input.value).toISOString());
    else q.set(input.name, input.value);
  }
  q.set('limit', '25');
  return q;
}

async function showEvents(fresh) {
  const body = $('events-table').tBodies[0];
  if (fresh) { body.replaceChildren(); state.cursor = null; }
  const q = eventQuery();
  if (state.cursor) q.set('cursor', state.cursor);
  const page = await getJson('/events?' + q.toString());
  for (const rec of page.events) {
    const ev = rec.event || {};
    const who = ev.person_name || ev.person_id || ev.unknown_id || '';
    const face = el('img', { alt: 'Face of event ' + rec.event_id, width: 56, height: 56, class: 'thumb' });
    const row = el('tr', { 'data-event-id': rec.event_id },
      el('td', {}, face),
      el('td', { text: when(ev.ts) }),
      el('td', { text: ev.camera || '' }),
      el('td', { text: ev.type || '' }),
      el('td', { text: who }),
      el('td', { text: ev.door ? (ev.door + (ev.granted ? ': opened' : ': closed, ' + (ev.access_reason || ''))) : '' }));
    body.append(row);
    if (rec.thumbnail_sha256) loadEventThumbnail(rec.event_id, face); else face.alt = 'No face kept';
  }
  state.cursor = page.next_cursor;
  $('events-more').hidden = !page.next_cursor;
  if (!body.children.length) body.append(el('tr', {}, el('td', { colspan: 6, text: 'No events match.' })));
}

async function loadEventThumbnail(id, img) {
  try {
    const rec = await getJson('/events/' + encodeURIComponent(id));
    if (rec.thumbnail) img.src = jpeg(rec.thumbnail); else img.alt = 'No face kept';
  } catch (e) { img.alt = 'No face kept'; }
}

// ---- people ----
async function loadCollections(select) {
  const list = await getJson('/collections');
  const names = list.collections.map((c) => c.name);
  const keep = select.value || state.collection;
  select.replaceChildren(...names.map((n) => el('option', { value: n, text: n })));
  if (names.includes(keep)) select.value = keep;
  return names;
}

async function showPeople() {
  const names = await loadCollections($('people-collection'));
  state.collection = $('people-collection').value || names[0] || '';
  await loadPersons();
}

async function loadPersons() {
  const list = $('people-list');
  list.replaceChildren();
  $('person-detail').hidden = true;
  if (!state.collection) { list.append(el('li', { text: 'No collection yet: create one above.' })); return; }
  // Pages of 100 (the API's most), all of them: a door's collection is small.
  state.persons = [];
  for (let skip = 0; ; skip += 100) {
    const res = await getJson('/persons?collection_name=' + encodeURIComponent(state.collection) + '&take=100&skip=' + skip);
    state.persons.push(...res.persons);
    if (res.persons.length < 100) break;
  }
  renderPersons();
}

function renderPersons() {
  const filter = $('people-filter').value.trim().toLowerCase();
  const list = $('people-list');
  list.replaceChildren();
  for (const p of state.persons) {
    if (filter && !(p.person_id.toLowerCase().includes(filter) || (p.person_name || '').toLowerCase().includes(filter))) continue;
    const img = p.face_base_64 ? el('img', { src: jpeg(p.face_base_64), alt: 'Face of ' + (p.person_name || p.person_id), width: 96, height: 96 }) : null;
    const open = el('button', { type: 'button', 'data-person-id': p.person_id, text: (p.person_name || p.person_id) + ' (' + p.num_faces + ' faces)', on: { click: () => openPerson(p.person_id) } });
    list.append(el('li', { class: 'card person', 'data-person-id': p.person_id }, img, open));
  }
}

async function openPerson(id) {
  const p = await getJson('/person/' + encodeURIComponent(state.collection) + '/' + encodeURIComponent(id));
  state.person = p;
  $('person-detail').hidden = false;
  $('pd-title').textContent = (p.person_name || p.person_id) + ' · ' + p.person_id;
  $('pd-name').value = p.person_name || '';
  $('pd-metadata').value = JSON.stringify(p.metadata || {});
  $('pd-access').value = JSON.stringify(p.access || {});
  const faces = await getJson('/person/' + encodeURIComponent(state.collection) + '/' + encodeURIComponent(id) + '/faces');
  const list = $('pd-faces');
  list.replaceChildren();
  for (const f of faces.faces || []) {
    const img = f.face_base_64 ? el('img', { src: jpeg(f.face_base_64), alt: 'Face ' + f.face_id, width: 72, height: 72 }) : el('span', { text: 'face ' + f.face_id });
    const del = el('button', { type: 'button', class: 'danger', text: 'Remove face ' + f.face_id, on: { click: async () => {
      try { await send('DELETE', '/person/' + encodeURIComponent(state.collection) + '/' + encodeURIComponent(id) + '/faces/' + f.face_id); await openPerson(id); }
      catch (e) { say('pd-result', explain(e), true); }
    } } });
    list.append(el('li', {}, img, del));
  }
  $('pd-name').focus();
}

function fileBase64(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result).split(',')[1]);
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}

let captured = null; // base64 JPEG from the device camera

async function startCamera() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 }, audio: false });
    const video = $('camera-video');
    video.srcObject = stream;
    video.hidden = false;
    $('camera-capture').hidden = false;
    $('camera-capture').focus();
  } catch (e) {
    say('enrol-check', 'The camera cannot be used here: ' + e.message + ' (browsers allow it on https or localhost only).', true);
  }
}

async function capturePhoto() {
  const video = $('camera-video');
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext('2d').drawImage(video, 0, 0);
  captured = canvas.toDataURL('image/jpeg', 0.92).split(',')[1];
  for (const t of video.srcObject.getTracks()) t.stop();
  video.hidden = true;
  $('camera-capture').hidden = true;
  $('enrol-preview').src = jpeg(captured);
  $('enrol-preview').hidden = false;
  await checkPhoto(captured);
}

// Tell the operator at once whether the photo will do: one face, live.
async function checkPhoto(b64) {
  say('enrol-check', 'Checking the photo…');
  try {
    const r = await send('POST', '/liveness', { face_base_64: b64 });
    if (r.is_live) say('enrol-check', 'Live face found (score ' + r.liveness_score.toFixed(2) + ').');
    else {
      const failed = (r.metadata.checks || []).filter((c) => c.result === 'failed').map((c) => c.name + ' ' + c.value + ' (limit ' + c.limit + ')');
      say('enrol-check', 'Not fit: ' + r.metadata.code + (failed.length ? ' — ' + failed.join('; ') : '') + '. Take another photo facing the camera in even light.', true);
    }
  } catch (e) { say('enrol-check', explain(e), true); }
}

async function enrol(ev) {
  ev.preventDefault();
  const file = $('enrol-file').files[0];
  const photo = file ? await fileBase64(file) : captured;
  if (!photo) { say('enrol-result', 'Choose a photo file or take one with the camera.', true); return; }
  if (!state.collection) { say('enrol-result', 'Create a collection first.', true); return; }
  try {
    const p = await send('PUT', '/person', {
      collection_name: state.collection, person_id: $('enrol-id').value.trim(), person_name: $('enrol-name').value.trim(),
      face_base_64: photo, check_liveness: $('enrol-liveness').checked,
    });
    say('enrol-result', 'Enrolled ' + (p.person_name || p.person_id) + '.');
    $('enrol-form').reset();
    captured = null;
    $('enrol-preview').hidden = true;
    say('enrol-check', '');
    await loadPersons();
  } catch (e) { say('enrol-result', explain(e), true); }
}

async function savePerson(ev) {
  ev.preventDefault();
  let metadata, access;
  try { metadata = JSON.parse($('pd-metadata').value || '{}'); access = JSON.parse($('pd-access').value || '{}'); }
  catch (e) { say('pd-result', 'Metadata and access rules must be JSON: ' + e.message, true); return; }
  try {
    const p = await send('PATCH', '/person/' + encodeURIComponent(state.collection) + '/' + encodeURIComponent(state.person.person_id),
      { person_name: $('pd-name').value.trim(), metadata, access });
    say('pd-result', 'Saved ' + (p.person_name || p.person_id) + '.');
    const i = state.persons.findIndex((x) => x.person_id === p.person_id);
    if (i >= 0) state.persons[i] = p;
    renderPersons();
  } catch (e) { say('pd-result', explain(e), true); }
}

async function deletePerson() {
  const p = state.person;
  if (!confirm('Delete ' + (p.person_name || p.person_id) + ' and all their faces?')) return;
  try {
    await send('DELETE', '/person/' + encodeURIComponent(state.collection) + '/' + encodeURIComponent(p.person_id));
    say('enrol-result', 'Deleted ' + p.person_id + '.');
    await loadPersons();
  } catch (e) { say('pd-result', explain(e), true); }
}

async function addFace() {
  const file = $('pd-add-face').files[0];
  if (!file) return;
  try {
    await send('POST', '/person/' + encodeURIComponent(state.collection) + '/' + encodeURIComponent(state.person.person_id) + '/faces',
      { face_base_64: await fileBase64(file) });
    $('pd-add-face').value = '';
    await openPerson(state.person.person_id);
    say('pd-result', 'Face added.');
  } catch (e) { say('pd-result', explain(e), true); }
}

async function createCollection(ev) {
  ev.preventDefault();
  const name = $('new-collection').value.trim();
  if (!name) { state.collection = $('people-collection').value; await loadPersons(); return; }
  try {
    await send('POST', '/collection', { collection_name: name });
    $('new-collection').value = '';
    state.collection = name;
    await showPeople();
    $('people-collection').value = name;
  } catch (e) { say('enrol-result', explain(e), true); }
}

// ---- strangers ----
async function showStrangers() {
  await loadCollections($('strangers-collection'));
  // Every page (strangers.max_count bounds them; 500 a page).
  const all = [];
  let cursor = null;
  do {
    const page = await getJson('/unknowns?limit=500' + (cursor ? '&cursor=' + cursor : ''));
    all.push(...page.unknowns);
    cursor = page.next_cursor;
  } while (cursor);
  const list = $('strangers-list');
  list.replaceChildren();
  if (!all.length) list.append(el('li', { text: 'No strangers seen.' }));
  for (const s of all) {
    const nameId = 'st-name-' + s.unknown_id;
    const name = el('input', { id: nameId, maxlength: 256 });
    const act = (label, f, cls) => el('button', { type: 'button', class: cls, text: label, 'data-action': label.toLowerCase(), on: { click: f } });
    const enrolIt = async () => {
      const collection = $('strangers-collection').value;
      if (!collection) { say('strangers-result', 'Create a collection first (People).', true); return; }
      try {
        const p = await send('POST', '/unknowns/' + s.unknown_id + '/enrol', { collection_name: collection, person_name: name.value.trim() });
        say('strangers-result', s.unknown_id + ' enrolled as ' + (p.person_name || p.person_id) + ' with ' + p.num_faces + ' faces.');
        await showStrangers();
      } catch (e) { say('strangers-result', explain(e), true); }
    };
    const ignoreIt = async () => {
      try { await send('POST', '/unknowns/' + s.unknown_id + '/ignore'); say('strangers-result', s.unknown_id + ' will not be reported again.'); await showStrangers(); }
      catch (e) { say('strangers-result', explain(e), true); }
    };
    const forget = async () => {
      try { await send('DELETE', '/unknowns/' + s.unknown_id); say('strangers-result', s.unknown_id + ' forgotten.'); await showStrangers(); }
      catch (e) { say('strangers-result', explain(e), true); }
    };
    list.append(el('li', { class: 'card stranger' + (s.ignored ? ' ignored' : ''), 'data-unknown-id': s.unknown_id },
      s.thumbnail ? el('img', { src: jpeg(s.thumbnail), alt: 'Face of ' + s.unknown_id, width: 96, height: 96 }) : null,
      el('strong', { text: s.unknown_id }),
      el('span', { text: 'seen ' + s.sightings + '× · last ' + when(s.last_seen) + ' on ' + s.last_camera + (s.ignored ? ' · ignored' : '') }),
      el('label', { for: nameId, text: 'Name' }), name,
      el('div', { class: 'row' }, act('Enrol', enrolIt), s.ignored ? null : act('Ignore', ignoreIt), act('Delete', forget, 'danger'))));
  }
}

// ---- system ----
async function showSystem() {
  const h = await getJson('/health');
  const facts = $('system-facts');
  facts.replaceChildren();
  const add = (term, value) => facts.append(el('dt', { text: term }), el('dd', { text: value }));
  add('Status', h.status + ', version ' + h.version + ', up ' + Math.round(h.uptime_s / 60) + ' min');
  const m = h.models || {};
  add('Embedder', m.embedder + ' (' + m.dimension + '-d, ' + m.fingerprint + ')');
  add('Execution providers', (m.providers || []).map((p) => p.model + ': ' + p.provider).join(', '));
  add('Inference', h.inference.workers + ' workers, ' + h.inference.in_flight + ' in flight of ' + h.inference.queue_capacity);
  add('Store', h.store.collections + ' collections, ' + h.store.persons + ' persons, ' + mib(h.store.file_bytes) + ' on disk, index ' + mib(h.store.index_bytes));
  add('Strangers', h.strangers.count !== undefined ? h.strangers.count + ' kept' : 'off');
  const q = h.mqtt || {};
  add('MQTT', q.enabled ? ((q.connected ? 'connected to ' : 'not connected to ') + q.broker + ', outbox ' + q.outbox_depth + ', dropped ' + q.outbox_dropped) : 'off');
  for (const c of h.cameras || []) add('Camera ' + c.name, c.state + ', ' + (c.fps || 0).toFixed(1) + ' fps, ' + c.frames + ' frames, ' + c.errors + ' errors' + (c.last_error ? ' (' + c.last_error + ')' : ''));
  if (h.access) add('Access signing key', h.access.public_key);
  add('API access', h.auth);
}
const mib = (b) => (b === null || b === undefined ? '?' : (b / 1048576).toFixed(1) + ' MiB');

// ---- wiring ----
document.addEventListener('DOMContentLoaded', () => {
  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY_ITEM, $('login-key').value);
    $('login-key').value = '';
    if (!location.hash) location.hash = '#live'; else route();
  });
  $('logout').addEventListener('click', () => { sessionStorage.removeItem(KEY_ITEM); showLogin('Logged out.'); });
  $('events-filter').addEventListener('submit', (ev) => { ev.preventDefault(); showEvents(true).catch((e) => notice(explain(e))); });
  $('events-more').addEventListener('click', () => showEvents(false).catch((e) => notice(explain(e))));
  $('collection-form').addEventListener('submit', createCollection);
  $('people-collection').addEventListener('change', () => { state.collection = $('people-collection').value; loadPersons(); });
  $('people-filter').addEventListener('input', renderPersons);
  $('enrol-form').addEventListener('submit', enrol);
  $('enrol-file').addEventListener('change', async () => {
    const f = $('enrol-file').files[0];
    if (!f) return;
    captured = null;
    const b64 = await fileBase64(f);
    $('enrol-preview').src = 'data:' + f.type + ';base64,' + b64;
    $('enrol-preview').hidden = false;
    await checkPhoto(b64);
  });
  $('camera-start').addEventListener('click', startCamera);
  $('camera-capture').addEventListener('click', capturePhoto);
  $('pd-form').addEventListener('submit', savePerson);
  $('pd-delete').addEventListener('click', deletePerson);
  $('pd-add-face').addEventListener('change', addFace);
  window.addEventListener('hashchange', route);
  route();
});
