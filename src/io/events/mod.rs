//! The event stream at the edge: [`EventHub`] hands every event the daemon reports to the
//! subscribers (clients of `statewall events`, the JSON event log), each through its own
//! bounded queue.
//!
//! Publishing never blocks and never locks: the subscriber list is read through an
//! `ArcSwap` (one atomic load: with nobody subscribed, that is all a publish costs), and each
//! subscriber's queue is a fixed-size lock-free ring. A subscriber that does not keep up
//! loses the events its ring has no room for; they are counted (per subscriber, and in
//! total), and the subscriber is told how many it lost. The packet path is never slowed by a
//! slow reader.
//!
//! While anyone is subscribed, the engine builds connection and drop events
//! ([`Interest::ALL`]); the hub tells it through the callback it was made with.
//!
//! - [`json`]: one event as a JSON object (what `statewall events --json` prints).
//! - [`log`]: the JSON event log file, reopened on SIGHUP.

pub mod json;
pub mod log;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;

use crate::event::{Event, Interest};

/// An event with the wall-clock time it was published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamped {
    /// When.
    pub time: SystemTime,
    /// What.
    pub event: Event,
}

/// One subscriber's bounded queue.
#[derive(Debug)]
pub struct Subscriber {
    queue: ArrayQueue<Arc<Stamped>>,
    /// Events lost because the queue was full, not yet told to the subscriber.
    lost: AtomicU64,
}

/// Called with the union of what the subscribers want whenever it changes.
type InterestHook = Box<dyn Fn(Interest) + Send + Sync>;

/// Counters of the hub, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Subscribers now.
    pub subscribers: u64,
    /// Events handed to at least one subscriber.
    pub published: u64,
    /// Events lost by a subscriber whose queue was full (one per subscriber and event).
    pub lost: u64,
}

/// Fans events out to the subscribers.
pub struct EventHub {
    subscribers: ArcSwap<Vec<Arc<Subscriber>>>,
    /// Serialises subscribe/unsubscribe (never taken by a publisher).
    changes: Mutex<()>,
    on_interest: InterestHook,
    published: AtomicU64,
    lost: AtomicU64,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub")
            .field("subscribers", &self.subscribers.load().len())
            .finish_non_exhaustive()
    }
}

impl EventHub {
    /// A hub without subscribers; `on_interest` hears what the subscribers want (the daemon
    /// passes it on to the engine).
    pub fn new(on_interest: impl Fn(Interest) + Send + Sync + 'static) -> EventHub {
        EventHub {
            subscribers: ArcSwap::from_pointee(Vec::new()),
            changes: Mutex::new(()),
            on_interest: Box::new(on_interest),
            published: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        }
    }

    /// Hands `event` to every subscriber whose queue has room; counts the others' loss.
    pub fn publish(&self, event: &Event) {
        let subscribers = self.subscribers.load();
        if subscribers.is_empty() {
            return;
        }
        let stamped = Arc::new(Stamped {
            time: SystemTime::now(),
            event: event.clone(),
        });
        self.published.fetch_add(1, Ordering::Relaxed);
        for s in subscribers.iter() {
            if s.queue.push(Arc::clone(&stamped)).is_err() {
                s.lost.fetch_add(1, Ordering::Relaxed);
                self.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A new subscriber with room for `capacity` events (at least 1); it stays subscribed
    /// until the [`Subscription`] is dropped.
    pub fn subscribe(self: &Arc<Self>, capacity: usize) -> Subscription {
        let sub = Arc::new(Subscriber {
            queue: ArrayQueue::new(capacity.max(1)),
            lost: AtomicU64::new(0),
        });
        self.change(|list| list.push(Arc::clone(&sub)));
        Subscription {
            hub: Arc::clone(self),
            sub,
        }
    }

    fn change(&self, f: impl FnOnce(&mut Vec<Arc<Subscriber>>)) {
        let _guard = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut list = Vec::clone(&self.subscribers.load());
        f(&mut list);
        let interest = if list.is_empty() {
            Interest::default()
        } else {
            Interest::ALL
        };
        self.subscribers.store(Arc::new(list));
        (self.on_interest)(interest);
    }

    /// The hub's counters.
    pub fn stats(&self) -> HubStats {
        HubStats {
            subscribers: self.subscribers.load().len() as u64,
            published: self.published.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
        }
    }
}

/// A subscription: events arrive in its queue until it is dropped.
#[derive(Debug)]
pub struct Subscription {
    hub: Arc<EventHub>,
    sub: Arc<Subscriber>,
}

impl Subscription {
    /// The next event, if one is waiting.
    pub fn next(&self) -> Option<Arc<Stamped>> {
        self.sub.queue.pop()
    }

    /// How many events were lost since the last call (and resets the count).
    pub fn take_lost(&self) -> u64 {
        self.sub.lost.swap(0, Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let me = Arc::clone(&self.sub);
        self.hub
            .change(|list| list.retain(|s| !Arc::ptr_eq(s, &me)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::BlockEvent;
    use std::sync::atomic::AtomicU8;

    fn event(n: u8) -> Event {
        let src = std::net::IpAddr::from([198, 51, 100, n]);
        Event::Block(BlockEvent::Unblock {
            src,
            net: ipnet::IpNet::from(src),
        })
    }

    #[test]
    fn subscribers_get_events_and_a_slow_one_loses_them_counted() {
        let interest = Arc::new(AtomicU8::new(0));
        let hub = Arc::new(EventHub::new({
            let interest = Arc::clone(&interest);
            move |i| interest.store(i.bits(), Ordering::Relaxed)
        }));
        hub.publish(&event(1));
        assert_eq!(hub.stats().published, 0, "nobody listens: nothing is built");
        let fast = hub.subscribe(16);
        let slow = hub.subscribe(2);
        assert_eq!(
            Interest::from_bits(interest.load(Ordering::Relaxed)),
            Interest::ALL
        );
        for n in 0..5 {
            hub.publish(&event(n));
        }
        let got: Vec<Event> = std::iter::from_fn(|| fast.next())
            .map(|s| s.event.clone())
            .collect();
        assert_eq!(got, (0..5).map(event).collect::<Vec<_>>());
        assert_eq!(fast.take_lost(), 0);
        assert_eq!(slow.next().map(|s| s.event.clone()), Some(event(0)));
        assert_eq!(slow.next().map(|s| s.event.clone()), Some(event(1)));
        assert!(slow.next().is_none());
        assert_eq!(slow.take_lost(), 3);
        assert_eq!(slow.take_lost(), 0, "told once");
        assert_eq!(
            hub.stats(),
            HubStats {
                subscribers: 2,
                published: 5,
                lost: 3
            }
        );
        drop(fast);
        assert_ne!(interest.load(Ordering::Relaxed), 0, "one left");
        drop(slow);
        assert_eq!(interest.load(Ordering::Relaxed), 0, "nobody left");
        assert_eq!(hub.stats().subscribers, 0);
    }
}
