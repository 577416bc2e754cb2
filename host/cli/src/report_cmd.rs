//! `eva-host report RUN_DIR`: one self-contained HTML page (inline SVG, no scripts, no
//! external resources) about a run, finished or not: per-iteration reward, loss, margin
//! and info score, the drift of the prompts' length and difficulty, example lineages of
//! evolved prompts, the evaluation when `RUN_DIR/eval/eval.json` exists, the config.

mod plot;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use eva_plugin_registry::PluginLock;
use serde::Serialize;

use crate::stats::EvalSummary;
use eva_loop::layout::{Answers, EvolvedRecord, Info, PromptRecord, RunStore};
use plot::{Chart, Series};

#[derive(Args)]
pub struct ReportArgs {
    /// The run directory of `eva-host run`.
    run_dir: PathBuf,
    /// The HTML file to write; default `RUN_DIR/report.html`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// How many lineages of evolved prompts to show.
    #[arg(long, default_value_t = 3)]
    lineages: usize,
}

/// What the report reads of one iteration; files a run has not written yet are empty.
#[derive(Default)]
struct Iteration {
    t: usize,
    /// X_t.
    prompts: Vec<PromptRecord>,
    answers: Vec<Answers>,
    infos: Vec<Info>,
    evolved: Vec<EvolvedRecord>,
    /// The solver's steps: (loss, margin).
    steps: Vec<(f64, f64)>,
}

/// A figure of the page; `color` is its first series' color (the rendering test looks
/// for it).
#[derive(Serialize)]
struct Figure {
    id: &'static str,
    color: &'static str,
    caption: &'static str,
    svg: String,
}

/// One prompt of a lineage, seed first.
#[derive(Serialize)]
struct Generation {
    id: String,
    iteration: usize,
    method: Option<String>,
    text: String,
    mean_reward: Option<f64>,
    info: Option<f64>,
}

const REWARD: &str = "#1f77b4";
const LOSS: &str = "#d62728";
const MARGIN: &str = "#2ca02c";
const INFO: &str = "#9467bd";
const LENGTH: &str = "#8c564b";
const ORIGINS: [(&str, &str); 3] = [("seed", "#ff7f0e"), ("evolved", "#17becf"), ("buffer", "#7f7f7f")];

pub fn run(args: ReportArgs) -> Result<()> {
    let dir = &args.run_dir;
    if !RunStore::new(dir).config().is_file() {
        bail!("{} is not a run directory of `eva-host run` (no config.toml)", dir.display());
    }
    let out = args.out.clone().unwrap_or_else(|| RunStore::new(dir).report());
    let html = render(dir, args.lineages)?;
    eva_engine::atomic::write_file(&out, html.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
    println!("{}", out.display());
    Ok(())
}

fn load(dir: &Path) -> Result<Vec<Iteration>> {
    let store = RunStore::new(dir);
    let mut prompts: Vec<PromptRecord> = store.read(&store.seeds())?.unwrap_or_default();
    let mut out = vec![];
    for t in 1.. {
        let it = store.iteration(t);
        if !it.path().is_dir() {
            break;
        }
        // The solver appends its steps as it goes: a running one may hold a partial line.
        let steps = std::fs::read_to_string(it.train_metrics())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|r| (r["loss"].as_f64().unwrap_or(f64::NAN), r["margin"].as_f64().unwrap_or(f64::NAN)))
            .collect();
        let next: Option<Vec<PromptRecord>> = store.read(&it.next_prompts())?;
        out.push(Iteration {
            t,
            prompts: std::mem::take(&mut prompts),
            answers: store.read(&it.answers())?.unwrap_or_default(),
            infos: store.read(&it.info())?.unwrap_or_default(),
            evolved: store.read(&it.evolved())?.unwrap_or_default(),
            steps,
        });
        match next {
            Some(next) => prompts = next,
            None => break,
        }
    }
    Ok(out)
}

fn mean(xs: &[f64]) -> f64 {
    eva_loop::numbers::mean(xs).unwrap_or(f64::NAN)
}

