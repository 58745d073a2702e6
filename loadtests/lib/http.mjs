// HTTP helpers for the scenarios: a raw HTTP/1.1 client (exact bytes, paths that fetch would
// normalise), an SSE reader that classifies how a stream ended, /metrics reading, statistics.
import { connect } from 'node:net';

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Sends one request as written (method, raw path, headers, body bytes) on a new connection and
 * reads the answer until the server closes it. Resolves { status, headers, body } or
 * { status: null, error } (reset, timeout); `status` 0 means the server closed without answering.
 */
export function rawRequest(url, { method = 'GET', path = '/', headers = {}, body = null, timeoutMs = 30_000, contentLength = true }) {
  const { hostname, port } = new URL(url);
  const bodyBytes = body === null ? null : Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
  const lines = [`${method} ${path} HTTP/1.1`, `Host: ${hostname}:${port}`, 'Connection: close'];
  for (const [name, value] of Object.entries(headers)) {
    lines.push(`${name}: ${value}`);
  }
  if (bodyBytes !== null && contentLength && !Object.keys(headers).some((h) => /^(content-length|transfer-encoding)$/i.test(h))) {
    lines.push(`Content-Length: ${bodyBytes.length}`);
  }
  const head = Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1');
  return new Promise((resolve) => {
    const chunks = [];
    let settled = false;
    const socket = connect({ host: hostname, port: Number(port) });
    const finish = (result) => {
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        resolve(result);
      }
    };
    const timer = setTimeout(() => finish({ status: null, error: 'timeout' }), timeoutMs);
    socket.on('connect', () => {
      socket.write(bodyBytes === null ? head : Buffer.concat([head, bodyBytes]));
    });
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', (error) => {
      // A reset after a complete answer (the server closing early on a body it refused) still counts as that answer.
      const parsed = parseResponse(Buffer.concat(chunks));
      finish(parsed.status ? parsed : { status: null, error: error.code ?? String(error) });
    });
    socket.on('end', () => finish(parseResponse(Buffer.concat(chunks))));
  });
}

function parseResponse(bytes) {
  const text = bytes.toString('latin1');
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(text);
  if (!match) {
    return { status: 0, headers: {}, body: '' };
  }
  const end = text.indexOf('\r\n\r\n');
  const headers = {};
  for (const line of text.slice(0, end < 0 ? text.length : end).split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0) {
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
  }
  const body = end < 0 ? Buffer.alloc(0) : bytes.subarray(end + 4);
  return { status: Number(match[1]), headers, body: (/chunked/i.test(headers['transfer-encoding'] ?? '') ? unchunk(body) : body).toString('utf8') };
}

