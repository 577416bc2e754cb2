//! The one-screen summary of each iteration ([`OneScreen`]), the observer `eva-host run`
//! gives the loop.

use eva_loop::layout::IterationSummary;
use eva_loop::run::Observer;

/// Prints each iteration's summary as one line, and logs it.
pub struct OneScreen;

impl Observer for OneScreen {
    fn iteration(&mut self, summary: &IterationSummary) {
        let line = one_screen(summary);
        tracing::info!("{line}");
        eprintln!("{line}");
    }
}

/// A number of the one-screen summary, `-` where there is none.
fn shown(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}

fn one_screen(m: &IterationSummary) -> String {
    let loss = match (m.first_loss, m.last_loss) {
        (Some(a), Some(b)) => format!("loss {a:.4} -> {b:.4}, margin {:+.3}", m.last_margin.unwrap_or(f64::NAN)),
        _ => "no training (no pairs)".into(),
    };
    format!(
        "iteration {}: {} prompts, mean reward {}, info mean {} max {}; {} selected, {} evolved, {} kept; \
         {} prompts next ({:.1} words on average); {} pairs; {loss}",
        m.iteration,
        m.prompts,
        shown(m.mean_reward),
        shown(m.info_mean),
        shown(m.info_max),
        m.selected,
        m.evolved,
        m.kept,
        m.next_prompts,
        m.mean_prompt_words,
        m.pairs
    )
}
