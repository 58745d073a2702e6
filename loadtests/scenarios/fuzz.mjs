// 1. Bad-input fuzzer: generated bad requests on every route (wrong types, missing fields, huge
// numbers, duplicate keys, bad UTF-8, wrong content types, malformed multipart, path tricks).
// Pass: no 5xx, no request left unanswered past its timeout, and the server healthy after.
import { count, histogram, isHealthy, kvUsedAfter, pool, postJson, rawRequest, sleep } from '../lib/http.mjs';
import { png, pngDataUrl } from '../lib/png.mjs';

export const name = 'fuzz';
export const title = 'bad-input fuzzer';

const COLLECTION = 'fuzz';
const SENTINEL = 'BAD_VALUE_SENTINEL_7f3a';

/** Values that replace a field, as raw JSON text (so 1e400, -0 and lone surrogates can be sent). */
const BAD_VALUES = [
  'null', 'true', '0', '-1', '1.5', '-0', '1e400', '-1e400', '9223372036854775808', '-9223372036854775809',
  '2147483648', '""', '"x"', '"\\ud800"', '[]', '{}', '[null]', '[[[[1]]]]', '{"a":{"b":[1,{"c":null}]}}',
  `"${'a'.repeat(100_000)}"`, `[${Array(10_000).fill('2147483647').join(',')}]`,
];

function routes(image) {
  return [
    {
      path: '/v1/chat/completions',
      body: {
        model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, temperature: 0.5, top_p: 0.9, n: 1, seed: 1,
        stop: ['x'], logprobs: true, top_logprobs: 2, stream: false, kv_policy: 'none', kv_budget: 256,
        presence_penalty: 0, frequency_penalty: 0, top_k: 5, min_p: 0, repetition_penalty: 1, stop_token_ids: [1], ignore_eos: false,
        max_completion_tokens: 4,
      },
      nested: [['messages', 0], ['messages', 0, 'role'], ['messages', 0, 'content'], ['stop', 0]],
    },
    {
      path: '/v1/chat/completions',
      body: { model: 'tiny', messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: [{ type: 'text', text: 'hi' }] }], max_tokens: 4, stream: true, stream_options: { include_usage: true } },
      nested: [['messages', 1, 'content', 0], ['messages', 1, 'content', 0, 'type'], ['messages', 1, 'content', 0, 'text'], ['stream_options', 'include_usage']],
    },
    {
      path: '/v1/completions',
      body: { model: 'tiny', prompt: 'hi', max_tokens: 4, echo: false, logprobs: 0, n: 1, best_of: 1, suffix: null, temperature: 0, seed: 3 },
      nested: [],
    },
    {
      path: '/v1/embeddings',
      body: { model: 'clip-tiny', input: ['a red circle', { type: 'image_url', image_url: { url: image } }], encoding_format: 'float', dimensions: 32, user: 'u' },
      nested: [['input', 0], ['input', 1], ['input', 1, 'type'], ['input', 1, 'image_url'], ['input', 1, 'image_url', 'url']],
    },
    { path: '/tokenize', body: { model: 'tiny', prompt: 'hi', add_special_tokens: true }, nested: [] },
    { path: '/tokenize', body: { model: 'tiny', messages: [{ role: 'user', content: 'hi' }] }, nested: [['messages', 0], ['messages', 0, 'content']] },
    { path: '/detokenize', body: { model: 'tiny', tokens: [2, 3, 4] }, nested: [['tokens', 0]] },
    {
      path: '/v1/collections',
      body: { name: 'fuzz-made', model: 'clip-tiny', debias: { method: 'wring', concepts: [{ name: 'bg', groups: [['a', 'b'], ['c', 'd']] }] } },
      nested: [['debias', 'method'], ['debias', 'concepts'], ['debias', 'concepts', 0, 'groups'], ['debias', 'concepts', 0, 'groups', 0]],
    },
    {
      path: `/v1/collections/${COLLECTION}/items`,
      body: { items: [{ id: 'item-1', image, metadata: { kind: 'a' } }] },
      nested: [['items', 0], ['items', 0, 'id'], ['items', 0, 'image'], ['items', 0, 'metadata']],
    },
    {
      path: `/v1/collections/${COLLECTION}/search`,
      body: { text: 'a red circle', top_k: 3, filter: { kind: 'a' }, debias: null },
      nested: [['filter', 'kind']],
    },
    { path: `/v1/collections/${COLLECTION}/search`, body: { vector: Array(16).fill(0.1), top_k: 1 }, nested: [['vector', 0]] },
  ];
}

