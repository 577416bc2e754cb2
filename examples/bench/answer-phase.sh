#!/usr/bin/env bash
# The quickstart's first answer phase (32 prompts x 4 answers of <= 64 tokens) on the
# in-process engine and on vLLM servers (CPU build) through `--policy-endpoint`: one
# server, the same server named twice, and two servers (each pinned to a core of its own);
# the weight handoff of one iteration; and the HTTP path's own cost per request and per
# token (what a client waits for beyond the engine's time, from vLLM's /metrics).
# The reward is the rule-reward plugin (microseconds), so the phase time is answering.
# Prints each phase's time from the runs' logs. Needs a release eva-host and vLLM
# (scripts/install-vllm); takes about 15 minutes on 2 cores.
#
#   examples/bench/answer-phase.sh HF_MODEL_DIR [PORT]
set -euo pipefail
cd "$(dirname "$0")/../.."
model=$(realpath "$1")
port=${2:-8790}
out=$(mktemp -d /tmp/eva-answer-bench.XXXXXX)
eva=${EVA_HOST:-target/release/eva-host}
# Answers over 20 words lose reward in proportion, so answers differ and make pairs.
reward_plugin="$out/plugins/eva-plugin-rule-reward.wasm"
$eva plugin build plugins/rule-reward --out "$out/plugins" >/dev/null
common=(run --config examples/quickstart/eva.toml --prompts examples/quickstart/seed-prompts.jsonl
    --model "$model" --reward plugin --reward-plugin "$reward_plugin"
    --plugin-config rule-reward.max-words=20 --threads 2)
phase() { grep -o "phase{name=\"$2\"}: eva_loop::layout: close time.busy=[0-9.]*[a-z]*" "$1/run.log" | head -1 | sed 's/.*busy=//'; }
tokens() { python3 -c "import json,sys; print(sum(a['tokens'] for l in open(sys.argv[1]) for a in json.loads(l)['answers']))" "$1/iter-1/answers.jsonl"; }

echo "local (candle, f32, 2 threads)"
$eva "${common[@]}" --iterations 1 --out "$out/local" >/dev/null 2>&1
echo "  respond+score $(phase "$out/local" "respond+score"), $(tokens "$out/local") tokens"

eval "$(scripts/start-vllm "$model" "$port" --served-model-name policy)"
trap 'scripts/stop-vllm "$VLLM_PID_FILE"' EXIT
for n in 1 2; do
    endpoints=()
    for _ in $(seq "$n"); do endpoints+=(--policy-endpoint "$VLLM_URL"); done
    $eva "${common[@]}" --iterations 1 "${endpoints[@]}" --served-model policy \
        --endpoint-concurrency 4 --out "$out/remote-$n" >/dev/null 2>&1
    echo "vLLM, $n endpoint(s) x 4 in flight"
    echo "  respond+score $(phase "$out/remote-$n" "respond+score"), $(tokens "$out/remote-$n") tokens"
done
# The handoff happens as iteration 2 loads θ_2; answering under the adapter is slow on
# this CPU build, so the run is stopped once θ_2 is served.
$eva run --resume --reconfigure --iterations 2 --out "$out/remote-1" >/dev/null 2>&1 &
resumed=$!
until grep -q "is served as" "$out/remote-1/run.log" 2>/dev/null || ! kill -0 "$resumed" 2>/dev/null; do sleep 1; done
kill "$resumed"; wait "$resumed" || true
echo "handoff of θ_2 (stack the update + /v1/load_lora_adapter), from remote-1's log:"
grep -E "as one adapter|is served as" "$out/remote-1/run.log" | cut -c1-160

echo "the HTTP path: 20 sequential requests of 1 and of 64 tokens, client wait vs vLLM's e2e latency"
python3 - "$VLLM_URL" <<'PY'
import json, re, sys, time, urllib.request
url = sys.argv[1]
def metric(name):
    text = urllib.request.urlopen(url + "/metrics").read().decode()
    return sum(float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M))
def chat(tokens):
    body = {"model": "policy", "messages": [{"role": "user", "content": "Say something."}],
            "max_tokens": tokens, "temperature": 0, "ignore_eos": True}
    req = urllib.request.Request(url + "/v1/chat/completions", json.dumps(body).encode(),
                                 {"content-type": "application/json"})
    return json.loads(urllib.request.urlopen(req).read())
for tokens in (1, 64):
    chat(tokens)
    e2e0, n0 = metric("vllm:e2e_request_latency_seconds_sum"), metric("vllm:e2e_request_latency_seconds_count")
    start = time.perf_counter()
    for _ in range(20):
        chat(tokens)
    wall = time.perf_counter() - start
    e2e = metric("vllm:e2e_request_latency_seconds_sum") - e2e0
    n = metric("vllm:e2e_request_latency_seconds_count") - n0
    print(f"  {tokens:>2} tokens: client {wall / 20 * 1e3:.1f} ms/request, engine {e2e / n * 1e3:.1f} ms, "
          f"HTTP path {(wall - e2e) / 20 * 1e3:.1f} ms/request = {(wall - e2e) / 20 / tokens * 1e3:.2f} ms/token")
PY
scripts/stop-vllm "$VLLM_PID_FILE"
trap - EXIT

# Two servers, one core each (vLLM's CPU build binds its engine to the cores it is given).
eval "$(VLLM_CPU_OMP_THREADS_BIND=0 scripts/start-vllm "$model" "$port" --served-model-name policy)"
first=$VLLM_PID_FILE first_url=$VLLM_URL
eval "$(VLLM_CPU_OMP_THREADS_BIND=1 scripts/start-vllm "$model" $((port + 1)) --served-model-name policy)"
trap 'scripts/stop-vllm "$first"; scripts/stop-vllm "$VLLM_PID_FILE"' EXIT
$eva "${common[@]}" --iterations 1 --policy-endpoint "$first_url" --policy-endpoint "$VLLM_URL" \
    --served-model policy --endpoint-concurrency 4 --out "$out/remote-two" >/dev/null 2>&1
echo "vLLM, 2 servers (core 0, core 1) x 4 in flight"
echo "  respond+score $(phase "$out/remote-two" "respond+score"), $(tokens "$out/remote-two") tokens"
echo "runs in $out"
