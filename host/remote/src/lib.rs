//! eva's engines on servers. A policy served by one or more OpenAI-compatible servers
//! (vLLM, llama.cpp's `llama-server`, a hosted API) answers the loop's prompts and serves
//! the evolver's `generate`, behind the same seams as the in-process engine:
//!
//! - [`client`]: one endpoint: its base URL, an API key from the environment (never
//!   written anywhere), retries with backoff on lost connections and 5xx answers, and
//!   errors that name the endpoint and say what the server said;
//! - [`policy`]: [`policy::RemotePolicy`], `eva_loop::run::Policy` over a set of
//!   endpoints: prompts are spread over every endpoint with a bounded number of requests
//!   in flight on each, and each prompt's seed is derived from the run's seed and the
//!   prompt's id, so the answers do not depend on how the prompts were spread;
//! - [`handoff`]: θ_{t+1} handed to the servers as one LoRA adapter over the base they
//!   serve (the iterations' updates stacked, exactly);
//! - [`reference`]: the DPO reference log-probs of θ_t from the servers;
//! - [`reward`]: the judge and the reward model on servers.

pub mod client;
pub mod handoff;
pub mod policy;
pub mod reference;
pub mod reward;

#[cfg(test)]
mod fake;
