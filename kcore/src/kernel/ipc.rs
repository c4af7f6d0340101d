//! Endpoint IPC: call, receive, reply; capability transfer; priority donation.
//!
//! A call is synchronous: the caller blocks until the receiver replies. If a receiver is
//! waiting on the endpoint the message goes to it at once; otherwise the caller queues on the
//! endpoint with its message. The receiver then owes the caller a reply (`serving`); while it
//! does, it runs at least at the caller's priority (priority donation: a high-priority client
//! is not delayed by medium-priority work while a low-priority server handles its call). The
//! caller's timeout covers the whole call, queueing and waiting for the reply alike.

use super::{cap_error, Kernel, Machine, Message, Object, State, TaskId, ThreadId};
use crate::cap::{Capability, Handle, Rights};
use abi::syscall::{info, Error, ObjectType, Return};

impl<M: Machine> Kernel<M> {
    /// Builds the message in `a0`-`a5` of a thread of `task`. A capability may travel with it
    /// (flag `info::CAP`, handle in `a5`): it needs the DUPLICATE right (the receiver gets a
    /// copy) and, when sending through an endpoint capability, that capability's GRANT right.
    fn outgoing(&self, task: TaskId, through: Option<Rights>, a: [u64; 7]) -> Result<Message, Error> {
        let mut message = Message { info: a[0], words: [a[1], a[2], a[3], a[4]], cap: None, badge: 0 };
        if a[0] & info::CAP != 0 {
            if through.is_some_and(|r| !r.contains(Rights::GRANT)) {
                return Err(Error::MissingRights);
            }
            let caps = &self.task(task).ok_or(Error::InvalidHandle)?.caps;
            let cap = *caps.check(Handle(a[5] as u32), Rights::DUPLICATE).map_err(cap_error)?;
            if !self.alive(cap.object) {
                return Err(Error::InvalidHandle);
            }
            message.cap = Some(cap);
        }
        Ok(message)
    }

    /// The result registers of a receive of `message` by `receiver`, which gets any
    /// transferred capability in its table (if its table or quota has no room, the message
    /// arrives without it and without the `CAP` flag).
    fn received(&mut self, receiver: ThreadId, message: Message) -> Return {
        let mut word_info = message.info & !info::CAP;
        let mut handle = 0;
        if let Some(cap) = message.cap {
            let task = self.t(receiver).task;
            if let Ok(h) = self.insert_cap(task, cap) {
                word_info |= info::CAP;
                handle = h.0 as u64;
            }
        }
        let w = message.words;
        Return::ok([word_info, w[0], w[1], w[2], w[3], handle, message.badge])
    }

    /// The receiver now serves `caller`: it owes a reply and runs at least at its priority.
    fn serve(&mut self, receiver: ThreadId, caller: ThreadId) {
        let caller_priority = self.t(caller).priority;
        let r = self.t(receiver);
        r.serving = Some(caller);
        r.priority = r.base_priority.max(caller_priority);
    }

    /// The fast path of `Call`: no capability travels, no timeout, a receiver is waiting and
    /// nothing else was woken. The message goes straight into the receiver's result registers
    /// and the receiver runs next. Returns false (having changed nothing) when a condition does
    /// not hold; the general path then handles the call, with the same outcome.
    pub(super) fn fast_call(&mut self, id: ThreadId, handle: Handle, a: &[u64; 7]) -> bool {
        if a[0] & info::CAP != 0 || a[6] != abi::syscall::FOREVER || self.handoff.is_some() {
            return false;
        }
        let (task, priority) = {
            let t = self.t(id);
            (t.task, t.priority)
        };
        let Some(cap) = self.tasks.get(task).and_then(|t| t.caps.check(handle, Rights::SEND).ok()) else {
            return false;
        };
        let (Object::Endpoint(ep), badge) = (cap.object, cap.badge) else { return false };
        let Some(receiver) = self.endpoints.get_mut(ep).and_then(|e| e.receivers.pop_front()) else {
            return false;
        };
        self.hand_over(id, priority, receiver, Return::ok([a[0], a[1], a[2], a[3], a[4], 0, badge]), false);
        true
    }

    /// The end of the call fast paths: `receiver`, taken from the endpoint's waiting
    /// receivers, gets `message` as its result, serves `caller` (at least at `priority`) and
    /// runs next; the caller awaits the reply. What `serve`, `wake_direct` and `block_current`
    /// do, written out: this is the hottest path of the kernel, and going through them costs
    /// about 6 % of a round trip (measured with `cargo xtask bench ipc`). A receiving thread
    /// is never resuming a fault, and a call on a fast path has no timeout. `foreign`: the call
    /// is a foreign system call (the reply's word 0 becomes the caller's `rax`).
    #[inline(always)]
    pub(super) fn hand_over(
        &mut self,
        caller: ThreadId,
        priority: u8,
        receiver: ThreadId,
        message: Return,
        foreign: bool,
    ) {
        let r = self.t(receiver);
        let timer = r.timer.take();
        r.pending = Some(message);
        r.serving = Some(caller);
        r.priority = r.base_priority.max(priority);
        r.state = State::Ready;
        if let Some(key) = timer {
            self.timers.cancel(key);
        }
        self.handoff = Some(receiver);
        let c = self.t(caller);
        c.state = State::AwaitingReply(receiver);
        if foreign {
            c.in_foreign_call = true;
        }
    }

