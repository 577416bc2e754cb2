//! What one plugin call's store holds, and the host side of the plugin's imports:
//! logging, the seeded random source, `generate`, and a WASI context that grants nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng, rngs::StdRng};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{generate, log, random, types};
use crate::limits::Limits;
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

/// The clock a WASI guest sees: it starts at zero and ticks one millisecond per read, so
/// plugins cannot observe real time and runs stay reproducible.
#[derive(Default)]
struct TickingClock(std::sync::atomic::AtomicU64);

impl TickingClock {
    fn tick(&self) -> u64 {
        self.0.fetch_add(1_000_000, std::sync::atomic::Ordering::Relaxed)
    }
}

impl wasmtime_wasi::HostMonotonicClock for TickingClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        self.tick()
    }
}

impl wasmtime_wasi::HostWallClock for TickingClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::from_nanos(self.tick())
    }
}

/// Everything a call needs, owned by its store.
pub(crate) struct State {
    pub(crate) plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    rng: StdRng,
    generator: Option<Arc<dyn Generator>>,
    generate_budget: u32,
    generate_max_tokens: u32,
    log_records_left: u32,
    /// The last error-level record: the SDKs' panic hooks log the panic message there.
    pub(crate) last_error: Option<String>,
    call_start: Instant,
    /// Time spent in host imports, which the CPU deadline does not count.
    host_time: Duration,
    timeout: Duration,
    pub(crate) timed_out: bool,
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
        // Nothing is inherited: no args, env, stdio, network or real clocks.
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(TickingClock::default())
            .monotonic_clock(TickingClock::default())
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
            limiter: MemoryLimiter { limit: setup.limits.memory_bytes, refused: None },
            rng: StdRng::seed_from_u64(setup.seed),
            generator: setup.generator,
            generate_budget: setup.generate_budget,
            generate_max_tokens: setup.limits.generate_max_tokens,
            log_records_left: setup.limits.max_log_records,
            last_error: None,
            call_start: Instant::now(),
            host_time: Duration::ZERO,
            timeout: setup.limits.timeout,
            timed_out: false,
        })
    }

    /// Called on every epoch tick while guest code runs: whether the guest's own time
    /// (wall time minus time in host imports) is still within the deadline.
    pub(crate) fn within_deadline(&mut self) -> bool {
        let guest = self.call_start.elapsed().saturating_sub(self.host_time);
        self.timed_out = guest > self.timeout;
        !self.timed_out
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Longest log message kept; longer ones are cut so a plugin cannot flood the log.
const MAX_LOG_BYTES: usize = 4096;

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

impl log::Host for State {
    fn write(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        if self.log_records_left == 0 {
            return;
        }
        self.log_records_left -= 1;
        let message = truncate(message, MAX_LOG_BYTES);
        let fields =
            truncate(fields.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "), MAX_LOG_BYTES);
        let plugin = &*self.plugin;
        match level {
            log::Level::Trace => tracing::trace!(plugin, fields, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, fields, "{message}"),
            log::Level::Info => tracing::info!(plugin, fields, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, fields, "{message}"),
            log::Level::Error => {
                tracing::error!(plugin, fields, "{message}");
                self.last_error = Some(message);
            }
        }
        if self.log_records_left == 0 {
            tracing::warn!(plugin, "log record limit reached; further records of this call are dropped");
        }
    }
}

impl random::Host for State {
    fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }
}

impl types::Host for State {}

fn check_request(r: &generate::Request) -> Result<(), String> {
    if r.messages.is_empty() {
        return Err("a request has no messages".into());
    }
    if !(r.temperature.is_finite() && r.temperature >= 0.0) {
        return Err(format!("temperature {} is not a finite number >= 0", r.temperature));
    }
    if !(r.top_p > 0.0 && r.top_p <= 1.0) {
        return Err(format!("top-p {} is not in (0, 1]", r.top_p));
    }
    if let Some(m) = r.messages.iter().find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant")) {
        return Err(format!("unknown message role `{}`", m.role.escape_debug()));
    }
    Ok(())
}

impl generate::Host for State {
    fn complete(&mut self, requests: Vec<generate::Request>) -> Result<Vec<String>, generate::GenerateError> {
        let Some(generator) = self.generator.clone() else {
            return Err(generate::GenerateError::Failed("this host has no model to generate with".into()));
        };
        if requests.len() > self.generate_budget as usize {
            return Err(generate::GenerateError::BudgetExhausted);
        }
        for r in &requests {
            check_request(r).map_err(generate::GenerateError::InvalidRequest)?;
        }
        self.generate_budget -= requests.len() as u32;
        let requests: Vec<GenerateRequest> = requests
            .into_iter()
            .map(|r| GenerateRequest {
                messages: r.messages.into_iter().map(|m| ChatMessage { role: m.role, content: m.content }).collect(),
                max_tokens: r.max_tokens.min(self.generate_max_tokens),
                temperature: r.temperature,
                top_p: r.top_p,
            })
            .collect();
        let started = Instant::now();
        let _span = tracing::info_span!("generate", plugin = &*self.plugin, requests = requests.len()).entered();
        let result = generator.complete(&requests);
        self.host_time += started.elapsed();
        match result {
            Ok(texts) if texts.len() == requests.len() => Ok(texts),
            Ok(texts) => Err(generate::GenerateError::Failed(format!(
                "the model answered {} of {} requests",
                texts.len(),
                requests.len()
            ))),
            Err(e) => Err(generate::GenerateError::Failed(e)),
        }
    }

    fn budget_left(&mut self) -> u32 {
        self.generate_budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(limits: &Limits) -> State {
        State::new(CallSetup {
            plugin: "p".into(),
            limits,
            seed: 1,
            read_dir: None,
            generator: None,
            generate_budget: 0,
        })
        .unwrap()
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
    fn long_messages_are_cut_on_a_char_boundary() {
        let cut = truncate("é".repeat(10), 5);
        assert_eq!(cut, "éé…");
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
}