/// The q-quantile of `xs`, linearly interpolated.
fn quantile(xs: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let at = q * (v.len() - 1) as f64;
    let (i, frac) = (at.floor() as usize, at.fract());
    // A weighted sum, not v[i] + (v[i+1] - v[i]) * frac: the difference of two huge
    // values of opposite signs overflows.
    v[i] * (1.0 - frac) + v[(i + 1).min(v.len() - 1)] * frac
}

fn words(p: &PromptRecord) -> f64 {
    p.messages.last().map_or(0, |m| m.content.split_whitespace().count()) as f64
}

fn prompt_reward(a: &Answers) -> f64 {
    mean(&a.answers.iter().map(|a| a.reward).collect::<Vec<_>>())
}

/// A series over iterations: one value (and a p10-p90 band) per iteration with data.
fn per_iteration(
    its: &[Iteration],
    name: &str,
    color: &'static str,
    values: impl Fn(&Iteration) -> Vec<f64>,
) -> Series {
    let mut s = Series { name: name.into(), color, points: vec![], band: vec![] };
    for it in its {
        let v = values(it);
        if v.is_empty() {
            continue;
        }
        let x = it.t as f64;
        s.points.push((x, mean(&v)));
        if v.len() > 1 {
            s.band.push((x, quantile(&v, 0.1), quantile(&v, 0.9)));
        }
    }
    s
}

