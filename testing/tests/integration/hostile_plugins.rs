//! Plugins that misbehave: each ends with its own, named error, the host survives, and
//! the next call of the same plugin works.

use std::time::{Duration, Instant};

use eva_plugin_runtime::{Error, InfoMetric, PluginOptions, ReportedError, Sampler, TrapKind};
use eva_test_support::harness::*;

fn hostile(options: PluginOptions) -> InfoMetric {
    InfoMetric::new(load("eva-fixture-hostile-info", options)).unwrap()
}

/// The call fails as `check` expects, then an ordinary call still answers.
fn fails_then_recovers(info: &mut InfoMetric, id: &str, check: impl Fn(&Error) -> bool) {
    let err = info.score(&rewards(id, &[0.0, 1.0])).unwrap_err();
    assert!(check(&err), "`{id}` gave: {err}");
    assert!(err.to_string().contains("plugin `hostile-info`"), "the error names the plugin: {err}");
    assert_eq!(info.score(&rewards("fine", &[0.25, 1.0])).unwrap(), 0.75, "the next call after `{id}` works");
}

#[test]
fn an_infinite_loop_hits_the_cpu_deadline() {
    let mut options = PluginOptions::default();
    options.limits.timeout = Duration::from_millis(200);
    let mut info = hostile(options);
    let started = Instant::now();
    fails_then_recovers(
        &mut info,
        "loop",
        |e| matches!(e, Error::Trap { call: "score", kind: TrapKind::Timeout { limit }, .. } if *limit == Duration::from_millis(200)),
    );
    // Generous: the deadline is checked every few milliseconds.
    assert!(started.elapsed() < Duration::from_secs(10), "stopped after {:?}", started.elapsed());
}

#[test]
fn unbounded_allocation_hits_the_memory_cap() {
    let mut options = PluginOptions::default();
    options.limits.memory_bytes = 32 << 20;
    let mut info = hostile(options);
    fails_then_recovers(&mut info, "alloc", |e| {
        matches!(e, Error::Trap { kind: TrapKind::OutOfMemory { limit, requested }, .. }
            if *limit == 32 << 20 && *requested > *limit)
    });
}

#[test]
fn a_panic_is_reported_with_its_message_and_location() {
    let mut info = hostile(PluginOptions::default());
    fails_then_recovers(&mut info, "panic", |e| match e {
        Error::Trap { kind: TrapKind::Panic { message }, .. } => {
            message.contains("the prompt asked me to panic") && message.contains("hostile-info/src/lib.rs:")
        }
        _ => false,
    });
}

#[test]
fn nan_output_is_rejected_with_the_offending_value() {
    let mut info = hostile(PluginOptions::default());
    fails_then_recovers(&mut info, "nan", |e| {
        e.to_string()
            == "plugin `hostile-info` returned invalid output from `score`: score 0 is NaN, not a finite number"
    });
}

#[test]
fn a_reported_error_is_not_a_trap() {
    let mut info = hostile(PluginOptions::default());
    fails_then_recovers(
        &mut info,
        "error",
        |e| matches!(e, Error::Reported { call: "score", error: ReportedError::InvalidInput(m), .. } if m == "this prompt is not welcome"),
    );
}

#[test]
fn a_log_flood_does_not_break_the_call() {
    let mut info = hostile(PluginOptions::default());
    assert_eq!(info.score(&rewards("log-flood", &[1.0])).unwrap(), 0.0);
}

#[test]
fn nan_rewards_never_reach_the_plugin() {
    let mut info = hostile(PluginOptions::default());
    let err = info.score_batch(&[rewards("ok", &[0.1]), rewards("bad", &[0.1, f64::NAN])]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid input for plugin `hostile-info` in `score-batch`: prompt 1 (`bad`): reward 1 is NaN, not a finite number"
    );
}

#[test]
fn sampler_indices_are_validated() {
    let mut sampler = Sampler::new(load("eva-fixture-hostile-sampler", PluginOptions::default())).unwrap();
    let scores = [0.1, 0.2, 0.3, 0.4];
    let mut msg = |count| sampler.sample(&scores, count).unwrap_err().to_string();
    assert_eq!(
        msg(1),
        "plugin `hostile-sampler` returned invalid output from `sample`: index 9 (at position 0) is out of range for 4 prompts"
    );
    assert!(msg(2).ends_with("index 0 is returned twice"));
    assert!(msg(3).ends_with("2 indices returned, 3 asked for"));
    assert_eq!(sampler.sample(&scores, 4).unwrap(), vec![0, 1, 2, 3]);
    assert!(sampler.sample(&scores, 5).unwrap_err().to_string().contains("5 asked for, only 4 prompts"));
}

#[test]
fn a_plugin_of_the_wrong_world_is_refused_by_role() {
    let sampler = load("eva-plugin-weighted-sampler", PluginOptions::default());
    let err = InfoMetric::new(sampler).err().expect("a sampler is no info metric");
    assert_eq!(
        err.to_string(),
        "plugin `weighted-sampler` is a sampler role plugin, but it was loaded as the info-metric role"
    );
}

