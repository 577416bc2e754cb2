//! What one plugin call's store holds, and the host side of the plugin's imports:
//! logging, the seeded random source, `generate`, and a WASI context that grants nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng, rngs::StdRng};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::limits::Limits;
use crate::text::{MAX_MESSAGE_BYTES, one_line, quote, truncate};
use crate::types::{ChatMessage, GenerateRequest, Generator};

/// Caps linear memory and tables, and remembers a refused growth so that the trap that
/// follows can be reported as what it is.
pub(crate) struct MemoryLimiter {
    pub(crate) limit: usize,
    pub(crate) refused: Option<usize>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.refused = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// The clock a WASI guest sees: it starts at zero, ticks one millisecond per read, and
/// jumps forward when the guest sleeps (the engine's linker replaces WASI's sleeps), so
/// plugins can neither observe real time nor make the host wait on it, and runs stay
/// reproducible.
#[derive(Clone, Default)]
pub(crate) struct FakeClock(Arc<AtomicU64>);

impl FakeClock {
    /// The time, then one millisecond more for the next read.
    fn tick(&self) -> u64 {
        self.advance(1_000_000)
    }

    /// Move the clock `nanos` forward (a sleep that returns at once); the time before.
    pub(crate) fn advance(&self, nanos: u64) -> u64 {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| Some(t.saturating_add(nanos)))
            .expect("the update always succeeds")
    }

    /// Move the clock forward to `instant` (nanoseconds), if it is not there yet.
    pub(crate) fn advance_to(&self, instant: u64) {
        self.0.fetch_max(instant, Ordering::Relaxed);
    }
}

impl wasmtime_wasi::HostMonotonicClock for FakeClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        self.tick()
    }
}

impl wasmtime_wasi::HostWallClock for FakeClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::from_nanos(self.tick())
    }
}

/// Which of a call's time limits ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overrun {
    /// The plugin's own CPU time.
    Cpu,
    /// Real time, host imports included.
    Wall,
}

/// Everything a call needs, owned by its store.
pub(crate) struct State {
    pub(crate) plugin: Arc<str>,
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) clock: FakeClock,
    pub(crate) limiter: MemoryLimiter,
    rng: StdRng,
    generator: Option<Arc<dyn Generator>>,
    generate_budget: u32,
    limits: Limits,
    log_records_left: u32,
    /// The last error-level record: the SDKs' panic hooks log the panic message there.
    pub(crate) last_error: Option<String>,
    call_start: Instant,
    /// Time spent in host imports, which the CPU deadline does not count.
    host_time: Duration,
    pub(crate) overrun: Option<Overrun>,
}

/// How a store is set up for one call.
pub(crate) struct CallSetup<'a> {
    pub plugin: Arc<str>,
    pub limits: &'a Limits,
    pub seed: u64,
    pub read_dir: Option<&'a std::path::Path>,
    pub generator: Option<Arc<dyn Generator>>,
    pub generate_budget: u32,
}

/// Where a `--plugin-allow-read` directory appears inside the plugin.
pub const GUEST_DATA_DIR: &str = "/data";

impl State {
    pub(crate) fn new(setup: CallSetup<'_>) -> std::io::Result<State> {
        let mut wasi = WasiCtx::builder();
        let clock = FakeClock::default();
        // Nothing is inherited: no args, env, stdio, network or real clocks.
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(clock.clone())
            .monotonic_clock(clock.clone())
            .secure_random(StdRng::seed_from_u64(setup.seed ^ 0x5eed_0001))
            .insecure_random(StdRng::seed_from_u64(setup.seed ^ 0x5eed_0002))
            .insecure_random_seed(u128::from(setup.seed));
        if let Some(dir) = setup.read_dir {
            wasi.preopened_dir(dir, GUEST_DATA_DIR, wasmtime_wasi::FsPerms::ReadOnly).map_err(std::io::Error::other)?;
        }
        Ok(State {
            plugin: setup.plugin,
            wasi: wasi.build(),
            table: ResourceTable::new(),
            clock,
            limiter: MemoryLimiter { limit: setup.limits.memory_bytes, refused: None },
            rng: StdRng::seed_from_u64(setup.seed),
            generator: setup.generator,
            generate_budget: setup.generate_budget,
            limits: setup.limits.clone(),
            log_records_left: setup.limits.max_log_records,
            last_error: None,
            call_start: Instant::now(),
            host_time: Duration::ZERO,
            overrun: None,
        })
    }

