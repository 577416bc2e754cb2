//! Glue the export macros expand to; not part of the API.

use std::any::Any;
use std::cell::RefCell;

use crate::{Config, ConfigEntry, Metadata, Plugin, PluginError};

thread_local! {
    /// The configured plugin value: one per instance, and the host makes a fresh
    /// instance for every call.
    static STATE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// Report panics through the log import with their location, once per instance.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_owned());
            let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
            crate::log::error(&format!("panicked at {location}: {message}"));
        }));
    });
}

pub fn metadata<T: Plugin>() -> Metadata {
    install_panic_hook();
    T::metadata()
}

pub fn configure<T: Plugin>(entries: Vec<ConfigEntry>) -> Result<(), PluginError> {
    install_panic_hook();
    let config = Config::new(&T::metadata(), entries)?;
    let plugin = T::from_config(&config)?;
    STATE.with(|s| *s.borrow_mut() = Some(Box::new(plugin)));
    Ok(())
}

pub fn with<T: Plugin, R>(f: impl FnOnce(&mut T) -> Result<R, PluginError>) -> Result<R, PluginError> {
    install_panic_hook();
    if STATE.with(|s| s.borrow().is_none()) {
        configure::<T>(Vec::new())?;
    }
    STATE.with(|s| {
        let mut state = s.borrow_mut();
        let plugin = state
            .as_mut()
            .and_then(|b| b.downcast_mut::<T>())
            .ok_or_else(|| PluginError::Internal("plugin state has the wrong type".into()))?;
        f(plugin)
    })
}
