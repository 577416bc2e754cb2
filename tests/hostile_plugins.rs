//! Plugins that misbehave: each ends with its own, named error, the host survives, and
//! the next call of the same plugin works.

use std::time::{Duration, Instant};

use eva::harness::*;
use eva_plugin_runtime::{Error, InfoMetric, PluginOptions, ReportedError, Sampler, TrapKind};

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
