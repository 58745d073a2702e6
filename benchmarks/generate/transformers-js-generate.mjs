// Greedy generation with transformers.js (onnxruntime-node, CPU, fp32) on a local folder,
// timed the way `serving generate --json` times itself: prefill = until the first new token,
// decode tokens/s = (new tokens − 1) / time from the first to the last new token.
// usage: node transformers-js-generate.mjs MODEL_DIR PROMPT MAX_NEW_TOKENS
// stdout: {"prompt_tokens":N,"new_tokens":N,"load_ms":x,"prefill_ms":x,"decode_tokens_per_second":x}
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { env, AutoTokenizer, AutoModelForCausalLM } from '@huggingface/transformers';

const [modelArg, prompt, maxNewArg] = process.argv.slice(2);
env.allowRemoteModels = false;
env.useFSCache = false;
const modelDir = path.resolve(modelArg);
env.localModelPath = path.dirname(modelDir) + '/';
const modelId = path.basename(modelDir);

const loadStart = performance.now();
const tokenizer = await AutoTokenizer.from_pretrained(modelId, { local_files_only: true });
const model = await AutoModelForCausalLM.from_pretrained(modelId, { local_files_only: true, device: 'cpu', dtype: 'fp32' });
const loadMs = performance.now() - loadStart;

const { input_ids, attention_mask } = tokenizer(prompt);
const stamps = [];
// generate() calls put() once with the prompt, then once per new token.
const streamer = { put: () => stamps.push(performance.now()), end: () => {} };
const start = performance.now();
await model.generate({ input_ids, attention_mask, max_new_tokens: Number(maxNewArg), do_sample: false, eos_token_id: null, streamer });
const tokenStamps = stamps.slice(1);
const newTokens = tokenStamps.length;
const result = {
    prompt_tokens: input_ids.dims[1],
    new_tokens: newTokens,
    load_ms: loadMs,
    prefill_ms: tokenStamps[0] - start,
    decode_tokens_per_second: (newTokens - 1) / ((tokenStamps[newTokens - 1] - tokenStamps[0]) / 1000),
};
process.stdout.write(JSON.stringify(result) + '\n');
await model.dispose();
