#!/usr/bin/env bash
# The quickstart's first answer phase (32 prompts x 4 answers of <= 64 tokens) on the
# in-process engine and on a vLLM server (CPU build) through `--policy-endpoint`, with one
# endpoint and with the same server named twice; then the weight handoff of one iteration.
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
eva=target/release/eva-host
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
    iterations=1
    [ "$n" = 1 ] && iterations=2
    $eva "${common[@]}" --iterations "$iterations" "${endpoints[@]}" --served-model policy \
        --endpoint-concurrency 4 --out "$out/remote-$n" >/dev/null 2>&1
    echo "vLLM, $n endpoint(s) x 4 in flight"
    echo "  respond+score $(phase "$out/remote-$n" "respond+score"), $(tokens "$out/remote-$n") tokens"
done
echo "handoff of θ_2 (stack the update + /v1/load_lora_adapter), from remote-1's log:"
grep -E "as one adapter|is served as" "$out/remote-1/run.log" | cut -c1-160
echo "runs in $out"
