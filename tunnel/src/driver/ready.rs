//! Which connections need a pump this turn, without a pass over all of
//! them: each connection polls its OS socket (and its pending connect) with
//! a waker of its own, which queues the connection's key and wakes the
//! driver task. The driver then pumps the queued connections plus those of
//! peers whose in-tunnel stack ran (the other source of news).

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Wake, Waker};

/// Keys whose OS side became ready, and the task to wake for them.
#[derive(Debug)]
pub(crate) struct ReadySet<K> {
    inner: Arc<Inner<K>>,
}

#[derive(Debug)]
struct Inner<K> {
    queue: Mutex<Vec<K>>,
    task: Mutex<Option<Waker>>,
}

/// The waker one connection polls its sockets with.
struct KeyWaker<K> {
    key: K,
    inner: Arc<Inner<K>>,
}

impl<K: Copy + Send + Sync + 'static> Wake for KeyWaker<K> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.inner
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(self.key);
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl<K: Copy + Send + Sync + 'static> Default for ReadySet<K> {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                queue: Mutex::new(Vec::new()),
                task: Mutex::new(None),
            }),
        }
    }
}

impl<K: Copy + Send + Sync + 'static> ReadySet<K> {
    /// A waker that queues `key` (and wakes the task) when woken.
    pub(crate) fn waker(&self, key: K) -> Waker {
        Waker::from(Arc::new(KeyWaker {
            key,
            inner: self.inner.clone(),
        }))
    }

    /// The driver task's current waker, woken whenever a key is queued.
    pub(crate) fn set_task(&self, waker: &Waker) {
        let mut task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !task.as_ref().is_some_and(|t| t.will_wake(waker)) {
            *task = Some(waker.clone());
        }
    }

    /// Queue a key by hand (a new connection's first pump).
    pub(crate) fn push(&self, key: K) {
        self.inner
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(key);
    }

    /// The keys queued since the last call (possibly repeated).
    pub(crate) fn drain(&self) -> Vec<K> {
        std::mem::take(
            &mut *self
                .inner
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_woken_key_is_queued_and_wakes_the_task() {
        let set: ReadySet<u32> = ReadySet::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        set.set_task(&Waker::from(count.clone()));
        let a = set.waker(1);
        let b = set.waker(2);
        assert!(set.drain().is_empty());
        b.wake_by_ref();
        a.wake();
        assert_eq!(set.drain(), vec![2, 1]);
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert!(set.drain().is_empty(), "drained once");
        set.push(3);
        assert_eq!(set.drain(), vec![3]);
    }
}