    /// Called on every epoch tick while guest code runs: whether the guest's own time
    /// (wall time minus time in host imports) and the call's real time are still within
    /// their limits.
    pub(crate) fn within_deadline(&mut self) -> bool {
        let wall = self.call_start.elapsed();
        if wall > self.limits.wall_timeout {
            self.overrun = Some(Overrun::Wall);
        } else if wall.saturating_sub(self.host_time) > self.limits.timeout {
            self.overrun = Some(Overrun::Cpu);
        }
        self.overrun.is_none()
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// How a generation request was refused; each contract version has its own error type.
enum Refused {
    Budget,
    Invalid(String),
    Failed(String),
}

impl State {
    fn write_log(&mut self, level: tracing::Level, message: String, fields: Vec<(String, String)>) {
        if self.log_records_left == 0 {
            return;
        }
        self.log_records_left -= 1;
        // One record is one line: a plugin must not write lines that look like the host's.
        let message = one_line(&truncate(message, MAX_MESSAGE_BYTES));
        let fields = one_line(&truncate(
            fields.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "),
            MAX_MESSAGE_BYTES,
        ));
        let plugin = &*self.plugin;
        match level {
            tracing::Level::TRACE => tracing::trace!(plugin, fields, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(plugin, fields, "{message}"),
            tracing::Level::INFO => tracing::info!(plugin, fields, "{message}"),
            tracing::Level::WARN => tracing::warn!(plugin, fields, "{message}"),
            tracing::Level::ERROR => {
                tracing::error!(plugin, fields, "{message}");
                self.last_error = Some(message);
            }
        }
        if self.log_records_left == 0 {
            tracing::warn!(plugin, "log record limit reached; further records of this call are dropped");
        }
    }

    fn complete(&mut self, requests: Vec<GenerateRequest>) -> Result<Vec<String>, Refused> {
        let Some(generator) = self.generator.clone() else {
            return Err(Refused::Failed("this host has no model to generate with".into()));
        };
        if requests.len() > self.generate_budget as usize {
            return Err(Refused::Budget);
        }
        for r in &requests {
            check_request(r, &self.limits).map_err(Refused::Invalid)?;
        }
        // Generation is host time the CPU deadline does not count; the wall limit does.
        if !self.within_deadline() {
            return Err(Refused::Failed(format!(
                "the call has used its real-time limit of {:?} (`wall-timeout`)",
                self.limits.wall_timeout
            )));
        }
        self.generate_budget -= requests.len() as u32;
        let max_tokens = self.limits.generate_max_tokens;
        let requests: Vec<GenerateRequest> =
            requests.into_iter().map(|r| GenerateRequest { max_tokens: r.max_tokens.min(max_tokens), ..r }).collect();
        let started = Instant::now();
        let _span = tracing::info_span!("generate", plugin = &*self.plugin, requests = requests.len()).entered();
        let result = generator.complete(&requests);
        self.host_time += started.elapsed();
        match result {
            Ok(texts) if texts.len() == requests.len() => Ok(texts),
            Ok(texts) => {
                Err(Refused::Failed(format!("the model answered {} of {} requests", texts.len(), requests.len())))
            }
            Err(e) => Err(Refused::Failed(e)),
        }
    }
}

/// A request is checked, size first, before anything of it is tokenized.
fn check_request(r: &GenerateRequest, limits: &Limits) -> Result<(), String> {
    if r.messages.is_empty() {
        return Err("a request has no messages".into());
    }
    if r.messages.len() > limits.generate_max_messages {
        return Err(format!(
            "a request has {} messages, more than the limit of {} (`generate-max-messages`)",
            r.messages.len(),
            limits.generate_max_messages
        ));
    }
    let bytes: usize = r.messages.iter().map(|m| m.role.len() + m.content.len()).sum();
    if bytes > limits.generate_max_request_bytes {
        return Err(format!(
            "a request has {bytes} bytes of messages, more than the limit of {} (`generate-max-request-bytes`)",
            limits.generate_max_request_bytes
        ));
    }
    if !(r.temperature.is_finite() && r.temperature >= 0.0) {
        return Err(format!("temperature {} is not a finite number >= 0", r.temperature));
    }
    if !(r.top_p > 0.0 && r.top_p <= 1.0) {
        return Err(format!("top-p {} is not in (0, 1]", r.top_p));
    }
    if let Some(m) = r.messages.iter().find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant")) {
        return Err(format!("unknown message role {}", quote(&m.role)));
    }
    Ok(())
}

/// The host side of one contract version's imports; every version's are the same
/// functions over their own generated types.
macro_rules! host_imports {
    ($v:ident) => {
        impl crate::bindings::$v::log::Host for State {
            fn write(
                &mut self,
                level: crate::bindings::$v::log::Level,
                message: String,
                fields: Vec<(String, String)>,
            ) {
                use crate::bindings::$v::log::Level as L;
                let level = match level {
                    L::Trace => tracing::Level::TRACE,
                    L::Debug => tracing::Level::DEBUG,
                    L::Info => tracing::Level::INFO,
                    L::Warn => tracing::Level::WARN,
                    L::Error => tracing::Level::ERROR,
                };
                self.write_log(level, message, fields)
            }
        }

        impl crate::bindings::$v::random::Host for State {
            fn next_u64(&mut self) -> u64 {
                self.rng.next_u64()
            }
        }

        impl crate::bindings::$v::types::Host for State {}

        impl crate::bindings::$v::generate::Host for State {
            fn complete(
                &mut self,
                requests: Vec<crate::bindings::$v::generate::Request>,
            ) -> Result<Vec<String>, crate::bindings::$v::generate::GenerateError> {
                use crate::bindings::$v::generate::GenerateError as E;
                let requests = requests
                    .into_iter()
                    .map(|r| GenerateRequest {
                        messages: r
                            .messages
                            .into_iter()
                            .map(|m| ChatMessage { role: m.role, content: m.content })
                            .collect(),
                        max_tokens: r.max_tokens,
                        temperature: r.temperature,
                        top_p: r.top_p,
                    })
                    .collect();
                State::complete(self, requests).map_err(|e| match e {
                    Refused::Budget => E::BudgetExhausted,
                    Refused::Invalid(m) => E::InvalidRequest(m),
                    Refused::Failed(m) => E::Failed(m),
                })
            }

            fn budget_left(&mut self) -> u32 {
                self.generate_budget
            }
        }
    };
}

host_imports!(current);
host_imports!(v0_1);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::current::{generate, log, types};

    fn state(limits: &Limits) -> State {
        with_generator(limits, None)
    }

    fn with_generator(limits: &Limits, generator: Option<Arc<dyn Generator>>) -> State {
        State::new(CallSetup { plugin: "p".into(), limits, seed: 1, read_dir: None, generator, generate_budget: 8 })
            .unwrap()
    }

    /// A model that counts the requests it was asked to answer.
    #[derive(Default)]
    struct Counting(std::sync::atomic::AtomicUsize);

    impl Generator for Counting {
        fn complete(&self, requests: &[GenerateRequest]) -> Result<Vec<String>, String> {
            self.0.fetch_add(requests.len(), Ordering::Relaxed);
            Ok(vec!["ok".into(); requests.len()])
        }
    }

    fn request(messages: usize, bytes_each: usize) -> generate::Request {
        let m = types::Message { role: "user".into(), content: "x".repeat(bytes_each) };
        generate::Request { messages: vec![m; messages], max_tokens: 8, temperature: 0.0, top_p: 1.0 }
    }

    #[test]
    fn records_past_the_limit_are_dropped() {
        let limits = Limits { max_log_records: 3, ..Limits::default() };
        let mut s = state(&limits);
        log::Host::write(&mut s, log::Level::Error, "first".into(), vec![]);
        assert_eq!(s.last_error.as_deref(), Some("first"));
        for _ in 0..2 {
            log::Host::write(&mut s, log::Level::Info, "filler".into(), vec![]);
        }
        log::Host::write(&mut s, log::Level::Error, "dropped".into(), vec![]);
        assert_eq!(s.last_error.as_deref(), Some("first"), "the fourth record is over the limit");
    }

    #[test]
    fn generate_without_a_model_is_refused() {
        let mut s = state(&Limits::default());
        let req = generate::Request {
            messages: vec![types::Message { role: "user".into(), content: "hi".into() }],
            max_tokens: 8,
            temperature: 0.0,
            top_p: 1.0,
        };
        assert!(matches!(generate::Host::complete(&mut s, vec![req]), Err(generate::GenerateError::Failed(_))));
    }

    #[test]
    fn oversized_requests_never_reach_the_model() {
        let model = Arc::new(Counting::default());
        let limits = Limits { generate_max_request_bytes: 1000, generate_max_messages: 4, ..Limits::default() };
        let mut s = with_generator(&limits, Some(model.clone()));
        let mut refused = |r| match generate::Host::complete(&mut s, vec![r]) {
            Err(generate::GenerateError::InvalidRequest(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(refused(request(1, 50 << 20)).contains("more than the limit of 1000 (`generate-max-request-bytes`)"));
        assert!(refused(request(1_000_000, 0)).contains("1000000 messages, more than the limit of 4"));
        assert_eq!(model.0.load(Ordering::Relaxed), 0);
        assert_eq!(generate::Host::complete(&mut s, vec![request(4, 240)]).unwrap(), ["ok"]);
        assert_eq!(generate::Host::budget_left(&mut s), 7, "refused requests cost no budget");
    }

    #[test]
    fn generation_stops_when_the_wall_limit_is_spent() {
        let model = Arc::new(Counting::default());
        let limits = Limits { wall_timeout: Duration::ZERO, ..Limits::default() };
        let mut s = with_generator(&limits, Some(model.clone()));
        let err = generate::Host::complete(&mut s, vec![request(1, 2)]).unwrap_err();
        assert!(matches!(&err, generate::GenerateError::Failed(m) if m.contains("`wall-timeout`")), "{err:?}");
        assert_eq!(model.0.load(Ordering::Relaxed), 0);
        assert_eq!(s.overrun, Some(Overrun::Wall));
    }

    #[test]
    fn log_records_cannot_forge_lines() {
        let mut s = state(&Limits::default());
        log::Host::write(&mut s, log::Level::Error, "boom\nINFO host: all fine".into(), vec![]);
        assert_eq!(s.last_error.as_deref(), Some("boom\\nINFO host: all fine"));
    }

    #[test]
    fn sleeping_moves_the_fake_clock_only() {
        let clock = FakeClock::default();
        assert_eq!(clock.advance(3_600_000_000_000), 0);
        assert_eq!(wasmtime_wasi::HostMonotonicClock::now(&clock), 3_600_000_000_000);
        clock.advance_to(10);
        assert_eq!(wasmtime_wasi::HostMonotonicClock::now(&clock), 3_600_001_000_000, "never backwards");
        let _ = clock.advance(u64::MAX);
        assert_eq!(wasmtime_wasi::HostMonotonicClock::now(&clock), u64::MAX, "saturates");
    }
}
