// What every peer script shares: the JSON request on stdin, and transformers.js set up to
// load one of our folders fully offline, resolved under localModelPath the way a downloaded
// model is. Returns the model id to pass to from_pretrained.
import path from 'node:path';

export async function readRequest() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

export function offlineModel(env, modelDir) {
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.useFSCache = false;
  env.useBrowserCache = false;
  const resolved = path.resolve(modelDir);
  env.localModelPath = path.dirname(resolved) + '/';
  return path.basename(resolved);
}
