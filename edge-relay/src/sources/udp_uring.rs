//! UDP receive through io_uring: one multishot `IORING_OP_RECVMSG` on the socket, feeding a ring
//! of provided buffers (`IORING_REGISTER_PBUF_RING`).
//!
//! With `recvmmsg` every datagram still costs the kernel a `msghdr`/iovec copy-in and an address
//! copy-out per message. Here the request is armed once; the kernel writes each datagram, with
//! its source address and real length (`io_uring_recvmsg_out`), into the next free buffer and
//! posts one completion. The ring is set up with `SINGLE_ISSUER | DEFER_TASKRUN`, so the
//! receives run only when the thread enters the kernel to collect completions: after a pause
//! (`recv_pause`) one `io_uring_enter` receives everything that queued up in the socket.
//!
//! Each datagram is copied out of its buffer into the batcher's chunk and the buffer goes back to
//! the ring at once, so the ring stays small (`uring_buffers`) and its memory is never shared with
//! another thread. When every buffer is in use the kernel ends the request with `ENOBUFS` and
//! leaves the datagrams in the socket buffer; we re-arm after returning buffers (nothing lost).
//!
//! Buffers are `max_message` plus the header and address, rounded up; only the pages datagrams
//! touch become resident (one page per buffer for syslog lines).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::{IoUring, Probe, cqueue, opcode, types};

/// Buffer group id of our provided buffers (one ring per io_uring instance, any id works).
const BGID: u16 = 7;
const RECV: u64 = 1;
const CANCEL: u64 = 2;
/// `struct io_uring_recvmsg_out` precedes the address in every buffer.
const OUT_HDR: usize = 16;
/// Room for any socket address (IPv6 included).
const NAME_LEN: usize = size_of::<libc::sockaddr_storage>();

/// One received datagram, or what went wrong.
pub(crate) enum Event<'a> {
    Datagram {
        peer: Option<SocketAddr>,
        payload: &'a [u8],
    },
    /// Longer than `max_message`; `kept` is what arrived of it, at most `max_message` bytes
    /// (counted like the recvmmsg path counts it).
    Oversized {
        peer: Option<SocketAddr>,
        kept: usize,
    },
    Error(io::Error),
}

/// Anonymous private memory, unmapped on drop.
struct Mem {
    ptr: *mut u8,
    len: usize,
}

