//! The activator gate: admission to a function's ready capacity, and the bounded FIFO queue
//! where requests wait while instances start or free up.
//!
//! Capacity is what the sandbox has *ready* (warm instances × executions per instance), not
//! what the autoscaler asked for: a request is let through only when an instance is warm for
//! it, so it never pays instantiation. Scale-down lowers capacity first, and the sandbox is
//! stopped only once `busy` has drained to zero.
//!
//! Invariants, all under the one lock: `busy` counts permits handed out and not yet dropped;
//! a waiter is handed a permit only while `busy < capacity`; a permit sent to a waiter that
//! gave up (timed out, or its request was dropped) is taken back, never leaked.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateError {
    /// `depth` requests are already waiting.
    QueueFull,
    /// No capacity freed up within the queue timeout.
    TimedOut,
}

struct State {
    capacity: u32,
    busy: u32,
    /// Waiters in arrival order. Some may have given up: their send fails and the permit
    /// goes to the next one.
    waiters: VecDeque<oneshot::Sender<()>>,
    /// Waiters still waiting (the queue length reported and bounded).
    queued: u32,
    /// Requests that ever had to wait (a counter).
    queued_total: u64,
}

pub struct Gate {
    state: Mutex<State>,
    depth: u32,
    /// Signalled whenever `busy` drops to zero.
    idle: Notify,
}

/// One admitted execution; dropping it frees the capacity for the next waiter. It owns its
/// gate: a streamed response carries it until its last piece (`dispatch/stream.rs`).
pub struct Permit(Arc<Gate>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A place in the queue. Dropped without a permit (timeout, or the request went away), it
/// leaves the queue; a permit that raced in meanwhile is given back.
struct Waiting<'a> {
    gate: &'a Gate,
    rx: oneshot::Receiver<()>,
    done: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.rx.close();
        let raced = self.rx.try_recv().is_ok();
        {
            let mut s = self.gate.state.lock();
            s.queued = s.queued.saturating_sub(1);
        }
        if raced {
            self.gate.release();
        }
    }
}

impl Gate {
    pub fn new(capacity: u32, depth: u32) -> Self {
        Gate {
            state: Mutex::new(State {
                capacity,
                busy: 0,
                waiters: VecDeque::new(),
                queued: 0,
                queued_total: 0,
            }),
            depth,
            idle: Notify::new(),
        }
    }

    /// Admit now, or wait in the queue up to `timeout`. `on_queue` runs once if the request
    /// has to wait (the dispatcher pokes the autoscaler from it), with the capacity it found.
    pub async fn enter(
        self: &Arc<Self>,
        timeout: Duration,
        on_queue: impl FnOnce(u32),
    ) -> Result<Permit, GateError> {
        let (rx, capacity) = {
            let mut s = self.state.lock();
            // Waiters first (FIFO). `queued` also counts waiters already handed a permit
            // but not yet running, so admission asks the deque, after a hand-off that
            // drops senders whose waiter gave up: free capacity never sits behind them.
            Self::hand_off(&mut s);
            if s.busy < s.capacity && s.waiters.is_empty() {
                s.busy += 1;
                return Ok(Permit(self.clone()));
            }
            if s.queued >= self.depth {
                return Err(GateError::QueueFull);
            }
            // Senders whose waiter gave up pile up only between hand-offs: bound them.
            if s.waiters.len() > 2 * (self.depth as usize) + 16 {
                s.waiters.retain(|w| !w.is_closed());
            }
            let (tx, rx) = oneshot::channel();
            s.waiters.push_back(tx);
            s.queued += 1;
            s.queued_total += 1;
            (rx, s.capacity)
        };
        let mut waiting = Waiting {
            gate: self,
            rx,
            done: false,
        };
        on_queue(capacity);
        match tokio::time::timeout(timeout, &mut waiting.rx).await {
            Ok(Ok(())) => {
                waiting.done = true;
                self.state.lock().queued -= 1;
                Ok(Permit(self.clone()))
            }
            // Timed out (a permit that raced in is returned by Waiting's drop).
            _ => Err(GateError::TimedOut),
        }
    }

    fn release(&self) {
        let mut s = self.state.lock();
        s.busy -= 1;
        Self::hand_off(&mut s);
        if s.busy == 0 {
            self.idle.notify_waiters();
        }
    }

    /// Give free capacity to the waiters at the front of the queue.
    fn hand_off(s: &mut State) {
        while s.busy < s.capacity {
            let Some(tx) = s.waiters.pop_front() else {
                break;
            };
            if tx.send(()).is_ok() {
                s.busy += 1;
            }
        }
    }

