// Reads one JSON request on stdin, answers with llama.cpp's view of the same model on stdout.
//
// request: {
//   "model": "path.gguf", "threads": 1,
//   "f32_kv": true,                                  // f32 key/value cache (default f16)
//   "tokenize": ["text", ...],                       // ids with special tokens parsed
//   "greedy": {"prompt": [ids], "steps": 64, "top": 50}, // greedy continuation + top logits per step
//   "bench": {"prompt": [ids], "decode": 128}        // timings
// }
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const req = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const llama = await getLlama({ gpu: false, logLevel: LlamaLogLevel.error, build: "never" });
const model = await llama.loadModel({ modelPath: req.model, gpuLayers: 0 });
const out = {};

if (req.tokenize) {
  out.tokenize = req.tokenize.map((s) => Array.from(model.tokenize(s, true)));
}

if (req.greedy) {
  const { prompt, steps, top } = req.greedy;
  const kv = req.f32_kv ? { experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32", flashAttention: false } : {};
  const ctx = await model.createContext({ contextSize: 2048, threads: req.threads ?? 1, sequences: 1, ...kv });
  const seq = ctx.getSequence();
  const tokens = [];
  const logits = [];
  let input = prompt.slice();
  for (let i = 0; i < steps; i++) {
    const items = input.map((t, k) => (k === input.length - 1 ? [t, { generateNext: { token: true, options: { temperature: 0 }, logits: { filter: { tokens: [], includeTop: top } } } }] : t));
    const res = await seq.controlledEvaluate(items);
    const next = res[res.length - 1].next;
    tokens.push(next.token);
    logits.push(Array.from(next.logits.entries()));
    input = [next.token];
  }
  out.greedy = { tokens, logits };
  await ctx.dispose();
}

if (req.bench) {
  const { prompt, decode } = req.bench;
  const threads = req.threads ?? 1;
  const ctx = await model.createContext({ contextSize: 2048, threads, sequences: 1, batchSize: 512 });
  const seq = ctx.getSequence();
  let t0 = performance.now();
  await seq.evaluateWithoutGeneratingNewTokens(prompt);
  const prefill_s = (performance.now() - t0) / 1000;
  await seq.clearHistory();
  t0 = performance.now();
  let n = 0;
  for await (const _ of seq.evaluate(prompt.slice(0, 1), { temperature: 0 })) {
    if (++n >= decode) break;
  }
  const decode_s = (performance.now() - t0) / 1000;
  out.bench = { prefill_tokens: prompt.length, prefill_s, decode_tokens: n, decode_s, threads: ctx.currentThreads };
  await ctx.dispose();
}

process.stdout.write(JSON.stringify(out));
await model.dispose();
await llama.dispose();
