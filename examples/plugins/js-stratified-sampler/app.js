// stratified-sampler: a sampler for eva, written in JavaScript.
//
// The prompts are split by info score into `bins` equal-count bins (quantiles), and the
// draw takes turns across bins, from the most informative one down, picking uniformly
// inside each bin with the host's seeded random source. Every region of the info
// distribution stays represented, where a weighted draw concentrates on the top.

import { nextU64 } from 'eva:plugin/random@0.2.0';

let bins = 4;

// A reported error: the host shows it with the plugin's name and the call.
const fail = (tag, message) => {
  throw { tag, val: message };
};

export const sample = {
  describe() {
    return {
      name: 'stratified-sampler',
      version: '0.1.0',
      description: 'Draws evenly across quantile bins of the info score, most informative bin first.',
      config: [
        { name: 'bins', kind: 'integer', defaultValue: '4', description: 'how many quantile bins' },
      ],
    };
  },

  configure(config) {
    for (const { key, value } of config) {
      if (key === 'bins') {
        const n = Number(value.val);
        if (n < 1 || n > 100) fail('invalid-config', `bins must be in 1..=100, not ${n}`);
        bins = n;
      }
    }
  },

  sample(scores, count) {
    if (count > scores.length) {
      fail('invalid-input', `asked for ${count} prompts out of ${scores.length}`);
    }
    // Indices by score, best first; equal scores keep their order. (`scores` arrives as
    // a Float64Array: the indices go into a plain array.)
    const order = Array.from(scores, (_, i) => i).sort((a, b) => scores[b] - scores[a] || a - b);
    const k = Math.min(bins, order.length);
    const groups = [];
    for (let b = 0; b < k; b++) {
      groups.push(order.slice(Math.floor((b * order.length) / k), Math.floor(((b + 1) * order.length) / k)));
    }
    const picked = [];
    for (let b = 0; picked.length < count; b = (b + 1) % k) {
      const group = groups[b];
      if (group.length === 0) continue;
      const at = Number(nextU64() % BigInt(group.length));
      picked.push(group.splice(at, 1)[0]);
    }
    return picked;
  },
};
