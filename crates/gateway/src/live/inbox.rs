//! Rings this process's inbox bell ([`mcp_domain::inbox::InboxBell`]) for messages sent
//! through any gateway instance: one [`Tap`] on the live-event hub (the process's one Redis
//! subscription), from which every `message_sent` event rings the readers it may concern.
//! When the subscription was lost and came back (`Resync`), or this reader lagged so far that
//! the hub cut its tap off, events may have been missed: every waiting reader is rung and
//! reads the durable store again. When the hub closes (the gateway shuts down), the bell is
//! closed: waiting calls answer at once instead of holding the graceful shutdown.

use super::{Delivery, Hub, Tap};
use mcp_api::EventType;
use mcp_domain::inbox::InboxBell;
use serde_json::Value;
use std::sync::{Arc, Weak};

/// Taps `hub` (now, synchronously: events from here on are queued) and rings `bell` from it
/// until the hub closes or is dropped.
pub fn start(hub: &Hub, bell: Arc<InboxBell>) {
    let tap = hub.tap_of(EventType::MessageSent);
    tokio::spawn(run(Arc::downgrade(&hub.inner), hub.closing(), tap, bell));
}

async fn run(
    hub: Weak<super::hub::Inner>,
    closing: tokio_util::sync::CancellationToken,
    mut tap: Tap,
    bell: Arc<InboxBell>,
) {
    loop {
        let delivery = tokio::select! {
            d = tap.recv() => d,
            () = closing.cancelled() => {
                // Shutdown: waiting long polls answer now instead of holding the drain.
                bell.close();
                return;
            }
        };
        match delivery {
            Some(Delivery::Event(live)) if live.event.kind == EventType::MessageSent => {
                ring(&bell, &live.event.task_id, &live.event.data);
            }
            Some(Delivery::Event(_)) => {}
            Some(Delivery::Resync) => bell.ring_all(),
            None if closing.is_cancelled() => {
                bell.close();
                return;
            }
            None => {
                let Some(inner) = hub.upgrade() else { return };
                tracing::warn!(reason = ?tap.end_reason(), "inbox wake-ups lagged; re-tapping");
                tap = Hub { inner }.tap_of(EventType::MessageSent);
                bell.ring_all();
            }
        }
    }
}

/// Rings for one `message_sent` event's `data.to` (`["*"]`: everyone on the task).
fn ring(bell: &InboxBell, task: &str, data: &Value) {
    let to: Vec<String> = data
        .get("to")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if to.is_empty() || to.iter().any(|a| a == mcp_api::messages::EVERYONE) {
        bell.ring(task, None);
    } else {
        bell.ring(task, Some(&to));
    }
}
