// The chat page of `mgllava serve`: one image per conversation (in the first user message), the
// whole history sent with each question, answers streamed from /v1/chat/completions (SSE), the
// boxes the model used drawn over the image. Plain ES module, no build step, same origin.

const $ = (id) => /** @type {any} */ (document.getElementById(id));
const ui = {
  log: $('log'), hint: $('hint'), model: $('model'), newChat: $('new-chat'), temperature: $('temperature'), maxTokens: $('max-tokens'),
  detect: $('detect'), showBoxes: $('show-boxes'), composer: $('composer'), image: $('image'), question: $('question'), send: $('send'), stop: $('stop'), drop: $('drop'),
};
const SVG = 'http://www.w3.org/2000/svg';

const state = {
  /** @type {string | null} */ model: null,
  detector: false,
  /** @type {{url: string, width: number, height: number} | null} */ image: null,
  /** @type {{svg: SVGSVGElement, caption: HTMLElement} | null} */ figure: null,
  /** @type {{role: 'user' | 'assistant', text: string}[]} */ turns: [],
  /** @type {AbortController | null} */ busy: null,
};

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function scrollDown() {
  ui.log.scrollTop = ui.log.scrollHeight;
}

function updateControls() {
  ui.send.disabled = !state.model || state.busy !== null;
  ui.stop.disabled = state.busy === null;
}

// The served model (GET /v1/models), retried while it loads.
async function connect() {
  for (;;) {
    try {
      const r = await fetch('/v1/models');
      if (r.ok) {
        const m = (await r.json()).data[0];
        state.model = m.id;
        state.detector = m.detector === true;
        ui.model.textContent = `${m.id} · ${m.template} · ${m.context_length} tokens${state.detector ? ' · detector' : ''}`;
        ui.detect.disabled = !state.detector;
        ui.detect.checked = state.detector;
        updateControls();
        return;
      }
      if (r.status === 401) {
        ui.model.textContent = 'this server wants an API key (--api-key), which the page does not send';
        return;
      }
      ui.model.textContent = r.status === 503 ? 'loading the model…' : `the server answered ${r.status}`;
    } catch {
      ui.model.textContent = 'cannot reach the server';
    }
    await new Promise((res) => setTimeout(res, 2000));
  }
}

// --- the image ---------------------------------------------------------------------------------

const readAsDataUrl = (blob) =>
  new Promise((resolve, reject) => {
    const fr = new FileReader();
    fr.onload = () => resolve(/** @type {string} */ (fr.result));
    fr.onerror = () => reject(fr.error);
    fr.readAsDataURL(blob);
  });

/** A data URL the server takes (PNG, JPEG, WebP as they are; other images re-encoded as PNG). */
async function imageUrl(file) {
  if (/^image\/(png|jpeg|webp)$/.test(file.type)) return readAsDataUrl(file);
  const bitmap = await createImageBitmap(file);
  const c = document.createElement('canvas');
  c.width = bitmap.width;
  c.height = bitmap.height;
  c.getContext('2d').drawImage(bitmap, 0, 0);
  return c.toDataURL('image/png');
}

async function setImage(file) {
  if (!file) return;
  try {
    const url = await imageUrl(file);
    const img = new Image();
    img.src = url;
    await img.decode();
    // One image per conversation: a new image starts a new one.
    if (state.turns.length || state.busy) newChat();
    state.figure?.svg.closest('figure')?.remove();
    state.image = { url, width: img.naturalWidth, height: img.naturalHeight };
    const fig = h('figure', 'image');
    const frame = h('div', 'frame');
    img.alt = file.name ? `the image ${file.name}` : 'the image';
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', `0 0 ${img.naturalWidth} ${img.naturalHeight}`);
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('aria-label', 'Boxes');
    svg.classList.add('boxes');
    const caption = h('figcaption', '', `${img.naturalWidth}×${img.naturalHeight}`);
    frame.append(img, svg);
    fig.append(frame, caption);
    ui.hint.hidden = true;
    ui.log.prepend(fig);
    state.figure = { svg, caption };
    ui.question.focus();
  } catch (e) {
    showError(`cannot read that image: ${e instanceof Error ? e.message : e}`);
  }
}