    /// The fast path of `ReplyRecv`: no capability travels, the caller being served waits for
    /// this reply (not a fault), no other caller is queued and nothing else was woken. The reply
    /// goes straight into the caller's result registers, this thread waits on the endpoint, and
    /// the caller runs next. Returns false (having changed nothing) otherwise.
    pub(super) fn fast_reply_recv(&mut self, id: ThreadId, handle: Handle, a: &[u64; 7]) -> bool {
        if a[0] & info::CAP != 0 || self.handoff.is_some() {
            return false;
        }
        let (task, serving, bound) = {
            let t = self.t(id);
            (t.task, t.serving, t.bound)
        };
        let Some(caller) = serving else { return false };
        if !self.thread(caller).is_some_and(|c| c.state == State::AwaitingReply(id) && !c.in_fault) {
            return false;
        }
        // Pending signals of a bound notification end the receive at once: the general path.
        if bound.and_then(|n| self.notifications.get(n)).is_some_and(|n| n.bits != 0) {
            return false;
        }
        let Some(cap) = self.tasks.get(task).and_then(|t| t.caps.check(handle, Rights::RECEIVE).ok()) else {
            return false;
        };
        let Object::Endpoint(ep) = cap.object else { return false };
        match self.endpoints.get_mut(ep) {
            Some(endpoint) if endpoint.callers.is_empty() => endpoint.receivers.push_back(id),
            _ => return false,
        }
        // `wake_direct` written out, as in `fast_call` (the caller is not resuming a fault:
        // checked above). A foreign system call gets word 0 in rax, as `end_wait` would do.
        let c = self.t(caller);
        let timer = c.timer.take();
        if core::mem::take(&mut c.in_foreign_call) {
            c.pending_rax = Some(a[1]);
        } else {
            c.pending = Some(Return::ok([a[0], a[1], a[2], a[3], a[4], 0, 0]));
        }
        c.state = State::Ready;
        if let Some(key) = timer {
            self.timers.cancel(key);
        }
        self.handoff = Some(caller);
        // `block_current` written out with the end of serving: one lookup of this thread.
        let timer = self.arm_wait(id, a[6]);
        let me = self.t(id);
        me.serving = None;
        me.priority = me.base_priority;
        me.state = State::Receiving(ep);
        me.timer = timer;
        true
    }

    /// `Call` on the endpoint behind `handle`.
    pub(super) fn call(&mut self, id: ThreadId, handle: Handle, a: [u64; 7]) -> Result<Option<Return>, Error> {
        let task = self.t(id).task;
        let cap = *self.task(task).ok_or(Error::InvalidHandle)?.caps.check(handle, Rights::SEND).map_err(cap_error)?;
        let Object::Endpoint(ep) = cap.object else { return Err(Error::WrongType) };
        if !self.alive(cap.object) {
            return Err(Error::InvalidHandle);
        }
        let mut message = self.outgoing(task, Some(cap.rights), a)?;
        message.badge = cap.badge;
        let timeout = a[6];
        if timeout == 0 && self.endpoints.get(ep).is_some_and(|e| e.receivers.is_empty()) {
            return Err(Error::WouldBlock);
        }
        self.send_call(id, ep, message, timeout);
        Ok(None)
    }

    /// Sends `message` from `caller` (the current thread) as a call on `ep` and blocks it.
    pub(super) fn send_call(&mut self, caller: ThreadId, ep: super::EndpointId, message: Message, timeout: u64) {
        let Some(endpoint) = self.endpoints.get_mut(ep) else {
            self.t(caller).pending = Some(Return::err(Error::InvalidHandle));
            return;
        };
        match endpoint.receivers.pop_front() {
            Some(receiver) => {
                let result = self.received(receiver, message);
                self.serve(receiver, caller);
                self.wake_direct(receiver, result);
                self.block_current(State::AwaitingReply(receiver), timeout);
            }
            None => {
                endpoint.callers.push_back(caller);
                self.t(caller).outgoing = message;
                self.block_current(State::Calling(ep), timeout);
            }
        }
    }