fn figures(its: &[Iteration]) -> Result<Vec<Figure>> {
    let chart = |title: &str, x: &str, y: &str, series: Vec<Series>, markers: Vec<f64>| Chart {
        title: title.into(),
        x_label: x.into(),
        y_label: y.into(),
        series,
        markers,
    };
    let rewards = |it: &Iteration| it.answers.iter().flat_map(|a| a.answers.iter().map(|a| a.reward)).collect();
    let infos = |it: &Iteration| it.infos.iter().map(|i| i.info).collect();
    let lengths = |it: &Iteration| it.prompts.iter().map(words).collect();
    // Training steps are numbered across iterations; a dashed line starts each iteration.
    let (mut losses, mut margins, mut markers, mut step) = (vec![], vec![], vec![], 0.0);
    for it in its.iter().filter(|it| !it.steps.is_empty()) {
        markers.push(step + 0.5);
        for &(loss, margin) in &it.steps {
            step += 1.0;
            losses.push((step, loss));
            margins.push((step, margin));
        }
    }
    let steps = |name: &str, color, points| Series { name: name.into(), color, points, band: vec![] };
    let by_origin: Vec<Series> = ORIGINS
        .iter()
        .map(|&(origin, color)| {
            per_iteration(its, origin, color, |it| {
                let of: HashMap<&str, &str> = it.prompts.iter().map(|p| (p.id.as_str(), p.origin.as_str())).collect();
                it.answers.iter().filter(|a| of.get(a.id.as_str()) == Some(&origin)).map(prompt_reward).collect()
            })
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    let specs = [
        (
            "reward",
            REWARD,
            "Mean reward of the answers to X_t (band: 10th to 90th percentile)",
            chart("Reward", "iteration", "reward", vec![per_iteration(its, "reward", REWARD, rewards)], vec![]),
        ),
        (
            "loss",
            LOSS,
            "The solver's loss per step; dashed lines start an iteration",
            chart("Loss", "training step", "loss", vec![steps("loss", LOSS, losses)], markers.clone()),
        ),
        (
            "margin",
            MARGIN,
            "Implicit reward margin (chosen - rejected) per step",
            chart("Margin", "training step", "margin", vec![steps("margin", MARGIN, margins)], markers),
        ),
        (
            "info",
            INFO,
            "Info score of the prompts of X_t (band: 10th to 90th percentile)",
            chart("Info score", "iteration", "info", vec![per_iteration(its, "info", INFO, infos)], vec![]),
        ),
        (
            "prompt-length",
            LENGTH,
            "Length of the prompts of X_t, in words (band: 10th to 90th percentile)",
            chart("Prompt length", "iteration", "words", vec![per_iteration(its, "words", LENGTH, lengths)], vec![]),
        ),
        (
            "difficulty",
            ORIGINS[0].1,
            "Difficulty drift: mean reward per prompt of X_t by origin (lower is harder)",
            chart("Prompt difficulty", "iteration", "mean reward per prompt", by_origin, vec![]),
        ),
    ];
    specs
        .into_iter()
        .map(|(id, color, caption, chart)| {
            let svg = chart.svg(600, 340).map_err(anyhow::Error::msg)?;
            Ok(Figure { id, color, caption, svg })
        })
        .collect()
}

/// Up to `count` of the longest chains of evolved prompts, each from its seed to its
/// newest descendant, with distinct seeds.
fn lineages<'a>(its: &'a [Iteration], count: usize) -> Vec<Vec<Generation>> {
    /// A prompt's iteration, parent, method and text.
    type Node<'a> = (usize, Option<&'a str>, Option<&'a str>, &'a str);
    let mut nodes: HashMap<&'a str, Node<'a>> = HashMap::new();
    for it in its {
        for p in it.prompts.iter().filter(|p| p.origin == "seed") {
            nodes.entry(&p.id).or_insert((it.t, None, None, &p.messages.last().expect("checked").content));
        }
        for e in it.evolved.iter().filter(|e| e.kept) {
            let text = e.messages.last().map_or("", |m| m.content.as_str());
            nodes.insert(&e.id, (it.t, Some(&e.parent), Some(&e.method), text));
        }
    }
    let reward: HashMap<&str, f64> =
        its.iter().flat_map(|it| it.answers.iter().map(|a| (a.id.as_str(), prompt_reward(a)))).collect();
    let info: HashMap<&str, f64> = its.iter().flat_map(|it| it.infos.iter().map(|i| (i.id.as_str(), i.info))).collect();
    let chain = |leaf: &str| {
        let mut id = leaf;
        let mut out = vec![];
        while let Some(&(iteration, parent, method, text)) = nodes.get(id) {
            out.push(Generation {
                id: id.into(),
                iteration,
                method: method.map(str::to_owned),
                text: text.into(),
                mean_reward: reward.get(id).copied(),
                info: info.get(id).copied(),
            });
            match parent {
                Some(p) => id = p,
                None => break,
            }
        }
        out.reverse();
        out
    };
    // Newest evolved prompts first, deepest chains first; one lineage per seed.
    let mut leaves: Vec<Vec<Generation>> =
        its.iter().rev().flat_map(|it| it.evolved.iter().filter(|e| e.kept)).map(|e| chain(&e.id)).collect();
    leaves.sort_by_key(|c| std::cmp::Reverse(c.len()));
    let mut roots = std::collections::HashSet::new();
    leaves.into_iter().filter(|c| roots.insert(c[0].id.clone())).take(count).collect()
}

fn render(dir: &Path, lineage_count: usize) -> Result<String> {
    let store = RunStore::new(dir);
    let its = load(dir)?;
    let summaries = store.summaries()?;
    let lock_path = store.plugin_lock();
    let plugins = if lock_path.is_file() { PluginLock::read(&lock_path)?.plugins } else { vec![] };
    let config = std::fs::read_to_string(store.config()).context("reading config.toml")?;
    let eval_path = store.eval().results();
    let eval: Option<EvalSummary> = if eval_path.is_file() {
        let text = std::fs::read_to_string(&eval_path).with_context(|| format!("reading {}", eval_path.display()))?;
        Some(serde_json::from_str(&text).with_context(|| format!("{} is damaged", eval_path.display()))?)
    } else {
        None
    };
    let mut env = minijinja::Environment::new();
    env.add_template("report.html", include_str!("report_cmd/report.html")).expect("the report template parses");
    let page = env.get_template("report.html").expect("added above");
    page.render(minijinja::context! {
        run_dir => dir.display().to_string(),
        finished => summaries.len(),
        started => its.len(),
        summaries,
        plugins,
        config,
        eval,
        figures => figures(&its)?,
        lineages => lineages(&its, lineage_count),
    })
    .context("rendering the report")
}