/** The payload of a chunked body (as far as it goes). */
function unchunk(bytes) {
  const parts = [];
  let at = 0;
  for (;;) {
    const lineEnd = bytes.indexOf('\r\n', at);
    const size = lineEnd < 0 ? NaN : parseInt(bytes.subarray(at, lineEnd).toString('latin1'), 16);
    if (!(size > 0)) {
      return Buffer.concat(parts);
    }
    parts.push(bytes.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
}

export async function postJson(url, path, body, { timeoutMs = 60_000 } = {}) {
  const response = await fetch(url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: response.status, headers: response.headers, json, text };
}

/**
 * Streams one chat completion and says how it ended:
 * done (data: [DONE] after content), error_done (an error event, then [DONE]), http_<status>
 * (refused before the stream), eof (closed without [DONE]), reset (the connection broke),
 * aborted (we aborted it). `onEvent(count)` is called per data event; `signal` aborts.
 */
export async function streamChat(url, body, { signal, onEvent, timeoutMs = 300_000 } = {}) {
  const started = performance.now();
  const result = { end: null, events: 0, status: null, ms: 0, firstEventMs: null, retryAfter: null, error: null };
  const signals = [AbortSignal.timeout(timeoutMs)];
  if (signal) {
    signals.push(signal);
  }
  try {
    const response = await fetch(url + '/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...body, stream: true }),
      signal: AbortSignal.any(signals),
    });
    result.status = response.status;
    if (response.status !== 200) {
      result.retryAfter = response.headers.get('retry-after');
      result.error = (await response.text()).slice(0, 300);
      result.end = `http_${response.status}`;
      return result;
    }
    const decoder = new TextDecoder();
    let buffer = '';
    let sawError = false;
    for await (const chunk of response.body) {
      buffer += decoder.decode(chunk, { stream: true });
      let split;
      while ((split = buffer.indexOf('\n\n')) >= 0) {
        const event = buffer.slice(0, split);
        buffer = buffer.slice(split + 2);
        const data = event.split('\n').filter((line) => line.startsWith('data:')).map((line) => line.slice(5).trim()).join('\n');
        if (data === '[DONE]') {
          result.end = sawError ? 'error_done' : 'done';
          continue;
        }
        if (result.end) {
          result.end = 'data_after_done';
        }
        if (data.includes('"error"')) {
          try {
            const parsed = JSON.parse(data);
            if (parsed.error) {
              sawError = true;
              result.error = JSON.stringify(parsed.error).slice(0, 300);
            }
          } catch {
            // a token that happens to contain "error"
          }
        }
        result.events++;
        result.firstEventMs ??= performance.now() - started;
        onEvent?.(result.events);
      }
    }
    result.end ??= sawError ? 'error_eof' : 'eof';
  } catch (error) {
    if (signal?.aborted) {
      result.end = 'aborted';
    } else if (error.name === 'TimeoutError') {
      result.end = 'timeout';
    } else {
      result.end = result.end === 'done' ? 'done' : 'reset';
      result.error = String(error.cause?.code ?? error.cause?.message ?? error.message);
    }
  } finally {
    result.ms = performance.now() - started;
  }
  return result;
}

/** Sum of a Prometheus series over the label sets that match `labelFilter` (null when absent). */
export async function metric(url, name, labelFilter = '') {
  const text = await (await fetch(url + '/metrics', { signal: AbortSignal.timeout(10_000) })).text();
  let sum = null;
  for (const line of text.split('\n')) {
    if (line.startsWith(name + '{') || line.startsWith(name + ' ')) {
      const labels = line.slice(name.length, line.lastIndexOf(' '));
      if (labels.includes(labelFilter)) {
        sum = (sum ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1));
      }
    }
  }
  return sum;
}

/** KV bytes that running sequences of `model` hold (serving_kv_cache_used_bytes). */
export const kvUsedBytes = (url, model = 'tiny') => metric(url, 'serving_kv_cache_used_bytes', `gen_ai_request_model="${model}"`);

/** KV used bytes once they reach 0 (polled for up to `timeoutMs`: the engine frees blocks on its next step), else the last value. */
export async function kvUsedAfter(url, model = 'tiny', timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const used = await kvUsedBytes(url, model).catch(() => null);
    if (used === 0 || used === null || Date.now() > deadline) {
      return used;
    }
    await sleep(100);
  }
}

/** Polls until /health/ready answers 200 and `model` generates, within `timeoutMs`. */
export async function isHealthy(url, model = 'tiny', timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const ready = await fetch(url + '/health/ready', { signal: AbortSignal.timeout(5000) });
      await ready.arrayBuffer();
      if (ready.status === 200) {
        const chat = await postJson(url, '/v1/chat/completions', { model, messages: [{ role: 'user', content: 'ping' }], max_tokens: 4 }, { timeoutMs: 10_000 });
        if (chat.status === 200 && chat.json?.choices?.length === 1) {
          return true;
        }
      }
    } catch {
      // retry
    }
    await sleep(250);
  }
  return false;
}

/** Runs `task(i)` for i in [0, count) with at most `concurrency` at once; resolves the results in order. */
export async function pool(count, concurrency, task) {
  const results = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      results[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return results;
}

export function percentile(values, p) {
  if (values.length === 0) {
    return NaN;
  }
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

export const mib = (bytes) => (bytes === null || bytes === undefined ? 'n/a' : `${(bytes / 1048576).toFixed(0)} MiB`);

/** `{a: 3, b: 1}` → `a:3 b:1`, keys sorted. */
export const histogram = (counts) => Object.keys(counts).sort().map((key) => `${key}:${counts[key]}`).join(' ');

export function count(items, keyOf) {
  const counts = {};
  for (const item of items) {
    const key = keyOf(item);
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}
