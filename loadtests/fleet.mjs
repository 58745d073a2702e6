// The fleet test (issue 19, item 5; docs/deploy.md, "The fleet"): three replicas sharing one
// PostgreSQL store behind HAProxy (round robin, health from the traffic itself), all on loopback.
// Prints one PASS / FAIL line per check with its figures; exit code 1 when any fails.
// Usage: node loadtests/fleet.mjs --dll PATH --connection-string CS [--keep-data]
// (loadtests/fleet.sh builds the server, starts a throwaway PostgreSQL and passes both).
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { percentile, postJson, rawRequest, sleep } from './lib/http.mjs';
import { ServerProcess, freePort, newDataDirectory } from './lib/server.mjs';
import { BATCH, body } from './scenarios/crash.mjs';

const REPLICAS = 3;
/** The issue's bound: every replica's search sees an acknowledged batch within this. */
const VISIBLE_WITHIN_MS = 1000;
const UPLOADERS = 3;
const CHATTERS = 4;

const { values: args } = parseArgs({
  options: {
    dll: { type: 'string' },
    'connection-string': { type: 'string' },
    'keep-data': { type: 'boolean', default: false },
  },
});
const work = mkdtempSync(join(tmpdir(), 'serving-fleet-'));
const detail = (line) => appendFileSync(join(work, 'details.log'), `${new Date().toISOString()} ${line}\n`);
const settings = { KvCacheBytes: 128 << 20, 'Retrieval:Store': 'postgres', 'Retrieval:ConnectionString': args['connection-string'] };
const replicas = [];
let balancer = null;

/**
 * HAProxy in front of the replicas: round robin; `observe layer4` with `on-error mark-down` takes a
 * replica out at its first failed connection (passive), the 1 s check on /health/ready (which
 * HAProxy needs before it can observe) brings it back; a request whose connection is refused is
 * sent to another replica (`option redispatch`), one already sent is never repeated.
 * `X-Replica` names the replica that answered.
 */
function haproxyConfig(port) {
  return `global
  maxconn 512
defaults
  mode http
  timeout connect 2s
  timeout client 120s
  timeout server 120s
  retries 2
  option redispatch 1
frontend fleet
  bind 127.0.0.1:${port}
  default_backend replicas
backend replicas
  balance roundrobin
  http-reuse never
  option httpchk GET /health/ready
  http-response set-header X-Replica %s
  default-server check inter 1s fall 2 rise 1 observe layer4 error-limit 1 on-error mark-down
${replicas.map((r, i) => `  server r${i} 127.0.0.1:${r.fixedPort}`).join('\n')}
`;
}

async function startBalancer() {
  const port = await freePort();
  const config = join(work, 'haproxy.cfg');
  writeFileSync(config, haproxyConfig(port));
  const check = spawnSync('haproxy', ['-c', '-q', '-f', config], { encoding: 'utf8' });
  if (check.status !== 0) {
    throw new Error(`haproxy refuses ${config}: ${check.stderr}`);
  }
  balancer = spawn('haproxy', ['-db', '-f', config], { stdio: ['ignore', 'ignore', 'ignore'] });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    const answer = await rawRequest(url, { path: '/health/live', timeoutMs: 1000 });
    if (answer.status === 200) {
      return url;
    }
    await sleep(100);
  }
  throw new Error('haproxy did not answer');
}

/** The hits of batch `number` in the replica's own index (search by vector, filtered on the batch). */
async function indexed(url, collection, dimension, number) {
  const vector = Array.from({ length: dimension }, (_, i) => (i === 0 ? 1 : 0));
  const answer = await postJson(url, `/v1/collections/${collection}/search`, { vector, top_k: BATCH, filter: { batch: number } });
  return answer.status === 200 ? answer.json.hits.length : -1;
}

/** Ms until `test()` holds, polled every 5 ms; null past `limitMs`. */
async function until(test, limitMs = 15_000) {
  const t0 = performance.now();
  while (performance.now() - t0 < limitMs) {
    if (await test()) {
      return performance.now() - t0;
    }
    await sleep(5);
  }
  return null;
}

async function createEverywhere(lb, name) {
  const made = await postJson(lb, '/v1/collections', { name, model: 'clip-tiny' });
  if (made.status !== 201) {
    throw new Error(`creating ${name}: ${made.status} ${made.text.slice(0, 200)}`);
  }
  await Promise.all(replicas.map((r) => until(async () => (await fetch(`${r.url}/v1/collections/${name}`)).status === 200)));
  return made.json.dimension;
}

async function upload(lb, collection, number) {
  const request = body(number);
  return rawRequest(lb, { method: 'POST', path: `/v1/collections/${collection}/items`, headers: request.headers, body: request.body, timeoutMs: 60_000 });
}

