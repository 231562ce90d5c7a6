//! Publishing records: where finished windows go. Every destination is a
//! [`Sink`] — the line and protobuf files and stdout ([`sinks::file`]), the
//! embedded Logstore ([`sinks::logstore`]), NATS JetStream
//! ([`sinks::jetstream`]) — each owning its configuration section and its
//! figures, laid out as `sinks/<name>/`. The [`fanout`] runs each sink as a
//! tokio task of its own (blocking file I/O on the blocking pool), hands
//! every window to all of them, and tells the engine when a window is in
//! every sink, so the journal can let it go.

pub mod fanout;
pub mod sinks;

use crate::engine::WindowRecords;

/// What became of windows in one sink after one call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Taken {
    /// Journal numbers of the windows this sink is done with: written, or
    /// given up on and counted. The window just handed over, and kept
    /// ones a retry wrote.
    pub resolved: Vec<u64>,
    /// The window just handed over could not be written (counted by the
    /// sink; its records are not in it).
    pub failed: bool,
}

/// A destination for finished windows.
///
/// Calls run on the blocking pool, one at a time per sink, windows in
/// order: a sink may write files and fsync without holding up the agent.
pub trait Sink: Send + 'static {
    /// Short name for logs and labels (`json-file:/var/log/flows.jsonl`).
    fn name(&self) -> &str;
    /// Takes one window: writes it, queues it, or keeps it for a retry.
    fn take(&mut self, window: &WindowRecords) -> Taken;
    /// Windows kept for a later try (the fan-out retries while any are).
    fn kept(&self) -> usize {
        0
    }
    /// Tries kept windows again.
    fn retry(&mut self) -> Taken {
        Taken::default()
    }
    /// The agent is stopping: a last, bounded chance for what is kept.
    /// What is still kept stays in the journal for the next start.
    fn close(&mut self) -> Taken {
        self.retry()
    }
}