/** The boxes the model was given (in the image's pixels), as SVG rectangles. */
function drawBoxes(b) {
  if (!state.figure || !state.image) return;
  const { svg, caption } = state.figure;
  svg.replaceChildren();
  const { width, height } = state.image;
  const size = Math.max(width, height);
  b.boxes.forEach(([x0, y0, x1, y1], i) => {
    const g = document.createElementNS(SVG, 'g');
    const r = document.createElementNS(SVG, 'rect');
    r.setAttribute('x', String(x0));
    r.setAttribute('y', String(y0));
    r.setAttribute('width', String(Math.max(0, x1 - x0)));
    r.setAttribute('height', String(Math.max(0, y1 - y0)));
    const title = document.createElementNS(SVG, 'title');
    const score = b.scores?.[i];
    title.textContent = `${b.labels?.[i] ?? ''}${score !== undefined ? ` ${score.toFixed(2)}` : ''}`;
    g.append(r, title);
    if (b.boxes.length <= 20) {
      const t = document.createElementNS(SVG, 'text');
      t.setAttribute('x', String(x0 + size * 0.005));
      t.setAttribute('y', String(y0 + size * 0.03));
      t.setAttribute('font-size', String(size * 0.025));
      t.textContent = b.labels?.[i] ?? '';
      g.append(t);
    }
    svg.append(g);
  });
  caption.textContent = `${width}×${height} · ${b.boxes.length} box${b.boxes.length === 1 ? '' : 'es'} (${b.detected ? 'detected' : 'given'})`;
}

// --- the conversation --------------------------------------------------------------------------

/** OpenAI's messages: the image in the first user message, then the turns as text. */
function messages() {
  return state.turns.map((t, i) =>
    i === 0 && state.image ? { role: 'user', content: [{ type: 'image_url', image_url: { url: state.image.url } }, { type: 'text', text: t.text }] } : { role: t.role, content: t.text },
  );
}

function showError(message) {
  const e = h('div', 'msg error', message);
  e.setAttribute('role', 'alert');
  ui.log.append(e);
  scrollDown();
  return e;
}

function timings(ext, usage, finish) {
  const parts = [];
  const t = ext?.timings;
  if (t) parts.push(`prefill ${t.prefill_ms} ms`, `decode ${t.decode_tokens_per_s} tokens/s`);
  const cached = usage?.prompt_tokens_details?.cached_tokens;
  if (typeof cached === 'number') parts.push(`${cached} of ${usage.prompt_tokens} prompt tokens cached`);
  if (finish === 'length') parts.push('stopped at max tokens');
  return parts.join(' · ');
}

/** The answer's chunks, parsed from the SSE body; a mid-stream error line throws. */
async function* chunks(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!line.startsWith('data:')) continue;
      const data = line.slice(5).trim();
      if (data === '[DONE]') return;
      const c = JSON.parse(data);
      if (c.error) throw new Error(c.error.message);
      yield c;
    }
  }
}