#[cfg(test)]
// The test losses start at 0.6931, where DPO starts (ln 2), as a log would show it.
#[allow(clippy::approx_constant)]
mod tests {
    use super::*;
    use eva_engine::Message;
    use eva_loop::layout::{Answer, IterationSummary};
    use eva_plugin_registry::LockedPlugin;

    fn prompt(id: &str, text: &str, origin: &str, parent: Option<&str>) -> PromptRecord {
        PromptRecord {
            id: id.into(),
            messages: vec![Message::new("user", text)],
            origin: origin.into(),
            parent: parent.map(Into::into),
            method: parent.map(|_| "in-depth/deepen".into()),
            labels: None,
        }
    }

    fn answers(id: &str, rewards: &[f64]) -> Answers {
        let answers =
            rewards.iter().map(|&reward| Answer { text: format!("answer to {id}"), tokens: 3, reward }).collect();
        Answers { id: id.into(), answers }
    }

    fn evolved(id: &str, parent: &str, text: &str, kept: bool) -> EvolvedRecord {
        EvolvedRecord {
            id: id.into(),
            parent: parent.into(),
            method: "in-depth/deepen".into(),
            messages: vec![Message::new("user", text)],
            kept,
            dropped_because: (!kept).then(|| "near-duplicate of s2".into()),
            labels: None,
        }
    }

    fn summary(iteration: usize) -> IterationSummary {
        IterationSummary {
            iteration,
            prompts: 3,
            mean_reward: Some(0.5),
            info_mean: Some(0.2),
            info_max: Some(0.4),
            selected: 1,
            evolved: 2,
            kept: 1,
            next_prompts: 2,
            pairs: 2,
            mean_prompt_words: 4.5,
            first_loss: Some(0.6931),
            last_loss: Some(0.65),
            last_margin: Some(0.1),
        }
    }