/// A model for the evolver's `generate` that counts what it answers, each request taking
/// `delay`.
#[derive(Default)]
struct CountingModel {
    requests: std::sync::atomic::AtomicUsize,
    delay: Duration,
}

impl eva_plugin_runtime::Generator for CountingModel {
    fn complete(&self, requests: &[eva_plugin_runtime::GenerateRequest]) -> Result<Vec<String>, String> {
        std::thread::sleep(self.delay * requests.len() as u32);
        self.requests.fetch_add(requests.len(), std::sync::atomic::Ordering::Relaxed);
        Ok(vec!["hi".into(); requests.len()])
    }
}

fn hostile_evolver(mode: &str, edit: impl FnOnce(&mut eva_plugin_runtime::Limits)) -> eva_plugin_runtime::Evolver {
    let mut options = with_config(&[("mode", mode)]);
    edit(&mut options.limits);
    eva_plugin_runtime::Evolver::new(load("eva-fixture-hostile-evolver", options)).unwrap()
}

fn evolve_error(
    mode: &str,
    edit: impl FnOnce(&mut eva_plugin_runtime::Limits),
) -> (String, std::sync::Arc<CountingModel>) {
    let model = std::sync::Arc::new(CountingModel::default());
    let mut evolver = hostile_evolver(mode, edit);
    let err = evolver.evolve(&[prompt("p", "Name a color.")], model.clone()).unwrap_err().to_string();
    assert!(err.starts_with("plugin `hostile-evolver`"), "the error names the plugin: {err}");
    (err, model)
}

#[test]
fn evolved_prompts_are_capped_per_input_and_per_call() {
    let (err, _) = evolve_error("many", |_| {});
    assert!(err.ends_with("more than 32 evolved prompts from input 0 (`max-evolved-per-input`)"), "{err}");
    let (err, _) = evolve_error("many", |l| (l.max_evolved_per_input, l.max_evolved_per_call) = (1000, 100));
    assert!(
        err.ends_with("1000 evolved prompts, more than the limit of 100 per call (`max-evolved-per-call`)"),
        "{err}"
    );
}

#[test]
fn a_huge_method_label_is_refused_and_quoted_briefly() {
    let (err, _) = evolve_error("huge-method", |_| {});
    assert!(err.len() < 300, "{} bytes of error", err.len());
    assert!(err.contains("(8388608 bytes) is not one line of at most 256 bytes"), "{err}");
}

#[test]
fn a_prompt_of_invisible_characters_is_refused() {
    let (err, _) = evolve_error("invisible", |_| {});
    assert!(err.ends_with("the last user message has no visible character"), "{err}");
}

#[test]
fn labels_that_are_not_a_json_object_are_refused() {
    let (err, _) = evolve_error("bad-labels", |_| {});
    assert!(err.ends_with("evolved prompt 0 (parent 0): its labels are a JSON array, not an object"), "{err}");
}

#[test]
fn an_oversized_generate_request_never_reaches_the_model() {
    let (err, model) = evolve_error("huge-request", |_| {});
    assert!(err.contains("more than the limit of 65536 (`generate-max-request-bytes`)"), "{err}");
    assert_eq!(model.requests.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[test]
fn host_time_spent_for_a_plugin_is_bounded_by_its_real_time_limit() {
    let model = std::sync::Arc::new(CountingModel { delay: Duration::from_millis(100), ..CountingModel::default() });
    let mut evolver = hostile_evolver("chatty", |l| {
        (l.wall_timeout, l.generate_per_input) = (Duration::from_millis(350), 1000);
    });
    let started = Instant::now();
    let err = evolver.evolve(&[prompt("p", "Name a color.")], model.clone()).unwrap_err();
    assert!(
        matches!(&err, Error::Trap { kind: TrapKind::WallTimeout { limit }, .. } if *limit == Duration::from_millis(350)),
        "{err}"
    );
    assert!(err.to_string().contains("raise it with the plugin's `wall-timeout` limit"), "{err}");
    let answered = model.requests.load(std::sync::atomic::Ordering::Relaxed);
    assert!((3..=5).contains(&answered), "{answered} requests of 100 ms answered in a 350 ms limit");
    assert!(started.elapsed() < Duration::from_secs(5), "stopped after {:?}", started.elapsed());
}

#[test]
fn a_huge_description_is_refused_at_load_with_a_short_message() {
    let err = engine()
        .load(&eva_test_support::component("eva-fixture-hostile-describe"), PluginOptions::default())
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(msg.len() < 300, "{} bytes of error", msg.len());
    assert!(msg.contains("returned invalid output from `describe`: description `\\u{1b}[2J\\nfake line"), "{msg}");
    assert!(msg.ends_with("(31457280 bytes) is longer than 4096 bytes"), "{msg}");
}

#[test]
fn huge_finite_scores_pass_and_huge_rewards_are_refused_on_input() {
    let mut info = hostile(PluginOptions::default());
    assert_eq!(info.score(&rewards("huge", &[0.0, 1.0])).unwrap(), 1e308, "a finite info score is valid");
    let err = info.score(&rewards("fine", &[0.0, -1e308])).unwrap_err().to_string();
    assert!(err.ends_with("reward 1 is -1e308, beyond the bound of ±1e100 on rewards"), "{err}");
}