async function ask(question) {
  if (!state.model || state.busy) return;
  ui.hint.hidden = true;
  ui.log.append(h('div', 'msg user', question));
  const answer = h('div', 'msg assistant');
  answer.dataset.state = 'streaming';
  const text = document.createTextNode('');
  const body = h('div', 'text');
  body.append(text);
  const meta = h('div', 'timings');
  answer.append(body, meta);
  ui.log.append(answer);
  scrollDown();

  // A New chat (or a new image) while this answer streams leaves this conversation behind.
  const turns = state.turns;
  turns.push({ role: 'user', text: question });
  const controller = new AbortController();
  state.busy = controller;
  updateControls();
  const temperature = parseFloat(ui.temperature.value);
  const maxTokens = parseInt(ui.maxTokens.value, 10);
  const request = {
    model: state.model,
    messages: messages(),
    stream: true,
    stream_options: { include_usage: true },
    ...(Number.isFinite(maxTokens) ? { max_tokens: maxTokens } : {}),
    ...(Number.isFinite(temperature) ? { temperature } : {}),
    ...(state.detector && state.image ? { mgllava: { detect: ui.detect.checked } } : {}),
  };
  let ext;
  let usage;
  let finish = null;
  try {
    const r = await fetch('/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(request), signal: controller.signal });
    if (!r.ok) {
      const e = await r.json().catch(() => null);
      throw new Error(e?.error?.message ?? `the server answered ${r.status}`);
    }
    for await (const c of chunks(r.body)) {
      if (c.usage) usage = c.usage;
      const ch = c.choices?.[0];
      if (!ch) continue;
      if (ch.delta?.content) {
        text.appendData(ch.delta.content);
        scrollDown();
      }
      if (ch.finish_reason) {
        finish = ch.finish_reason;
        ext = c.mgllava;
        if (ext?.boxes && turns === state.turns) drawBoxes(ext.boxes);
      }
    }
    if (finish === null) throw new Error('the answer ended early (the server closed the stream)');
    turns.push({ role: 'assistant', text: text.data });
    answer.dataset.state = 'done';
    meta.textContent = timings(ext, usage, finish);
  } catch (e) {
    if (controller.signal.aborted) {
      // What came so far stays in the conversation.
      turns.push({ role: 'assistant', text: text.data });
      answer.dataset.state = 'stopped';
      meta.textContent = 'stopped';
    } else {
      // The question is not part of the conversation: it goes back to the box to retry.
      turns.pop();
      answer.remove();
      if (turns === state.turns) {
        showError(e instanceof Error ? e.message : String(e));
        if (!ui.question.value) ui.question.value = question;
      }
    }
  } finally {
    if (state.busy === controller) state.busy = null;
    updateControls();
    scrollDown();
  }
}

function newChat() {
  state.busy?.abort();
  state.busy = null;
  state.turns = [];
  state.image = null;
  state.figure = null;
  ui.log.replaceChildren(ui.hint);
  ui.hint.hidden = false;
  updateControls();
}

// --- events ------------------------------------------------------------------------------------

ui.composer.addEventListener('submit', (e) => {
  e.preventDefault();
  const q = ui.question.value.trim();
  if (!q || !state.model || state.busy) return;
  ui.question.value = '';
  void ask(q);
});
ui.question.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    ui.composer.requestSubmit();
  }
});
ui.stop.addEventListener('click', () => state.busy?.abort());
ui.newChat.addEventListener('click', () => {
  newChat();
  ui.question.focus();
});
ui.image.addEventListener('change', () => {
  const f = ui.image.files?.[0];
  ui.image.value = '';
  void setImage(f);
});
ui.showBoxes.addEventListener('change', () => document.body.classList.toggle('hide-boxes', !ui.showBoxes.checked));

const imageFile = (list) => [...(list ?? [])].find((f) => f.type.startsWith('image/'));
document.addEventListener('paste', (e) => {
  const f = imageFile(e.clipboardData?.files);
  if (!f) return;
  e.preventDefault();
  void setImage(f);
});
const dragging = (e) => e.dataTransfer?.types.includes('Files');
document.addEventListener('dragover', (e) => {
  if (!dragging(e)) return;
  e.preventDefault();
  ui.drop.hidden = false;
});
document.addEventListener('dragleave', (e) => {
  if (e.relatedTarget === null) ui.drop.hidden = true;
});
document.addEventListener('drop', (e) => {
  if (!dragging(e)) return;
  e.preventDefault();
  ui.drop.hidden = true;
  const f = imageFile(e.dataTransfer.files);
  if (f) void setImage(f);
  else showError('that is not an image');
});

void connect();