impl Mem {
    fn new(len: usize) -> io::Result<Self> {
        // SAFETY: an anonymous private mapping; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` mapped.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

pub(crate) struct UringRx {
    // Dropped first: the ring must be gone (or the request finished) before the buffers.
    ring: IoUring,
    fd: RawFd,
    /// The template of the multishot request: only the name and control lengths matter.
    msghdr: Box<libc::msghdr>,
    /// Page-aligned ring of `io_uring_buf` entries shared with the kernel.
    entries_mem: Option<Mem>,
    /// The buffers, `slot` bytes each.
    bufs: Option<Mem>,
    slot: usize,
    max_message: usize,
    count: u16,
    tail: u16,
    /// The multishot request is in the kernel (no terminal completion seen yet).
    armed: bool,
    /// The last request ended because every buffer was in use: more is waiting in the socket.
    starved: bool,
    /// The last drain saw a receive error (the caller backs off instead of re-arming at once).
    failed: bool,
    /// Buffers to give back after a drain (kept to avoid an allocation per drain).
    done: Vec<u16>,
}

impl UringRx {
    /// Sets up the ring, registers the buffers and arms the receive; an error means io_uring
    /// cannot be used here (old kernel, seccomp, `kernel.io_uring_disabled`).
    pub fn new(fd: RawFd, max_message: usize, buffers: usize) -> io::Result<Self> {
        let count = u16::try_from(buffers)
            .ok()
            .filter(|c| c.is_power_of_two() && *c <= 32_768)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "uring_buffers"))?;
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            // One completion per buffer at most before we reap: the buffers run out first.
            .setup_cqsize(2 * u32::from(count).max(64))
            .build(8)?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(opcode::RecvMsg::CODE) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "IORING_OP_RECVMSG is not supported",
            ));
        }
        let slot = (OUT_HDR + NAME_LEN + max_message).next_multiple_of(64);
        let entries_mem = Mem::new(usize::from(count) * size_of::<types::BufRingEntry>())?;
        let bufs = Mem::new(usize::from(count) * slot)?;
        // SAFETY: all-zero is a valid msghdr.
        let mut msghdr: Box<libc::msghdr> = Box::new(unsafe { zeroed() });
        msghdr.msg_namelen = NAME_LEN as libc::socklen_t;
        let mut rx = Self {
            ring,
            fd,
            msghdr,
            entries_mem: Some(entries_mem),
            bufs: Some(bufs),
            slot,
            max_message,
            count,
            tail: 0,
            armed: false,
            starved: false,
            failed: false,
            done: Vec::with_capacity(usize::from(count)),
        };
        for bid in 0..count {
            rx.give_back(bid);
        }
        rx.publish_tail();
        let ring_addr = rx.entries_ptr() as u64;
        // SAFETY: the entries and the buffers they point at live until the ring is dropped
        // (or, if the request cannot be stopped, forever: see `Drop`).
        unsafe {
            rx.ring
                .submitter()
                .register_buf_ring_with_flags(ring_addr, count, BGID, 0)?
        };
        rx.arm()?;
        // A kernel without multishot recvmsg fails the request at once.
        rx.ring.submitter().submit()?;
        let mut failed = None;
        for cqe in rx.ring.completion() {
            if cqe.user_data() == RECV && cqe.result() < 0 {
                failed = Some(io::Error::from_raw_os_error(-cqe.result()));
            }
            if cqe.user_data() == RECV && !cqueue::more(cqe.flags()) {
                rx.armed = false;
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(rx),
        }
    }

    fn entries_ptr(&self) -> *mut types::BufRingEntry {
        self.entries_mem
            .as_ref()
            .map_or(std::ptr::null_mut(), |m| m.ptr.cast())
    }

    fn bufs_ptr(&self) -> *mut u8 {
        self.bufs.as_ref().map_or(std::ptr::null_mut(), |m| m.ptr)
    }

    /// Puts buffer `bid` back into the ring (visible to the kernel after `publish_tail`).
    fn give_back(&mut self, bid: u16) {
        let i = usize::from(self.tail & (self.count - 1));
        // SAFETY: `i` < count entries; `bid` < count buffers of `slot` bytes.
        unsafe {
            let e = &mut *self.entries_ptr().add(i);
            e.set_addr(self.bufs_ptr().add(usize::from(bid) * self.slot) as u64);
            e.set_len(self.slot as u32);
            e.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish_tail(&self) {
        // SAFETY: the tail shares the first entry's reserved field; the kernel reads it
        // concurrently, hence the atomic store with release ordering (entries first).
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries_ptr()) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    fn arm(&mut self) -> io::Result<()> {
        let sqe = opcode::RecvMsgMulti::new(types::Fd(self.fd), &*self.msghdr, BGID)
            .build()
            .user_data(RECV);
        // SAFETY: the msghdr and the buffer ring outlive the request (see `Drop`).
        unsafe { self.ring.submission().push(&sqe) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        self.armed = true;
        self.starved = false;
        Ok(())
    }

    /// True once after a drain that saw a receive error.
    pub fn take_failed(&mut self) -> bool {
        std::mem::take(&mut self.failed)
    }

    /// True when the socket likely holds more than was just collected (the buffers ran out).
    pub fn starved(&self) -> bool {
        self.starved
    }

    /// Re-arms if needed and enters the kernel, which then receives what is queued on the socket
    /// (deferred task work runs here), until `want` completions are there or `wait` is over. A
    /// timeout is no error. `want` = the buffer count with no wait takes everything queued: the
    /// kernel goes on while its passes make progress (a multishot receive yields after 32
    /// datagrams and is requeued).
    pub fn wait(&mut self, want: usize, wait: Duration) -> io::Result<()> {
        if !self.armed {
            self.arm()?;
        }
        let ts = types::Timespec::from(wait);
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(want, &args) {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Buffers in the ring (the most one pass can collect).
    pub fn capacity(&self) -> usize {
        usize::from(self.count)
    }

    /// Hands every completed datagram to `f` and returns its buffer to the ring. Returns the
    /// number of datagrams (oversized included).
    pub fn drain(&mut self, f: &mut dyn FnMut(Event<'_>)) -> usize {
        let mut n = 0;
        let mut done = std::mem::take(&mut self.done);
        let bufs = self.bufs_ptr();
        let slot = self.slot;
        let mut cq = self.ring.completion();
        cq.sync();
        for cqe in &mut cq {
            if cqe.user_data() != RECV {
                continue;
            }
            if !cqueue::more(cqe.flags()) {
                self.armed = false;
            }
            let res = cqe.result();
            if res < 0 {
                match -res {
                    libc::ENOBUFS => self.starved = true,
                    libc::ECANCELED => {}
                    e => {
                        self.failed = true;
                        f(Event::Error(io::Error::from_raw_os_error(e)))
                    }
                }
                continue;
            }
            let Some(bid) = cqueue::buffer_select(cqe.flags()) else {
                continue;
            };
            if bid >= self.count {
                continue;
            }
            let used = (res as usize).min(slot);
            // SAFETY: the kernel filled `used` bytes of buffer `bid`, which is ours until we
            // give it back below.
            let buf =
                unsafe { std::slice::from_raw_parts(bufs.add(usize::from(bid) * slot), used) };
            match types::RecvMsgOut::parse(buf, &self.msghdr) {
                Ok(out) => {
                    let peer = peer_of(out.name_data(), out.incoming_name_len());
                    let len = out.incoming_payload_len() as usize;
                    if out.is_payload_truncated() || len > self.max_message {
                        f(Event::Oversized {
                            peer,
                            kept: len.min(self.max_message),
                        });
                    } else {
                        f(Event::Datagram {
                            peer,
                            payload: out.payload_data(),
                        });
                    }
                    n += 1;
                }
                Err(()) => f(Event::Error(io::Error::other(
                    "io_uring returned a buffer too short for its header",
                ))),
            }
            done.push(bid);
        }
        drop(cq);
        for &bid in &done {
            self.give_back(bid);
        }
        done.clear();
        self.done = done;
        self.publish_tail();
        n
    }

    /// Cancels the request and waits (bounded) for its last completion, handing any datagram
    /// still received to `f`. Afterwards the kernel holds no reference to our buffers.
    pub fn finish(&mut self, f: &mut dyn FnMut(Event<'_>)) {
        if !self.armed {
            return;
        }
        let sqe = opcode::AsyncCancel::new(RECV).build().user_data(CANCEL);
        // SAFETY: the cancel request holds no pointer.
        if unsafe { self.ring.submission().push(&sqe) }.is_err() {
            return;
        }
        for _ in 0..50 {
            let ts = types::Timespec::from(Duration::from_millis(20));
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            self.drain(f);
            if !self.armed {
                return;
            }
        }
    }
}

impl Drop for UringRx {
    fn drop(&mut self) {
        self.finish(&mut |_| {});
        if self.armed {
            // The kernel may still write into the buffers: never give their memory back.
            tracing::error!("io_uring receive did not stop; leaking its buffers");
            std::mem::forget(self.bufs.take());
            std::mem::forget(self.entries_mem.take());
        } else {
            let _ = self.ring.submitter().unregister_buf_ring(BGID);
        }
    }
}

/// The sender's address from the name field (its real length is `len`).
fn peer_of(name: &[u8], len: u32) -> Option<SocketAddr> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let n = name.len().min(NAME_LEN);
    // SAFETY: copying at most size_of::<sockaddr_storage>() bytes into it.
    unsafe {
        std::ptr::copy_nonoverlapping(
            name.as_ptr(),
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            n,
        )
    };
    super::udp_syslog::sockaddr_to_std(&ss, len.min(n as u32) as libc::socklen_t)
}