    /// `Recv` on the endpoint behind `handle`.
    pub(super) fn recv(&mut self, id: ThreadId, handle: Handle, timeout: u64) -> Result<Option<Return>, Error> {
        let task = self.t(id).task;
        let ep = match self.lookup(task, handle, Rights::RECEIVE, ObjectType::Endpoint)? {
            Object::Endpoint(ep) => ep,
            _ => return Err(Error::WrongType),
        };
        // Receiving again without replying abandons the caller being served.
        if let Some(abandoned) = self.t(id).serving.take() {
            let t = self.t(id);
            t.priority = t.base_priority;
            if self.thread(abandoned).is_some_and(|c| c.state == State::AwaitingReply(id)) {
                self.wake(abandoned, Return::err(Error::PeerDied));
            }
        }
        let endpoint = self.endpoints.get_mut(ep).ok_or(Error::InvalidHandle)?;
        if let Some(caller) = endpoint.callers.pop_front() {
            let message = core::mem::take(&mut self.t(caller).outgoing);
            let result = self.received(id, message);
            self.serve(id, caller);
            // The caller's timer keeps running: its timeout covers the whole call.
            self.t(caller).state = State::AwaitingReply(id);
            return Ok(Some(result));
        }
        // Signals of the bound notification that came while nobody received.
        let bits = self.take_bound_bits(id);
        if bits != 0 {
            return Ok(Some(super::notify_return(bits)));
        }
        if timeout == 0 {
            return Err(Error::WouldBlock);
        }
        let endpoint = self.endpoints.get_mut(ep).ok_or(Error::InvalidHandle)?;
        endpoint.receivers.push_back(id);
        self.block_current(State::Receiving(ep), timeout);
        Ok(None)
    }

    /// `Reply` with the message in `a0`-`a5` to the caller `id` serves. A caller that timed out
    /// or died meanwhile is gone: the reply is dropped.
    pub(super) fn reply(&mut self, id: ThreadId, a: [u64; 7]) -> Result<(), Error> {
        let Some(caller) = self.t(id).serving else { return Err(Error::NoCaller) };
        let task = self.t(id).task;
        let message = self.outgoing(task, None, a)?;
        let t = self.t(id);
        t.serving = None;
        t.priority = t.base_priority;
        if self.run_queue.highest().is_some_and(|h| h > self.t(id).priority) {
            self.give_way = Some(false);
        }
        if self.thread(caller).is_some_and(|c| c.state == State::AwaitingReply(id)) {
            let result = self.received(caller, message);
            self.wake_direct(caller, result);
        }
        Ok(())
    }

    /// `ReplyDetach`: the call `id` serves becomes a reply capability of its task; `id` no
    /// longer serves it (and drops back to its own priority).
    pub(super) fn reply_detach(&mut self, id: ThreadId, task: TaskId) -> Result<Handle, Error> {
        let Some(caller) = self.t(id).serving else { return Err(Error::NoCaller) };
        if !self.thread(caller).is_some_and(|c| c.state == State::AwaitingReply(id)) {
            return Err(Error::NoCaller);
        }
        let seq = self.next_detach;
        let cap = Capability {
            object: Object::Reply { caller, seq },
            rights: Rights::SEND | Rights::DUPLICATE | Rights::REVOKE,
            badge: 0,
        };
        self.task_mut(task).ok_or(Error::InvalidHandle)?.charge(super::cost::CAPABILITY)?;
        let handle = match self.task_mut(task).expect("charged above").caps.insert(cap) {
            Ok(h) => h,
            Err(e) => {
                self.task_mut(task).expect("charged above").refund(super::cost::CAPABILITY);
                return Err(super::cap_error(e));
            }
        };
        self.next_detach = seq.wrapping_add(1);
        self.t(caller).state = State::Detached(seq);
        self.task_mut(task).expect("looked up above").detached.push((caller, seq));
        let t = self.t(id);
        t.serving = None;
        t.priority = t.base_priority;
        if self.run_queue.highest().is_some_and(|h| h > self.t(id).priority) {
            self.give_way = Some(false);
        }
        Ok(handle)
    }

    /// `ReplyWith`: answers the detached call behind `handle` with the message `a`, and closes
    /// the handle (one answer per call).
    pub(super) fn reply_with(&mut self, task: TaskId, handle: Handle, a: [u64; 7]) -> Result<(), Error> {
        // Not `lookup`: a reply whose caller has gone (timed out, ended) is still answered, into
        // the void, and closed.
        let cap =
            self.task(task).ok_or(Error::InvalidHandle)?.caps.check(handle, Rights::SEND).map_err(super::cap_error)?;
        let Object::Reply { caller, seq } = cap.object else { return Err(Error::WrongType) };
        let message = self.outgoing(task, None, a)?;
        if let Some(t) = self.task_mut(task) {
            t.detached.retain(|&(c, s)| (c, s) != (caller, seq));
            if t.caps.remove(handle).is_ok() {
                t.refund(super::cost::CAPABILITY);
            }
        }
        if self.thread(caller).is_some_and(|c| c.state == State::Detached(seq)) {
            let result = self.received(caller, message);
            self.wake(caller, result);
        }
        Ok(())
    }

    /// Makes `endpoint` the supervisor of `task` for faults, with `badge` on fault messages.
    pub fn set_supervisor(&mut self, task: TaskId, endpoint: super::EndpointId, badge: u64) {
        if let Some(t) = self.task_mut(task) {
            t.supervisor = Some((endpoint, badge));
        }
    }

    /// Gives `task` a capability (for bring-up and tests).
    pub fn grant(&mut self, task: TaskId, cap: Capability<Object>) -> Result<Handle, Error> {
        self.insert_cap(task, cap)
    }
}