/** JSON text of `body` with the value at `path` replaced by raw `value` (undefined: removed). */
function mutate(body, path, value) {
  const copy = structuredClone(body);
  let parent = copy;
  for (const key of path.slice(0, -1)) {
    parent = parent[key];
  }
  const last = path.at(-1);
  if (value === undefined) {
    if (Array.isArray(parent)) {
      parent.splice(last, 1);
    } else {
      delete parent[last];
    }
    return JSON.stringify(copy);
  }
  parent[last] = SENTINEL;
  return JSON.stringify(copy).replace(`"${SENTINEL}"`, () => value);
}

const JSON_TYPE = { 'Content-Type': 'application/json' };

function jsonCases(route) {
  const cases = [];
  const add = (what, body, headers = JSON_TYPE) => cases.push({ what: `${route.path} ${what}`, method: 'POST', path: route.path, headers, body });
  const fields = [...Object.keys(route.body).map((key) => [key]), ...route.nested];
  for (const field of fields) {
    add(`without ${field.join('.')}`, mutate(route.body, field, undefined));
    for (const value of BAD_VALUES) {
      add(`${field.join('.')}=${value.slice(0, 24)}`, mutate(route.body, field, value));
    }
  }
  const valid = JSON.stringify(route.body);
  const firstKey = Object.keys(route.body)[0];
  add('empty body', '');
  add('truncated', valid.slice(0, Math.floor(valid.length / 2)));
  add('top-level null', 'null');
  add('top-level array', `[${valid}]`);
  add('top-level number', '1');
  add('top-level string', '"x"');
  add('trailing garbage', valid + '}');
  add('two objects', valid + valid);
  add('comment', '/* c */' + valid);
  add('trailing comma', valid.slice(0, -1) + ',}');
  add('single quotes', valid.replaceAll('"', "'"));
  add('duplicate key, other type', `{"${firstKey}":12345,${valid.slice(1)}`);
  add('duplicate key, same value', `${valid.slice(0, -1)},"${firstKey}":${JSON.stringify(route.body[firstKey])}}`);
  add('unknown field', `${valid.slice(0, -1)},"no_such_field":{"x":[1]}}`);
  add('deep nesting', `${valid.slice(0, -1)},"deep":${'['.repeat(5000)}${']'.repeat(5000)}}`);
  add('bad UTF-8 in a string', Buffer.concat([Buffer.from(valid.slice(0, -1) + ',"u":"'), Buffer.from([0xc3, 0x28, 0xff, 0xfe]), Buffer.from('"}')]));
  add('overlong UTF-8', Buffer.concat([Buffer.from(valid.slice(0, -1) + ',"u":"'), Buffer.from([0xc0, 0xaf, 0xe0, 0x80, 0xaf]), Buffer.from('"}')]));
  add('UTF-8 surrogate bytes', Buffer.concat([Buffer.from(valid.slice(0, -1) + ',"u":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')]));
  add('UTF-8 BOM', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(valid)]));
  add('UTF-16 body', Buffer.from(valid, 'utf16le'), { 'Content-Type': 'application/json; charset=utf-16' });
  add('NUL bytes', valid.replace(':', ':\u0000'));
  for (const type of ['text/plain', 'application/xml', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json; charset=latin1', 'application/json;;;', 'application/jsonx', '*/*', '']) {
    add(`Content-Type '${type}'`, valid, { 'Content-Type': type });
  }
  add('no Content-Type', valid, {});
  add('Content-Length not a number', valid, { ...JSON_TYPE, 'Content-Length': 'abc' });
  add('Content-Length negative', valid, { ...JSON_TYPE, 'Content-Length': '-1' });
  add('Content-Length shorter than the body', valid, { ...JSON_TYPE, 'Content-Length': String(Math.floor(valid.length / 2)) });
  add('bad chunked encoding', `5\r\n{"a":\r\nZZ\r\n`, { ...JSON_TYPE, 'Transfer-Encoding': 'chunked' });
  add('chunked and Content-Length', `${valid.length.toString(16)}\r\n${valid}\r\n0\r\n\r\n`, { ...JSON_TYPE, 'Transfer-Encoding': 'chunked', 'Content-Length': '3' });
  add('Content-Encoding gzip, not gzip', valid, { ...JSON_TYPE, 'Content-Encoding': 'gzip' });
  add('32 KB header', valid, { ...JSON_TYPE, 'X-Big': 'h'.repeat(32_000) });
  add('bad Authorization', valid, { ...JSON_TYPE, Authorization: 'Bearer \u00ff\u00fe' });
  return cases;
}

function multipart(boundary, parts, close = true) {
  const chunks = [];
  for (const part of parts) {
    chunks.push(Buffer.from(`--${boundary}\r\n${part.head}\r\n\r\n`, 'latin1'), Buffer.isBuffer(part.body) ? part.body : Buffer.from(part.body), Buffer.from('\r\n'));
  }
  if (close) {
    chunks.push(Buffer.from(`--${boundary}--\r\n`));
  }
  return Buffer.concat(chunks);
}

/** A PNG whose header claims width×height but whose data is a 1×1 image (decoders must check the header first). */
function pngClaiming(width, height) {
  const bytes = Buffer.from(png(1, 1));
  bytes.writeUInt32BE(width, 16);
  bytes.writeUInt32BE(height, 20);
  return bytes;
}

function multipartCases() {
  const path = `/v1/collections/${COLLECTION}/items`;
  const file = (body, filename = 'a.png', type = 'image/png') => ({ head: `Content-Disposition: form-data; name="files"; filename="${filename}"\r\nContent-Type: ${type}`, body });
  const field = (fieldName, body) => ({ head: `Content-Disposition: form-data; name="${fieldName}"`, body });
  const image = png(2);
  const b = 'fuzzboundary';
  const type = { 'Content-Type': `multipart/form-data; boundary=${b}` };
  const cases = [
    ['no boundary', { 'Content-Type': 'multipart/form-data' }, multipart(b, [file(image)])],
    ['other boundary', { 'Content-Type': 'multipart/form-data; boundary=other' }, multipart(b, [file(image)])],
    ['no closing boundary', type, multipart(b, [file(image)], false)],
    ['cut inside a part', type, multipart(b, [file(image)]).subarray(0, 80)],
    ['no parts', type, Buffer.from(`--${b}--\r\n`)],
    ['empty body', type, Buffer.alloc(0)],
    ['text file', type, multipart(b, [file('not an image', 'a.txt', 'text/plain')])],
    ['empty file', type, multipart(b, [file(Buffer.alloc(0))])],
    ['truncated PNG', type, multipart(b, [file(image.subarray(0, 40))])],
    ['PNG claiming 100000×100000', type, multipart(b, [file(pngClaiming(100_000, 100_000))])],
    ['PNG claiming 1×10000', type, multipart(b, [file(pngClaiming(1, 10_000))])],
    ['PNG claiming 0×0', type, multipart(b, [file(pngClaiming(0, 0))])],
    ['PNG claiming 2^31×2^31', type, multipart(b, [file(pngClaiming(0x80000000, 0x80000000))])],
    ['metadata not JSON', type, multipart(b, [file(image), field('metadata', '{not json')])],
    ['metadata count mismatch', type, multipart(b, [file(image), field('metadata', '[{"a":1},{"b":2}]')])],
    ['metadata not objects', type, multipart(b, [file(image), field('metadata', '[1]')])],
    ['ids with ..', type, multipart(b, [file(image), field('ids', '[".."]')])],
    ['ids with /', type, multipart(b, [file(image), field('ids', '["a/../../b"]')])],
    ['ids with NUL', type, multipart(b, [file(image), field('ids', '["a\\u0000b"]')])],
    ['ids not an array', type, multipart(b, [file(image), field('ids', '"x"')])],
    ['ids numbers', type, multipart(b, [file(image), field('ids', '[1]')])],
    ['ids duplicated', type, multipart(b, [file(image), file(image), field('ids', '["d","d"]')])],
    ['part without Content-Disposition', type, multipart(b, [{ head: 'Content-Type: image/png', body: image }])],
    ['filename with path', type, multipart(b, [file(image, '../../../../etc/passwd')])],
    ['100 files (over the per-request limit)', type, multipart(b, Array.from({ length: 100 }, () => file(image)))],
    ['1000 empty fields', type, multipart(b, Array.from({ length: 1000 }, (_, i) => field(`f${i}`, '')))],
    ['boundary of 200 characters', { 'Content-Type': `multipart/form-data; boundary=${'q'.repeat(200)}` }, multipart('q'.repeat(200), [file(image)])],
    ['nested multipart/mixed', type, multipart(b, [{ head: 'Content-Disposition: form-data; name="files"\r\nContent-Type: multipart/mixed; boundary=inner', body: multipart('inner', [file(image)]) }])],
    ['bad UTF-8 in the part header', type, multipart(b, [{ head: Buffer.from([0x43, 0xff, 0xfe]).toString('latin1') + ': x\r\nContent-Disposition: form-data; name="files"; filename="a.png"', body: image }])],
    ['header line of 20 KB', type, multipart(b, [{ head: `Content-Disposition: form-data; name="files"; filename="${'n'.repeat(20_000)}.png"`, body: image }])],
  ];
  return cases.map(([what, headers, body]) => ({ what: `${path} multipart ${what}`, method: 'POST', path, headers, body }));
}

function pathCases() {
  const c = COLLECTION;
  const gets = [
    '/v1/collections/..', '/v1/collections/%2E%2E', '/v1/collections/%2e%2e/%2e%2e/etc/passwd', '/v1/collections/..%2F..%2Fetc%2Fpasswd',
    `/v1/collections/${c}/items/..`, `/v1/collections/${c}/items/%2E%2E`, `/v1/collections/${c}/items/..%2F..%2Fretrieval.db`,
    `/v1/collections/${c}/items/%2F`, `/v1/collections/${c}/items/%5C..%5C..%5C`, `/v1/collections/${c}/items/.`, `/v1/collections/${c}/items/%2e`,
    '/v1/models/..%2F..%2Fmodels', '/v1/models/%2E%2E%2Fkjv-gemma3', '/v1/models/tiny%00', '/v1/collections/%00', `/v1/collections/${c}/items/a%00b`,
    '/v1/collections/%C0%AE%C0%AE', '/v1/collections/%FF%FE', '/v1/collections/%ZZ', '/v1/collections/%', '/v1/collections/%E2%80%AE',
    '//v1//models', '/v1/./models', '/v1/models/../models', '/./health/ready', '/health/ready/..', '/health/%2E%2E/ready',
    `/v1/collections/${'a'.repeat(5000)}`, `/v1/collections/${c}/items/${'b'.repeat(300)}`, `/v1/collections/${c}/items/item-1?include_vector=maybe`,
    `/v1/collections/${c}/items/item-1?include_vector=true&include_vector=false`, `/v1/collections/${c}/items/item-1?include_vector=%00`,
    '/v1/models?x=%ZZ', '/v1/collections/CON', `/v1/collections/${c}%2Fitems`, '/dashboard/../appsettings.json', '/dashboard/%2E%2E/appsettings.json',
    '/dashboard/..%2Fappsettings.json', '/dashboard/%2e%2e%2f%2e%2e%2fServing.Server.dll', '/metrics/..', '/swagger/../../etc/passwd',
    '/v1/chat/completions/..', `/v1/collections/${c}/search/..`, 'v1/models', '/v1/models#frag', '/v1/mod\u00e9ls', '/%u002e%u002e/etc/passwd',
    `/${'../'.repeat(40)}etc/passwd`, `/${'%2e%2e/'.repeat(40)}etc/passwd`,
  ];
  const cases = gets.map((path) => ({ what: `GET ${path.slice(0, 60)}`, method: 'GET', path }));
  for (const [method, path] of [
    ['DELETE', '/v1/collections/%2E%2E'], ['DELETE', `/v1/collections/${c}/items/%2E%2E`], ['DELETE', `/v1/collections/${c}/items/..%2F..`],
    ['DELETE', '/v1/collections/..%2F..'], ['POST', '/v1/collections/%2E%2E/items'], ['POST', '/v1/collections/%2E%2E/search'],
    ['POST', '/v1/collections/..%2Fx/items'], ['DELETE', `/v1/collections/${c}/items/.`],
  ]) {
    cases.push({ what: `${method} ${path}`, method, path, headers: JSON_TYPE, body: '{"items":[],"text":"x"}' });
  }
  cases.push({ what: 'absolute-form target', method: 'GET', path: 'http://evil.example/v1/models' });
  cases.push({ what: 'OPTIONS *', method: 'OPTIONS', path: '*' });
  cases.push({ what: 'CONNECT', method: 'CONNECT', path: 'example.com:443' });
  return cases;
}

function methodCases() {
  const cases = [];
  const post = ['/v1/chat/completions', '/v1/completions', '/v1/embeddings', '/tokenize', '/detokenize', `/v1/collections/${COLLECTION}/items`, `/v1/collections/${COLLECTION}/search`];
  const get = ['/v1/models', '/v1/models/tiny', '/health/live', '/health/ready', '/metrics', '/v1/collections', `/v1/collections/${COLLECTION}`, `/v1/collections/${COLLECTION}/items/item-1`, '/dashboard'];
  for (const path of post) {
    for (const method of ['GET', 'PUT', 'PATCH', 'HEAD', 'FOO']) {
      cases.push({ what: `${method} ${path}`, method, path });
    }
  }
  for (const path of get) {
    for (const method of ['POST', 'PUT', 'TRACE']) {
      cases.push({ what: `${method} ${path}`, method, path, headers: JSON_TYPE, body: '{}' });
    }
  }
  return cases;
}

export async function run(ctx) {
  const { url } = ctx;
  const image = pngDataUrl(7);
  // A collection the item, search and path cases aim at (created fresh; a leftover from an earlier run is reused).
  const made = await postJson(url, '/v1/collections', { name: COLLECTION, model: 'clip-tiny' });
  if (made.status !== 201 && made.status !== 409) {
    return { pass: false, figures: `could not create the collection '${COLLECTION}': ${made.status} ${made.text.slice(0, 200)}` };
  }
  await postJson(url, `/v1/collections/${COLLECTION}/items`, { items: [{ id: 'item-1', image, metadata: { kind: 'a' } }] });

  const cases = [...routes(image).flatMap(jsonCases), ...multipartCases(), ...pathCases(), ...methodCases()];
  const results = await pool(cases.length, 4, async (i) => ({ ...cases[i], response: await rawRequest(url, { ...cases[i], timeoutMs: 60_000 }) }));

  const statuses = count(results, (r) => (r.response.status === null ? r.response.error : r.response.status === 0 ? 'no-answer' : String(r.response.status)));
  const serverErrors = results.filter((r) => r.response.status >= 500);
  const unanswered = results.filter((r) => r.response.status === null && r.response.error === 'timeout');
  const closedWithout = results.filter((r) => r.response.status === 0 || (r.response.status === null && r.response.error !== 'timeout'));
  await sleep(500);
  const healthy = await isHealthy(url);
  const kv = await kvUsedAfter(url);
  const collectionKept = (await fetch(`${url}/v1/collections/${COLLECTION}`)).status === 200;
  const alive = ctx.server ? ctx.server.isRunning : true;
  const errorLogs = ctx.server ? ctx.server.errorLogLines().length : null;

  for (const r of [...serverErrors, ...unanswered]) {
    ctx.detail(`fuzz: ${r.response.status ?? r.response.error} ← ${r.what.slice(0, 160)} ${r.response.body ? '→ ' + r.response.body.slice(0, 200) : ''}`);
  }
  for (const r of results.filter((r) => r.response.status >= 200 && r.response.status < 300)) {
    ctx.detail(`fuzz: accepted (${r.response.status}) ← ${r.what.slice(0, 160)}`);
  }
  for (const r of closedWithout) {
    ctx.detail(`fuzz: closed without an answer (${r.response.error ?? 'eof'}) ← ${r.what.slice(0, 160)}`);
  }
  const pass = serverErrors.length === 0 && unanswered.length === 0 && healthy && alive && collectionKept && (kv === null || kv === 0);
  return {
    pass,
    figures: `${results.length} bad requests, ${serverErrors.length} × 5xx, ${unanswered.length} unanswered in 60 s, ${closedWithout.length} closed without answer; ` +
      `statuses ${histogram(statuses)}; healthy after: ${healthy && alive ? 'yes' : 'NO'}, collection intact: ${collectionKept ? 'yes' : 'NO'}, ` +
      `KV used after: ${kv ?? 'n/a'} B${errorLogs === null ? '' : `, error log lines: ${errorLogs}`}`,
  };
}
