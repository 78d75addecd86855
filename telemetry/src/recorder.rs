//! The process-wide list of [`Event`]s: stages and the sandbox note what they did here, the
//! binary takes them at the end of the process and writes them ([`crate::write::flush`]).
//! Noting never fails and never blocks for long; the list is bounded.

use std::sync::Mutex;

use crate::model::Event;

/// More events than one berth process makes (one per image, pull, stage, reaped object).
const MAX_EVENTS: usize = 10_000;

static EVENTS: Mutex<Vec<Event>> = Mutex::new(Vec::new());

/// Notes `event` for this process's metrics.
pub fn note(event: Event) {
    let mut events = EVENTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if events.len() < MAX_EVENTS {
        events.push(event);
    }
}

/// Every event noted so far, leaving none.
pub fn take() -> Vec<Event> {
    std::mem::take(
        &mut *EVENTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noted_events_are_taken_once() {
        note(Event::ReapLeft { count: 3 });
        note(Event::BaseStoreSize { bytes: 9 });
        let taken = take();
        assert!(taken.contains(&Event::ReapLeft { count: 3 }), "{taken:?}");
        assert!(take().is_empty());
    }
}