/** Batches uploaded one after another through the balancer; per replica, the ms from the 200 until its search finds the batch. */
async function visibility(lb) {
  const dimension = await createEverywhere(lb, 'seen');
  // One search per replica first: the first search of a process JIT-compiles its path (~250 ms in
  // Debug), which would be counted as replication delay.
  await Promise.all(replicas.map((r) => indexed(r.url, 'seen', dimension, -1)));
  const delays = [];
  const problems = [];
  for (let number = 0; number < 12; number++) {
    const answer = await upload(lb, 'seen', number);
    if (answer.status !== 200) {
      problems.push(`batch ${number}: ${answer.status}`);
      continue;
    }
    const ms = await Promise.all(replicas.map((r) => until(async () => (await indexed(r.url, 'seen', dimension, number)) === BATCH)));
    delays.push(...ms.map((m) => m ?? Infinity));
    detail(`visibility: batch ${number} seen after ${ms.map((m) => (m === null ? 'never' : `${m.toFixed(0)} ms`)).join(', ')} (r0, r1, r2)`);
  }
  const late = delays.filter((ms) => ms > VISIBLE_WITHIN_MS).length;
  const figures = `${delays.length} batch×replica sightings: median ${percentile(delays, 50).toFixed(0)} ms, p95 ${percentile(delays, 95).toFixed(0)} ms, `
    + `max ${Math.max(...delays).toFixed(0)} ms (limit ${VISIBLE_WITHIN_MS} ms); ${late} late${problems.length ? `; ${problems.join(', ')}` : ''}`;
  return { name: 'visibility', title: 'an upload through the balancer is in every replica\'s search', pass: late === 0 && problems.length === 0, figures };
}

/** Loops `task` until `stop()`, recording each call's start, end, status and replica. */
async function loop(task, stop, log) {
  while (!stop()) {
    const entry = { started: performance.now() };
    log.push(entry);
    Object.assign(entry, await task(), { ended: performance.now() });
  }
}

