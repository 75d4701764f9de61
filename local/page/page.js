// Local mode's page (served by local/query-page.ts): meters and readings come from the query API
// (the deployed API's handler, JSON format) like any client's; the counters from the local-only
// /page/counters.json. Plain browser JavaScript: no framework, no build step, nothing from the network.
// Days are the store's local days (its block zone, from /page/config.json), not the browser's.

const SVG = 'http://www.w3.org/2000/svg';
const SOURCES = ['iot', 'smt', 'ready'];
const COUNTER_FIELDS = ['stored', 'superseded', 'duplicate', 'stale', 'conflict', 'rejected', 'resent'];
const CHART = { width: 900, height: 320, left: 64, right: 16, top: 16, bottom: 44 };
const HOUR_MS = 3_600_000;

const state = { config: undefined, meters: [], metersShown: false, meterId: undefined, channel: undefined, span: 'day', day: undefined, loads: 0 };
const $ = (id) => document.getElementById(id);

function setStatus(text, isError = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', isError);
}

async function getJson(path) {
  const response = await fetch(path, { headers: { accept: 'application/json' } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error ? `${body.error.code}: ${body.error.message}` : `${path} answered ${response.status}`);
  return body;
}

// --- days in the store's zone --------------------------------------------------------------------

let zoneFormat;
function zoneParts(ms) {
  zoneFormat ??= new Intl.DateTimeFormat('en-CA', {
    timeZone: state.config.timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    weekday: 'short',
    hourCycle: 'h23',
  });
  const parts = {};
  for (const part of zoneFormat.formatToParts(new Date(ms))) parts[part.type] = part.value;
  return parts;
}
const localDay = (ms) => {
  const p = zoneParts(ms);
  return `${p.year}-${p.month}-${p.day}`;
};
const localTime = (ms) => {
  const p = zoneParts(ms);
  return `${p.hour}:${p.minute}`;
};
function offsetMs(ms) {
  const p = zoneParts(ms);
  return Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second) - Math.floor(ms / 1000) * 1000;
}
/** The instant the zone's day `day` (YYYY-MM-DD) starts. */
function startOfDay(day) {
  const [y, m, d] = day.split('-').map(Number);
  const guess = Date.UTC(y, m - 1, d);
  return guess - offsetMs(guess - offsetMs(guess));
}
function addDays(day, n) {
  const [y, m, d] = day.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, d + n)).toISOString().slice(0, 10);
}
function shownRange() {
  const first = state.span === 'week' ? addDays(state.day, -6) : state.day;
  return { from: startOfDay(first), to: startOfDay(addDays(state.day, 1)), first };
}

// --- meters --------------------------------------------------------------------------------------

