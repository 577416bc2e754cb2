//! Progress bars for long phases, on stderr and only when it is a terminal: the library
//! reports its long work to [`Bars`], which draws it.

use eva_loop::progress::{Progress, Tracker};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar counting up to `len` `unit`s; hidden when stderr is not a terminal (logs and CI
/// stay clean).
pub fn bar(len: u64, what: &str, unit: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let template =
        format!("{{msg}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}})");
    bar.set_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar.set_message(what.to_owned());
    bar
}

/// The library's progress as bars.
pub struct Bars;

impl Progress for Bars {
    fn start(&self, what: &str, total: u64, unit: &str) -> Box<dyn Tracker> {
        Box::new(Drawn(bar(total, what, unit)))
    }
}

struct Drawn(ProgressBar);

impl Tracker for Drawn {
    fn advance(&self, n: u64) {
        self.0.inc(n)
    }
    fn set_done(&self, done: u64) {
        self.0.set_position(done)
    }
    fn say(&self, message: String) {
        self.0.set_message(message)
    }
}

impl Drop for Drawn {
    fn drop(&mut self) {
        self.0.finish_and_clear()
    }
}