    /// Two finished iterations and a third that has only answered.
    fn write_run(dir: &Path) {
        let store = RunStore { dir: dir.to_owned() };
        let it = |t: usize, name: &str| store.iteration(t).path().join(name);
        std::fs::write(dir.join("config.toml"), "model = \"m.gguf\"\n").unwrap();
        let seeds = [
            prompt("s1", "Why is the sky <b>blue</b> & not green?", "seed", None),
            prompt("s2", "Name a colour.", "seed", None),
            prompt("s3", "Write a <haiku> & a limerick.", "seed", None),
        ];
        store.write(&dir.join("seed.jsonl"), &seeds).unwrap();
        let regret = LockedPlugin {
            role: "info-metric".into(),
            name: "regret".into(),
            version: "0.1.0".into(),
            source: "oci://127.0.0.1:5000/eva/regret:v1".into(),
            pinned: format!("oci://127.0.0.1:5000/eva/regret@sha256:{}", "cd".repeat(32)),
            digest: format!("sha256:{}", "ab".repeat(32)),
            signed_by: None,
        };
        PluginLock { plugins: vec![regret] }.write(&dir.join("plugins.lock")).unwrap();
        store.write(&dir.join("metrics.jsonl"), &[summary(1), summary(2)]).unwrap();
        let steps = |losses: &[f64]| -> Vec<serde_json::Value> {
            losses
                .iter()
                .enumerate()
                .map(|(i, l)| serde_json::json!({"step": i + 1, "loss": l, "margin": 0.6931 - l}))
                .collect()
        };

        store
            .write(
                &it(1, "answers.jsonl"),
                &[answers("s1", &[0.1, 0.3]), answers("s2", &[0.9, 0.7]), answers("s3", &[0.5, 0.5])],
            )
            .unwrap();
        store
            .write(
                &it(1, "info.jsonl"),
                &[
                    Info { id: "s1".into(), info: 0.2 },
                    Info { id: "s2".into(), info: 0.2 },
                    Info { id: "s3".into(), info: 0.0 },
                ],
            )
            .unwrap();
        store
            .write(
                &it(1, "evolved.jsonl"),
                &[
                    evolved("t1-e0", "s1", "Why is the sky blue but sunsets red?", true),
                    evolved("t1-e1", "s2", "Name a colour.", false),
                ],
            )
            .unwrap();
        store
            .write(
                &it(1, "prompts-next.jsonl"),
                &[
                    prompt("t1-e0", "Why is the sky blue but sunsets red?", "evolved", Some("s1")),
                    prompt("s3", "Write a <haiku> & a limerick.", "buffer", None),
                ],
            )
            .unwrap();
        store.write(&it(1, "train/metrics.jsonl"), &steps(&[0.6931, 0.68])).unwrap();

        store.write(&it(2, "answers.jsonl"), &[answers("t1-e0", &[0.2, 0.6]), answers("s3", &[0.4, 0.8])]).unwrap();
        store
            .write(&it(2, "info.jsonl"), &[Info { id: "t1-e0".into(), info: 0.4 }, Info { id: "s3".into(), info: 0.4 }])
            .unwrap();
        store
            .write(
                &it(2, "evolved.jsonl"),
                &[evolved("t2-e0", "t1-e0", "Explain, for a child, why the sky is blue and sunsets are red.", true)],
            )
            .unwrap();
        store
            .write(
                &it(2, "prompts-next.jsonl"),
                &[
                    prompt(
                        "t2-e0",
                        "Explain, for a child, why the sky is blue and sunsets are red.",
                        "evolved",
                        Some("t1-e0"),
                    ),
                    prompt("s3", "Write a <haiku> & a limerick.", "buffer", None),
                ],
            )
            .unwrap();
        store.write(&it(2, "train/metrics.jsonl"), &steps(&[0.6931, 0.66, 0.65])).unwrap();

        store.write(&it(3, "answers.jsonl"), &[answers("t2-e0", &[0.3, 0.3]), answers("s3", &[0.6, 0.6])]).unwrap();
    }

    /// The page's text without the SVG drawings: headings, tables, captions, lineages.
    fn outline(html: &str) -> String {
        let mut text = String::new();
        let mut rest = html;
        while let Some(start) = rest.find("<svg") {
            text.push_str(&rest[..start]);
            let end = rest[start..].find("</svg>").expect("closed svg") + start + "</svg>".len();
            text.push_str("[svg]");
            rest = &rest[end..];
        }
        text.push_str(rest);
        let style = text.find("<style>").unwrap()..text.find("</style>").unwrap();
        text.replace_range(style, "");
        text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn the_report_traces_lineages_and_plots_every_series() {
        let dir = tempfile::tempdir().unwrap();
        write_run(dir.path());
        let html = render(dir.path(), 3).unwrap();
        // Six figures, each an inline SVG that draws its own color.
        for id in ["reward", "loss", "margin", "info", "prompt-length", "difficulty"] {
            let at = html.find(&format!("<figure id=\"plot-{id}\"")).unwrap_or_else(|| panic!("no plot {id}"));
            let figure = &html[at..at + html[at..].find("</figure>").unwrap()];
            let color = &figure[figure.find("data-color=\"").unwrap() + 12..][..7];
            assert!(figure.contains("<svg") && figure.to_uppercase().contains(&color.to_uppercase()), "{id}");
        }
        // Prompt text is escaped, never markup.
        assert!(html.contains("sky &lt;b&gt;blue&lt;&#x2f;b&gt; &amp; not") && !html.contains("<b>"), "{html}");
        let escaped_dir = dir.path().display().to_string().replace('/', "&#x2f;");
        insta::assert_snapshot!("report_outline", outline(&html).replace(&escaped_dir, "RUN_DIR"));
    }

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(quantile(&[3.0, 1.0, 2.0, f64::NAN], 0.5), 2.0);
        assert_eq!(quantile(&[0.0, 10.0], 0.1), 1.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
