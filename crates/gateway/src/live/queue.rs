//! A watcher's queue of deliveries: bounded, one sender (the hub's entry) and one receiver
//! (the watcher). What tokio's `mpsc` channel gave the hub, in less memory (issue #19: its
//! cache-padded channel and first block of 32 slots were ~0.5 KiB of every idle watcher; this
//! is one allocation of ~100 bytes, and a small buffer once deliveries have come).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

struct State<T> {
    items: VecDeque<T>,
    /// The receiver's waker while it waits.
    waker: Option<Waker>,
    /// The sender is gone: the receiver drains what is queued, then ends.
    sender_gone: bool,
    /// The receiver is gone: nothing more is accepted.
    receiver_gone: bool,
    /// An item was refused for the queue being full (the hub then cuts the receiver off).
    overflowed: bool,
}

struct Shared<T> {
    capacity: usize,
    state: Mutex<State<T>>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why [`Sender::try_send`] refused an item.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SendError {
    /// The queue holds `capacity` items.
    Full,
    /// The receiver was dropped.
    Closed,
}

/// Why [`Receiver::try_recv`] has nothing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RecvError {
    /// Nothing queued now.
    Empty,
    /// Nothing queued, and the sender is gone.
    Ended,
}

/// The sending half; dropping it ends the queue (after what is queued).
pub(crate) struct Sender<T>(Arc<Shared<T>>);

/// The receiving half.
pub(crate) struct Receiver<T>(Arc<Shared<T>>);

/// A queue of at most `capacity` items (at least 1).
pub(crate) fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        capacity: capacity.max(1),
        state: Mutex::new(State {
            items: VecDeque::new(),
            waker: None,
            sender_gone: false,
            receiver_gone: false,
            overflowed: false,
        }),
    });
    (Sender(shared.clone()), Receiver(shared))
}

/// Wakes the receiver if it waits, after letting the lock go.
fn wake_receiver<T>(mut state: MutexGuard<'_, State<T>>) {
    let waker = state.waker.take();
    drop(state);
    if let Some(w) = waker {
        w.wake();
    }
}

impl<T> Sender<T> {
    /// Queues `item` without waiting.
    pub(crate) fn try_send(&self, item: T) -> Result<(), SendError> {
        let mut state = self.0.lock();
        if state.receiver_gone {
            return Err(SendError::Closed);
        }
        if state.items.len() >= self.0.capacity {
            state.overflowed = true;
            return Err(SendError::Full);
        }
        state.items.push_back(item);
        wake_receiver(state);
        Ok(())
    }

    /// Items queued now.
    pub(crate) fn len(&self) -> usize {
        self.0.lock().items.len()
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.sender_gone = true;
        wake_receiver(state);
    }
}

impl<T> Receiver<T> {
    /// The next item, in order; `None` once the sender is gone and the queue drained.
    /// Cancel-safe: an item is taken only when this returns it.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| {
            let mut state = self.0.lock();
            if let Some(item) = state.items.pop_front() {
                return Poll::Ready(Some(item));
            }
            if state.sender_gone {
                return Poll::Ready(None);
            }
            match &mut state.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    /// An item if one is queued, without waiting.
    pub(crate) fn try_recv(&mut self) -> Result<T, RecvError> {
        let mut state = self.0.lock();
        match state.items.pop_front() {
            Some(item) => Ok(item),
            None if state.sender_gone => Err(RecvError::Ended),
            None => Err(RecvError::Empty),
        }
    }

    /// Items queued now.
    pub(crate) fn len(&self) -> usize {
        self.0.lock().items.len()
    }

    /// Whether an item was ever refused for the queue being full.
    pub(crate) fn overflowed(&self) -> bool {
        self.0.lock().overflowed
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.receiver_gone = true;
        state.waker = None;
        // What was queued goes now, not with the sender.
        let items = std::mem::take(&mut state.items);
        drop(state);
        drop(items);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn items_come_out_in_order_then_the_end_after_the_sender_goes() {
        let (tx, mut rx) = bounded(3);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        tx.try_send(3).unwrap();
        assert!(!rx.overflowed());
        assert_eq!(tx.try_send(4), Err(SendError::Full));
        assert!(rx.overflowed());
        assert_eq!(tx.len(), 3);
        assert_eq!(rx.recv().await, Some(1));
        tx.try_send(4).unwrap();
        drop(tx);
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.recv().await, Some(3));
        assert_eq!(rx.recv().await, Some(4));
        assert_eq!(rx.recv().await, None);
        assert_eq!(rx.try_recv(), Err(RecvError::Ended));
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_on_a_send_and_on_the_end() {
        let (tx, mut rx) = bounded::<u32>(1);
        assert_eq!(rx.try_recv(), Err(RecvError::Empty));
        let waiter = tokio::spawn(async move {
            let first = rx.recv().await;
            let second = rx.recv().await;
            (first, second)
        });
        tokio::task::yield_now().await;
        tx.try_send(7).unwrap();
        tokio::task::yield_now().await;
        drop(tx);
        assert_eq!(waiter.await.unwrap(), (Some(7), None));
    }

    #[tokio::test]
    async fn a_dropped_receiver_refuses_what_follows() {
        let (tx, rx) = bounded::<u32>(4);
        tx.try_send(1).unwrap();
        drop(rx);
        assert_eq!(tx.try_send(2), Err(SendError::Closed));
        assert_eq!(tx.len(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_recv_loses_nothing() {
        let (tx, mut rx) = bounded::<u32>(4);
        // Polled once (nothing queued) and dropped.
        assert_eq!(futures::FutureExt::now_or_never(rx.recv()), None);
        tx.try_send(5).unwrap();
        assert_eq!(rx.recv().await, Some(5));
    }
}