async function loadMeters() {
  const meters = [];
  let cursor;
  do {
    const page = await getJson(`${state.config.api}/meters?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    meters.push(...page.meters);
    cursor = page.nextCursor;
  } while (cursor && meters.length < 10_000);
  // Unchanged: leave the list alone (re-rendering it would take the keyboard focus away).
  if (state.metersShown && JSON.stringify(meters) === JSON.stringify(state.meters)) return;
  state.meters = meters;
  state.metersShown = true;
  const focused = document.activeElement?.dataset?.meter;
  renderMeters();
  if (focused)
    $('meters')
      .querySelector(`button[data-meter="${CSS.escape(focused)}"]`)
      ?.focus();
}

function renderMeters() {
  const list = $('meters');
  list.replaceChildren();
  $('meters-empty').hidden = state.meters.length > 0;
  for (const meter of state.meters) {
    const button = document.createElement('button');
    button.type = 'button';
    button.dataset.meter = meter.meterId;
    button.setAttribute('aria-pressed', String(meter.meterId === state.meterId));
    const id = document.createElement('span');
    id.className = 'meter-id';
    id.textContent = meter.meterId;
    const meta = document.createElement('span');
    meta.className = 'meter-meta';
    meta.textContent = `${meter.sources.join(', ')} · ${meter.channels.map((c) => c.channel).join(', ')} · last ${localDay(Date.parse(meter.last))} ${localTime(Date.parse(meter.last))}`;
    button.append(id, meta);
    button.addEventListener('click', () => void selectMeter(meter.meterId));
    const item = document.createElement('li');
    item.append(button);
    list.append(item);
  }
}

function selectedMeter() {
  return state.meters.find((meter) => meter.meterId === state.meterId);
}

async function selectMeter(meterId) {
  state.meterId = meterId;
  for (const button of $('meters').querySelectorAll('button')) button.setAttribute('aria-pressed', String(button.dataset.meter === meterId));
  const meter = selectedMeter();
  const select = $('channel');
  select.replaceChildren(
    ...meter.channels.map((c) => {
      const option = document.createElement('option');
      option.value = c.channel;
      option.textContent = `${c.channel} (${c.units.join(', ')})`;
      return option;
    }),
  );
  // Interval channels first: a register's single daily read makes a thin chart.
  const channel = meter.channels.find((c) => !c.intervalSeconds.includes(0)) ?? meter.channels[0];
  select.value = channel.channel;
  await selectChannel(channel.channel);
}

async function selectChannel(channel) {
  state.channel = channel;
  const summary = selectedMeter().channels.find((c) => c.channel === channel);
  state.day = localDay(Date.parse(summary.last));
  $('day').value = state.day;
  await loadReadings();
}

// --- readings ------------------------------------------------------------------------------------

const identity = (reading) => Date.parse(reading.kind === 'interval' ? reading.start : reading.at);

/**
 * The store keeps the winning value of each reading, and the API says its revision. A reading whose
 * revision is above the lowest of its day's readings came in a later revision than the rest of
 * the day (an SMT correction file, say): its earlier value was superseded. Marked "revised".
 */
function markRevised(readings) {
  const base = new Map();
  for (const reading of readings) {
    const day = localDay(identity(reading));
    base.set(day, Math.min(base.get(day) ?? Infinity, reading.revision));
  }
  for (const reading of readings) reading.revised = reading.revision > base.get(localDay(identity(reading)));
}

async function loadReadings() {
  if (!state.meterId || !state.channel || !state.day) return;
  const load = ++state.loads;
  const range = shownRange();
  const readings = [];
  let cursor;
  setStatus(`Loading ${state.meterId} …`);
  try {
    do {
      const query = new URLSearchParams({
        from: new Date(range.from).toISOString(),
        to: new Date(range.to).toISOString(),
        channel: state.channel,
        format: 'json',
      });
      if (cursor) query.set('cursor', cursor);
      const page = await getJson(`${state.config.api}/meters/${encodeURIComponent(state.meterId)}/readings?${query}`);
      readings.push(...page.readings);
      cursor = page.nextCursor;
    } while (cursor);
  } catch (error) {
    setStatus(`Could not load the readings: ${error.message}`, true);
    return;
  }
  if (load !== state.loads) return; // a newer choice was made meanwhile
  markRevised(readings);
  renderChart(readings, range);
  renderTable(readings);
  const estimated = readings.filter((r) => r.quality === 'estimated').length;
  const revised = readings.filter((r) => r.revised).length;
  const when = state.span === 'week' ? `${range.first} to ${state.day}` : state.day;
  const text = `${readings.length} readings of ${state.meterId} ${state.channel}, ${when} (${state.config.timeZone}): ${estimated} estimated, ${revised} revised`;
  $('chart-summary').textContent = text;
  $('chart-meter').textContent = `· ${state.meterId}`;
  setStatus(`Showing ${text}.`);
  document.body.dataset.chart = `${state.meterId}|${state.channel}|${state.span}|${state.day}`;
}

function svg(name, attributes = {}, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

const roundLabel = (value) => String(Number(value.toPrecision(3)));

function chartScales(readings, range) {
  const values = readings.map((r) => r.value);
  const low = Math.min(0, ...values);
  let high = Math.max(0, ...values);
  if (high === low) high = low + 1;
  const plotW = CHART.width - CHART.left - CHART.right;
  const plotH = CHART.height - CHART.top - CHART.bottom;
  return {
    low,
    high,
    x: (ms) => CHART.left + ((ms - range.from) / (range.to - range.from)) * plotW,
    y: (value) => CHART.top + (1 - (value - low) / (high - low)) * plotH,
  };
}

function drawAxes(chart, scales, range) {
  const bottom = CHART.height - CHART.bottom;
  for (let k = 0; k <= 4; k++) {
    const value = scales.low + ((scales.high - scales.low) * k) / 4;
    const y = scales.y(value);
    chart.append(svg('line', { class: 'grid', x1: CHART.left, x2: CHART.width - CHART.right, y1: y, y2: y }));
    chart.append(svg('text', { x: CHART.left - 6, y: y + 4, 'text-anchor': 'end' }, roundLabel(value)));
  }
  const ticks = [];
  if (state.span === 'week') {
    for (let d = 0; d < 7; d++) {
      const day = addDays(range.first, d);
      ticks.push({ at: startOfDay(day), label: `${zoneParts(startOfDay(day)).weekday} ${day.slice(5)}` });
    }
  } else {
    for (let at = range.from; at < range.to; at += 3 * HOUR_MS) ticks.push({ at, label: localTime(at) });
  }
  for (const tick of ticks) {
    const x = scales.x(tick.at);
    chart.append(svg('line', { class: 'grid', x1: x, x2: x, y1: CHART.top, y2: bottom }));
    chart.append(svg('text', { x, y: bottom + 16, 'text-anchor': 'middle' }, tick.label));
  }
  chart.append(svg('line', { class: 'axis', x1: CHART.left, x2: CHART.width - CHART.right, y1: bottom, y2: bottom }));
  chart.append(svg('line', { class: 'axis', x1: CHART.left, x2: CHART.left, y1: CHART.top, y2: bottom }));
}

/** Where a reading is drawn: an interval at its middle, a register read at its time. */
const drawnAt = (reading) => (reading.kind === 'interval' ? (Date.parse(reading.start) + Date.parse(reading.end)) / 2 : Date.parse(reading.at));

/** A week has ~700 points: plain ones shrink to a line there, so the marked ones stand out. */
const markerRadius = (reading) => (state.span === 'week' && reading.quality !== 'estimated' ? 1.2 : reading.quality === 'estimated' ? 4 : 3.5);

function drawSeries(chart, readings, scales) {
  // A line through consecutive intervals, broken where intervals are missing (a gap is not a zero).
  let path = '';
  let previous;
  for (const reading of readings) {
    const joined = previous && (reading.kind !== 'interval' || Date.parse(reading.start) === Date.parse(previous.end));
    path += `${joined ? 'L' : 'M'}${scales.x(drawnAt(reading)).toFixed(1)} ${scales.y(reading.value).toFixed(1)} `;
    previous = reading;
  }
  if (path) chart.append(svg('path', { class: 'series', d: path.trim() }));
  for (const reading of readings) {
    const x = scales.x(drawnAt(reading));
    const y = scales.y(reading.value);
    const className = `pt${reading.quality === 'estimated' ? ' estimated' : ''}${reading.revised ? ' revised' : ''}`;
    const marker = reading.revised
      ? svg('path', { class: className, d: `M${x} ${y - 5} L${x + 5} ${y} L${x} ${y + 5} L${x - 5} ${y} Z` })
      : svg('circle', { class: className, cx: x, cy: y, r: markerRadius(reading) });
    marker.dataset.at = new Date(identity(reading)).toISOString();
    marker.dataset.value = String(reading.value);
    marker.dataset.quality = reading.quality;
    marker.dataset.revision = String(reading.revision);
    marker.append(
      svg('title', {}, `${localDay(identity(reading))} ${localTime(identity(reading))}: ${reading.value} ${reading.unit}, ${describe(reading)}`),
    );
    chart.append(marker);
  }
}

const describe = (reading) =>
  [reading.quality, reading.revised ? `revised (revision ${reading.revision})` : `revision ${reading.revision}`].join(', ');

function renderChart(readings, range) {
  const chart = $('chart');
  const title = svg('title', { id: 'chart-title' }, `Readings of ${state.meterId} ${state.channel}`);
  chart.replaceChildren(title);
  const scales = chartScales(readings, range);
  drawAxes(chart, scales, range);
  const unit = readings[0]?.unit ?? '';
  chart.append(svg('text', { x: 4, y: CHART.top + 4 }, unit));
  if (readings.length === 0)
    chart.append(svg('text', { x: CHART.width / 2, y: CHART.height / 2, 'text-anchor': 'middle' }, 'no readings in this span'));
  drawSeries(chart, readings, scales);
}

function renderTable(readings) {
  const body = $('readings-table').tBodies[0];
  body.replaceChildren();
  $('readings-caption').textContent = `Readings of ${state.meterId} ${state.channel} (times in ${state.config.timeZone})`;
  for (const reading of readings) {
    const row = document.createElement('tr');
    if (reading.quality === 'estimated') row.classList.add('estimated');
    if (reading.revised) row.classList.add('revised');
    row.dataset.at = new Date(identity(reading)).toISOString();
    const at = identity(reading);
    const marked = [reading.quality === 'estimated' ? 'estimated' : '', reading.revised ? 'revised' : ''].filter(Boolean).join(', ') || '—';
    for (const text of [
      `${localDay(at)} ${localTime(at)}`,
      reading.value,
      reading.unit,
      reading.quality,
      reading.revision,
      marked,
      reading.source,
      reading.originId,
    ]) {
      const cell = document.createElement('td');
      cell.textContent = String(text);
      row.append(cell);
    }
    body.append(row);
  }
}

// --- counters ------------------------------------------------------------------------------------

let countersInFlight = false;
async function loadCounters() {
  // A slow metrics sink must not pile up requests, one per tick.
  if (countersInFlight) return;
  countersInFlight = true;
  try {
    await showCounters();
  } finally {
    countersInFlight = false;
  }
}

async function showCounters() {
  const body = $('counters').tBodies[0];
  if (!state.config.counters) {
    body.innerHTML = '<tr><td colspan="8">No running pipeline here: the counters come with local mode (npm start).</td></tr>';
    return;
  }
  let counters;
  try {
    counters = await getJson('/page/counters.json');
  } catch (error) {
    setStatus(`Could not load the counters: ${error.message}`, true);
    return;
  }
  body.replaceChildren(
    ...SOURCES.map((source) => {
      const row = document.createElement('tr');
      row.dataset.source = source;
      const name = document.createElement('th');
      name.scope = 'row';
      name.textContent = source;
      row.append(name);
      for (const field of COUNTER_FIELDS) {
        const cell = document.createElement('td');
        cell.dataset.field = field;
        cell.textContent = String(counters.sources[source]?.[field] ?? 0);
        row.append(cell);
      }
      return row;
    }),
  );
  const at = $('counters-at');
  at.dateTime = counters.at;
  at.textContent = new Date(counters.at).toLocaleTimeString();
  document.body.dataset.counters = counters.at;
}

// --- wiring --------------------------------------------------------------------------------------

function wireControls() {
  $('meters-refresh').addEventListener('click', () => void refreshMeters().then(loadReadings));
  $('channel').addEventListener('change', (event) => void selectChannel(event.target.value));
  for (const radio of document.querySelectorAll('input[name="span"]'))
    radio.addEventListener('change', (event) => {
      state.span = event.target.value;
      void loadReadings();
    });
  $('day').addEventListener('change', (event) => {
    if (!/^\d{4}-\d{2}-\d{2}$/.test(event.target.value)) return;
    state.day = event.target.value;
    void loadReadings();
  });
  const step = (sign) => {
    if (!state.day) return;
    state.day = addDays(state.day, sign * (state.span === 'week' ? 7 : 1));
    $('day').value = state.day;
    void loadReadings();
  };
  $('previous').addEventListener('click', () => step(-1));
  $('next').addEventListener('click', () => step(1));
  $('controls').addEventListener('submit', (event) => event.preventDefault());
}

async function refreshMeters() {
  try {
    await loadMeters();
    if (!state.meterId) setStatus(state.meters.length ? `${state.meters.length} meters: choose one to chart it.` : 'No meters stored yet.');
  } catch (error) {
    setStatus(`Could not list the meters: ${error.message}`, true);
  }
}

async function start() {
  state.config = await getJson('/page/config.json');
  wireControls();
  await Promise.all([refreshMeters(), loadCounters()]);
  setInterval(() => void loadCounters(), state.config.refreshMs);
  // New meters appear while the pipeline runs; the chart reloads on Refresh or any change.
  setInterval(() => void loadMeters().catch(() => undefined), Math.max(15_000, state.config.refreshMs));
  document.body.dataset.ready = 'true';
}

start().catch((error) => setStatus(`The page could not start: ${error.message}`, true));