    /// The sandbox's ready capacity changed. Lowering it never interrupts admitted work: the
    /// excess drains as permits are dropped.
    pub fn set_capacity(&self, capacity: u32) {
        let mut s = self.state.lock();
        s.capacity = capacity;
        Self::hand_off(&mut s);
    }

    pub fn capacity(&self) -> u32 {
        self.state.lock().capacity
    }

    /// An execution is free: a request admitted now starts at once.
    pub fn has_idle(&self) -> bool {
        let s = self.state.lock();
        s.busy < s.capacity
    }

    /// Admitted executions running now.
    pub fn busy(&self) -> u32 {
        self.state.lock().busy
    }

    /// Requests waiting in the queue now.
    pub fn queued(&self) -> u32 {
        self.state.lock().queued
    }

    /// Requests that ever had to wait in the queue.
    pub fn queued_total(&self) -> u64 {
        self.state.lock().queued_total
    }

    /// Wait until nothing admitted is running.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.busy() == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn admits_up_to_capacity_then_queues_in_order() {
        let gate = Arc::new(Gate::new(1, 10));
        let first = gate
            .enter(LONG, |_| panic!("must not queue"))
            .await
            .unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..3 {
            let (g, o) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _p = g.enter(LONG, |cap| assert_eq!(cap, 1)).await.unwrap();
                o.lock().push(i);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }));
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.queued(), 3);
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock(), vec![0, 1, 2]);
        assert_eq!((gate.busy(), gate.queued()), (0, 0));
        assert_eq!(gate.queued_total(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn full_queue_and_timeout_are_errors_and_leak_nothing() {
        let gate = Arc::new(Gate::new(0, 1));
        let g = gate.clone();
        let waiter =
            tokio::spawn(async move { g.enter(Duration::from_secs(1), |_| {}).await.err() });
        tokio::task::yield_now().await;
        assert_eq!(
            gate.enter(LONG, |_| {}).await.err(),
            Some(GateError::QueueFull)
        );
        assert_eq!(waiter.await.unwrap(), Some(GateError::TimedOut));
        assert_eq!((gate.busy(), gate.queued()), (0, 0));
        // Capacity arriving later goes to a live waiter, not to the one that gave up.
        let g = gate.clone();
        let late = tokio::spawn(async move { g.enter(LONG, |_| {}).await.map(|_| ()) });
        tokio::task::yield_now().await;
        gate.set_capacity(1);
        late.await.unwrap().unwrap();
        assert_eq!(gate.busy(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_request_gives_its_place_back() {
        let gate = Arc::new(Gate::new(0, 4));
        let g = gate.clone();
        let dropped = tokio::spawn(async move {
            let _ = g.enter(LONG, |_| {}).await;
        });
        tokio::task::yield_now().await;
        assert_eq!(gate.queued(), 1);
        dropped.abort();
        let _ = dropped.await;
        assert_eq!(gate.queued(), 0);
        gate.set_capacity(1);
        let p = gate
            .enter(LONG, |_| panic!("capacity is free"))
            .await
            .unwrap();
        assert_eq!(gate.busy(), 1);
        drop(p);
        gate.wait_idle().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_woken_waiter_not_yet_running_does_not_block_free_capacity() {
        let gate = Arc::new(Gate::new(1, 4));
        let running = gate.enter(LONG, |_| {}).await.unwrap();
        let g = gate.clone();
        let waiter = tokio::spawn(async move { g.enter(LONG, |_| {}).await.map(drop) });
        tokio::task::yield_now().await;
        // Capacity 3: the waiter is handed a permit but has not run yet.
        gate.set_capacity(3);
        assert_eq!(gate.busy(), 2);
        // A new arrival takes the third place at once instead of queueing behind it.
        let third = gate
            .enter(LONG, |_| panic!("capacity is free"))
            .await
            .unwrap();
        assert_eq!(gate.busy(), 3);
        drop((running, third));
        waiter.await.unwrap().unwrap();
        gate.wait_idle().await;
    }

    #[tokio::test(start_paused = true)]
    async fn lowering_capacity_drains_without_interrupting() {
        let gate = Arc::new(Gate::new(2, 4));
        let a = gate.enter(LONG, |_| {}).await.unwrap();
        let b = gate.enter(LONG, |_| {}).await.unwrap();
        gate.set_capacity(0);
        assert_eq!(gate.busy(), 2);
        drop(a);
        drop(b);
        gate.wait_idle().await;
        assert_eq!(gate.busy(), 0);
    }
}
