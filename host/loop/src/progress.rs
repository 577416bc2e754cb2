//! Progress of long work (answering, scoring, training), reported to whoever drives the
//! library: `eva-host` draws bars, a test or a notebook may ignore it ([`Silent`]).

/// Where long work reports.
pub trait Progress {
    /// A new piece of work of `total` `unit`s, described by `what`.
    fn start(&self, what: &str, total: u64, unit: &str) -> Box<dyn Tracker>;
}

/// One piece of work; it is over when dropped.
pub trait Tracker {
    /// `n` more units done.
    fn advance(&self, n: u64);
    /// `done` units done so far (a resumed piece of work starts past 0).
    fn set_done(&self, done: u64);
    /// What is going on now, in a few words.
    fn say(&self, message: String);
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str, _: u64, _: &str) -> Box<dyn Tracker> {
        Box::new(Silent)
    }
}

impl Tracker for Silent {
    fn advance(&self, _: u64) {}
    fn set_done(&self, _: u64) {}
    fn say(&self, _: String) {}
}
