// transformers.js (onnxruntime-node, CPU, fp32) on the same folder and images as clip-bench:
// RawImage.read + CLIPImageProcessor + CLIPVisionModelWithProjection, in batches, after one
// warm-up batch. usage: node transformers-js-images.mjs MODEL_DIR IMAGE_DIR BATCH
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { env, AutoImageProcessor, CLIPVisionModelWithProjection, RawImage } from '@huggingface/transformers';

const [modelArg, imageDir, batchArg] = process.argv.slice(2);
const batch = Number(batchArg);
env.allowRemoteModels = false;
env.useFSCache = false;
const modelDir = path.resolve(modelArg);
env.localModelPath = path.dirname(modelDir) + '/';
const modelId = path.basename(modelDir);
const processor = await AutoImageProcessor.from_pretrained(modelId, { local_files_only: true });
const model = await CLIPVisionModelWithProjection.from_pretrained(modelId, { local_files_only: true, device: 'cpu', dtype: 'fp32' });
const files = fs.readdirSync(imageDir).sort().map((f) => path.join(imageDir, f));

async function embed(paths) {
    const images = await Promise.all(paths.map((p) => RawImage.read(p)));
    const { pixel_values } = await processor(images);
    const { image_embeds } = await model({ pixel_values });
    return image_embeds;
}

await embed(files.slice(0, batch));
const start = performance.now();
for (let i = 0; i < files.length; i += batch) await embed(files.slice(i, i + batch));
const seconds = (performance.now() - start) / 1000;
process.stdout.write(JSON.stringify({ images: files.length, seconds, images_per_second: files.length / seconds }) + '\n');
