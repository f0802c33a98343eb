//! What a face holds to talk to a run: the engine in this process, or a run
//! served on its control socket. Both carry the same commands and events.

use std::future::Future;

use crate::engine::{Command, EngineHandle, Event};

pub(crate) trait Link {
    /// Sends a command; false if it was not taken (the run is gone or busy).
    fn send(&self, cmd: Command) -> bool;
    /// The next event; `None` once the run has ended.
    fn next_event(&mut self) -> impl Future<Output = Option<Event>> + Send;
    /// An event already waiting, if any.
    fn try_next_event(&mut self) -> Option<Event>;
    /// The user interrupted the run with `signal` (a Shutdown follows): a run
    /// in another process records it for its exit status.
    fn interrupted(&self, _signal: i32) {}
}

impl Link for EngineHandle {
    fn send(&self, cmd: Command) -> bool {
        EngineHandle::send(self, cmd)
    }
    fn next_event(&mut self) -> impl Future<Output = Option<Event>> + Send {
        EngineHandle::next_event(self)
    }
    fn try_next_event(&mut self) -> Option<Event> {
        EngineHandle::try_next_event(self)
    }
}
