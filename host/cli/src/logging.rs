//! Tracing output: the `--log` filter on stderr, and, once a command names one, a log
//! file (`RUN_DIR/run.log` for `run`) that records every phase at `info` with its time.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, fmt};

static FILE: OnceLock<Mutex<File>> = OnceLock::new();

/// The target of the event that records a command's failure in the log file.
pub const FAILURE_TARGET: &str = "eva_host::failure";
const FAILURE: &str = "eva_host::failure=off";

/// Writes to the log file once [`to_file`] opened one; before that, nowhere.
struct FileWriter;

impl Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match FILE.get() {
            Some(file) => file.lock().unwrap_or_else(|e| e.into_inner()).write(buf),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match FILE.get() {
            Some(file) => file.lock().unwrap_or_else(|e| e.into_inner()).flush(),
            None => Ok(()),
        }
    }
}

/// Warnings, and every record a plugin logs (the runtime writes them under its `state`
/// module, with the plugin's name).
pub const PLUGIN_RECORDS: &str = "warn,eva_plugin_runtime::state=trace";

pub fn init(stderr_filter: &str) {
    // The terminal already gets the error as `error: ...`; only the file needs the event.
    let quiet = FAILURE.parse().expect("a valid directive");
    let stderr_filter = EnvFilter::try_new(stderr_filter).unwrap_or_else(|_| EnvFilter::new("warn"));
    // Colour only for a terminal: stderr redirected to a file gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let stderr =
        fmt::layer().with_ansi(ansi).with_writer(std::io::stderr).with_filter(stderr_filter.add_directive(quiet));
    let file = fmt::layer()
        .with_ansi(false)
        .with_span_events(FmtSpan::CLOSE)
        .with_writer(|| FileWriter)
        .with_filter(EnvFilter::new("info"));
    tracing_subscriber::registry().with(stderr).with(file).init();
}

/// From now on, also log to `path` (appended: a resumed run continues its log).
pub fn to_file(path: &Path) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    // A second call keeps the first file.
    let _ = FILE.set(Mutex::new(file));
    Ok(())
}
