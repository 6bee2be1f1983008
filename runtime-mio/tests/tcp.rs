//! The shared runtime test suite (tests/suite) on the mio runtime.

#[macro_use]
mod suite;

runtime_suite!(p2p_chat_runtime_mio::MioRuntime);