async function chat(lb) {
  try {
    const answer = await postJson(lb, '/v1/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 24 }, { timeoutMs: 60_000 });
    return { status: answer.status, replica: answer.headers.get('x-replica') };
  } catch (error) {
    return { status: null, error: String(error.cause?.code ?? error.message) };
  }
}

/** kill -9 one replica during a stream of uploads and chats through the balancer; then start it again. */
async function killDuringTraffic(lb) {
  const dimension = await createEverywhere(lb, 'stream');
  const uploads = [];
  const chats = [];
  let next = 0;
  let stopping = false;
  const stop = () => stopping;
  const uploadTask = async () => {
    const number = next++;
    const answer = await upload(lb, 'stream', number);
    return { number, status: answer.status, replica: answer.headers?.['x-replica'] };
  };
  const traffic = [
    ...Array.from({ length: UPLOADERS }, () => loop(uploadTask, stop, uploads)),
    ...Array.from({ length: CHATTERS }, () => loop(() => chat(lb), stop, chats)),
  ];
  await sleep(3000);
  const victim = replicas[1];
  // The process takes a few ms to die after SIGKILL (its socket still accepts meanwhile): it is
  // dead once the exit is seen, and a request sent before then may have reached it.
  const signalledAt = performance.now();
  await victim.kill();
  const killedAt = performance.now();
  await sleep(4000);
  stopping = true;
  await Promise.all(traffic);

  const results = [];
  // Uploads: every acknowledged batch whole on every surviving replica, no batch partial anywhere.
  const survivors = replicas.filter((r) => r !== victim);
  const counts = await Promise.all(uploads.map(async (u) => Promise.all(survivors.map((r) => indexed(r.url, 'stream', dimension, u.number)))));
  const acked = uploads.filter((u) => u.status === 200);
  const missing = acked.filter((u) => counts[uploads.indexOf(u)].some((c) => c !== BATCH));
  const inFlight = [...uploads, ...chats].filter((e) => e.started < killedAt && e.ended > signalledAt).length;
  const partial = uploads.filter((u, i) => counts[i].some((c) => c !== 0 && c !== BATCH));
  const failedUploads = uploads.filter((u) => u.status !== 200);
  const lateUploadFailures = failedUploads.filter((u) => u.started > killedAt);
  for (const u of [...missing, ...partial, ...lateUploadFailures]) {
    detail(`upload batch ${u.number}: status ${u.status}, replica ${u.replica}, counts ${counts[uploads.indexOf(u)]}, started ${(u.started - killedAt).toFixed(0)} ms after the kill`);
  }
  results.push({
    name: 'kill-uploads',
    title: 'kill -9 a replica during uploads',
    pass: acked.length > 0 && missing.length === 0 && partial.length === 0 && lateUploadFailures.length === 0,
    figures: `${uploads.length} batches of ${BATCH}: ${acked.length} acknowledged, all whole on both survivors: ${missing.length === 0}; `
      + `${partial.length} partial; ${failedUploads.length} failed (${lateUploadFailures.length} of them sent after the replica's exit)`,
  });

  const failedChats = chats.filter((c) => c.status !== 200);
  const lateChatFailures = failedChats.filter((c) => c.started > killedAt);
  const afterKill = chats.filter((c) => c.started > killedAt);
  for (const c of failedChats) {
    detail(`chat: status ${c.status} ${c.error ?? ''}, started ${(c.started - killedAt).toFixed(0)} ms after the replica's exit`);
  }
  results.push({
    name: 'kill-chat',
    title: 'chat through the balancer while a replica dies',
    pass: lateChatFailures.length === 0 && afterKill.length > 0 && failedUploads.length + failedChats.length <= inFlight,
    figures: `${chats.length} chats, ${failedChats.length} failed (${lateChatFailures.length} sent after the replica's exit, ${(killedAt - signalledAt).toFixed(0)} ms after SIGKILL); `
      + `${afterKill.length} sent after it all answered: ${lateChatFailures.length === 0}; requests in flight while it died: ${inFlight}, `
      + `failed uploads + chats: ${failedUploads.length + failedChats.length}`,
  });

  results.push(await restart(lb, victim, survivors[0], dimension, acked));
  return results;
}

/** The killed replica starts again on its port: it loads the store, follows it, and the balancer sends it traffic again. */
async function restart(lb, victim, peer, dimension, acked) {
  const t0 = performance.now();
  await victim.start();
  const readyMs = performance.now() - t0;
  const count = async (r) => (await (await fetch(`${r.url}/v1/collections/stream`)).json()).count;
  const [mine, theirs] = [await count(victim), await count(peer)];
  const whole = (await Promise.all(acked.map((u) => indexed(victim.url, 'stream', dimension, u.number)))).every((c) => c === BATCH);
  const number = 100_000;
  const answer = await upload(lb, 'stream', number);
  const seenMs = answer.status === 200 ? await until(async () => (await indexed(victim.url, 'stream', dimension, number)) === BATCH) : null;
  let servedAgain = null;
  await until(async () => {
    const replica = (await chat(lb)).replica;
    servedAgain = replica === 'r1' ? performance.now() - t0 : null;
    return servedAgain !== null;
  }, 20_000);
  return {
    name: 'restart',
    title: 'the killed replica starts again and catches up',
    pass: mine === theirs && whole && seenMs !== null && seenMs <= VISIBLE_WITHIN_MS && servedAgain !== null,
    figures: `ready in ${(readyMs / 1000).toFixed(1)} s with ${mine} items (a survivor has ${theirs}), every acknowledged batch whole: ${whole}; `
      + `a new batch seen in ${seenMs?.toFixed(0) ?? 'never'} ms; served through the balancer again ${servedAgain === null ? 'never' : `${(servedAgain / 1000).toFixed(1)} s after the start`}`,
  };
}

async function main() {
  const started = performance.now();
  if (!args.dll || !args['connection-string']) {
    throw new Error('--dll and --connection-string are required (loadtests/fleet.sh passes both)');
  }
  for (let i = 0; i < REPLICAS; i++) {
    replicas.push(new ServerProcess({ dll: args.dll, dataDirectory: newDataDirectory(`fleet-r${i}`), settings, label: `r${i}`, port: await freePort() }));
  }
  await Promise.all(replicas.map((r) => r.start()));
  const lb = await startBalancer();
  console.log(`fleet: ${REPLICAS} replicas (${replicas.map((r) => r.port).join(', ')}) behind HAProxy at ${lb}; details: ${join(work, 'details.log')}`);
  const results = [await visibility(lb), ...(await killDuringTraffic(lb))];
  let failures = 0;
  for (const result of results) {
    failures += result.pass ? 0 : 1;
    console.log(`${result.pass ? 'PASS' : 'FAIL'} ${result.name} (${result.title}): ${result.figures}`);
  }
  console.log(`fleet: ${failures === 0 ? 'all passed' : `${failures} failed`} in ${((performance.now() - started) / 1000).toFixed(1)} s${failures ? `; replica logs in ${replicas.map((r) => r.dataDirectory).join(' ')}` : ''}`);
  return failures === 0 ? 0 : 1;
}

async function cleanUp(removeData) {
  balancer?.kill('SIGTERM');
  await Promise.all(replicas.map((r) => r.stop(10_000)));
  if (removeData) {
    replicas.forEach((r) => r.removeData());
  }
}

process.on('SIGINT', () => cleanUp(false).then(() => process.exit(130)));
process.on('SIGTERM', () => cleanUp(false).then(() => process.exit(143)));
try {
  process.exitCode = await main();
} catch (error) {
  console.log(`FAIL fleet: ${error.stack ?? error}`);
  process.exitCode = 1;
}
await cleanUp(process.exitCode === 0 && !args['keep-data']);
