// 5. kill -9 during uploads: batches of images go to a collection (JSON and multipart, four
// uploaders at once), the server is killed with SIGKILL mid-way and started again on the same
// data directory. Pass: every acknowledged batch is there completely, every interrupted batch is
// there completely or not at all, the collection's count matches, and the store opens healthy.
import { count, histogram, pool, postJson, rawRequest, sleep } from '../lib/http.mjs';
import { png } from '../lib/png.mjs';
import { newDataDirectory } from '../lib/server.mjs';

export const name = 'crash';
export const title = 'kill -9 during uploads';

const COLLECTION = 'crash';
export const BATCH = 8;
const UPLOADERS = 4;

/** Batch `batch` of BATCH images (ids `b<batch>-<k>`, metadata {batch, k}): JSON for even numbers, multipart for odd. */
export function body(batch) {
  const ids = Array.from({ length: BATCH }, (_, k) => `b${batch}-${k}`);
  const metadata = ids.map((_, k) => ({ batch, k }));
  const images = ids.map((_, k) => png(batch * BATCH + k));
  if (batch % 2 === 0) {
    return {
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ items: ids.map((id, k) => ({ id, image: `data:image/png;base64,${images[k].toString('base64')}`, metadata: metadata[k] })) }),
      ids,
    };
  }
  const boundary = `crash${batch}`;
  const part = (head, content) => [Buffer.from(`--${boundary}\r\n${head}\r\n\r\n`), Buffer.from(content), Buffer.from('\r\n')];
  const parts = [
    ...images.flatMap((image, k) => part(`Content-Disposition: form-data; name="files"; filename="${ids[k]}.png"\r\nContent-Type: image/png`, image)),
    ...part('Content-Disposition: form-data; name="ids"', JSON.stringify(ids)),
    ...part('Content-Disposition: form-data; name="metadata"', JSON.stringify(metadata)),
    Buffer.from(`--${boundary}--\r\n`),
  ];
  return { headers: { 'Content-Type': `multipart/form-data; boundary=${boundary}` }, body: Buffer.concat(parts), ids };
}

async function upload(url, batches, until) {
  const path = `/v1/collections/${COLLECTION}/items`;
  const loop = async () => {
    while (Date.now() < until()) {
      const batch = { number: batches.length, state: 'sent' };
      batches.push(batch);
      const request = body(batch.number);
      batch.ids = request.ids;
      const response = await rawRequest(url, { method: 'POST', path, headers: request.headers, body: request.body, timeoutMs: 60_000 });
      if (response.status === 200) {
        let ids = null;
        try {
          ids = JSON.parse(response.body).ids;
        } catch {
          // reported as acked_wrong_ids
        }
        batch.state = JSON.stringify(ids) === JSON.stringify(request.ids) ? 'acked' : 'acked_wrong_ids';
      } else {
        // Anything but 200 ends this uploader: no answer is the kill; an answer other than 200 is reported.
        batch.state = response.status ? `refused_${response.status}` : 'interrupted';
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: UPLOADERS }, loop));
}

async function present(url, batch) {
  const found = await Promise.all(batch.ids.map(async (id) => {
    const response = await fetch(`${url}/v1/collections/${COLLECTION}/items/${encodeURIComponent(id)}`);
    const json = response.status === 200 ? await response.json() : (await response.arrayBuffer(), null);
    return json?.metadata?.batch === batch.number ? 1 : 0;
  }));
  return found.reduce((a, b) => a + b, 0);
}

export async function run(ctx) {
  if (!ctx.managed) {
    return { pass: null, figures: 'skipped: needs a server the runner starts (it kills it)' };
  }
  const cycles = ctx.short ? 1 : 3;
  const uploadMs = ctx.short ? 2500 : 6000;
  const server = await ctx.startServer({ label: 'crash', dataDirectory: newDataDirectory('crash') });
  const made = await postJson(server.url, '/v1/collections', { name: COLLECTION, model: 'clip-tiny' });
  if (made.status !== 201) {
    return { pass: false, figures: `could not create the collection: ${made.status} ${made.text.slice(0, 200)}` };
  }
  const batches = [];
  const problems = [];
  let restartMs = 0;
  let readyStatus = null;
  for (let cycle = 0; cycle < cycles; cycle++) {
    let killed = false;
    const uploading = upload(server.url, batches, () => (killed ? 0 : Infinity));
    await sleep(uploadMs);
    await server.kill();
    killed = true;
    await uploading;
    const t0 = performance.now();
    await server.start();
    restartMs = performance.now() - t0;
    const ready = await fetch(`${server.url}/health/ready`);
    readyStatus = (await ready.json()).status;
    if (readyStatus !== 'ready') {
      problems.push(`cycle ${cycle}: /health/ready says ${readyStatus}`);
    }
  }

  const counts = await pool(batches.length, 8, (i) => present(server.url, batches[i]));
  let expected = 0;
  let partial = 0;
  let missing = 0;
  for (const [i, batch] of batches.entries()) {
    const found = counts[i];
    expected += found === BATCH ? BATCH : 0;
    if (found !== 0 && found !== BATCH) {
      partial++;
      problems.push(`batch ${batch.number} (${batch.state}) is partial: ${found}/${BATCH} items`);
    } else if (batch.state.startsWith('acked') && found !== BATCH) {
      missing++;
      problems.push(`batch ${batch.number} was acknowledged but is missing`);
    } else if (batch.state !== 'acked' && batch.state !== 'interrupted') {
      problems.push(`batch ${batch.number}: ${batch.state}`);
    }
  }
  const collection = await (await fetch(`${server.url}/v1/collections/${COLLECTION}`)).json();
  if (collection.count !== expected) {
    problems.push(`the collection counts ${collection.count} items, the complete batches hold ${expected}`);
  }
  const search = await postJson(server.url, `/v1/collections/${COLLECTION}/search`, { text: 'a picture', top_k: 5 });
  if (search.status !== 200) {
    problems.push(`search after restart: ${search.status}`);
  }
  for (const problem of problems) {
    ctx.detail(`crash: ${problem}`);
  }
  const states = count(batches, (b) => b.state);
  const interrupted = batches.filter((b) => b.state === 'interrupted');
  const interruptedStored = interrupted.filter((b) => counts[b.number] === BATCH).length;
  const acked = states.acked ?? 0;
  await server.stop();
  return {
    pass: problems.length === 0 && acked > 0,
    figures: `${cycles} kill -9 cycle(s), ${batches.length} batches of ${BATCH} images (${histogram(states)}): ${missing} acknowledged missing, ${partial} partial, ` +
      `${interruptedStored}/${interrupted.length} interrupted batches stored whole; count ${collection.count} = ${expected} expected; ` +
      `restart to ready ${restartMs.toFixed(0)} ms, health '${readyStatus}'${problems.length ? `; first problem: ${problems[0]}` : ''}`,
  };
}
