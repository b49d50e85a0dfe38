//! Bidirectional byte copy between two TCP streams for the L4 proxy.
//!
//! [`pipe`] moves bytes both ways between a client and an upstream connection until both have
//! sent FIN. A FIN from one side becomes a `shutdown(SHUT_WR)` of the other (half-close), and
//! the other direction goes on; the pipe gives up once no byte has moved either way for an idle
//! timeout. Linux only: it uses `splice(2)` through `libc`.
//!
//! # Design
//!
//! Both directions run in the caller's task (`try_join!`, nothing spawned), driven by tokio
//! readiness (`TcpStream::async_io`); the first error ends both. A direction reads one chunk
//! and writes it out whole before reading again, so what the proxy holds per direction is one
//! chunk: at most 64 KiB in userspace or one pipe (64 KiB, 1 MiB for bulk).
//!
//! - **Userspace first.** A direction's first 64 KiB go through a 64 KiB buffer
//!   (`recv`/`send`), allocated only once the direction has data.
//! - **Then splice.** Past that, the direction takes a pipe and moves bytes socket -> pipe ->
//!   socket with `SPLICE_F_MOVE | SPLICE_F_NONBLOCK`: they are never copied into the process,
//!   and its buffer is freed. After 1 MiB the pipe grows to 1 MiB, so a bulk stream makes
//!   fewer, larger splices. When the direction ends cleanly its empty pipe goes back to a
//!   small per-thread pool, so the next connection skips `pipe2` and `close` (about 5 us per
//!   pipe, measured).
//! - **Fallback.** If `pipe2` or `splice` fails with `EINVAL`/`ENOSYS` (no splice here, a
//!   seccomp filter), the direction carries on in userspace and later connections do not try.
//!   A direction also stays in userspace if the kernel hands out a pipe under 64 KiB (an
//!   unprivileged user past `fs.pipe-user-pages-soft` gets 8 KiB pipes) or no pipe at all
//!   (`EMFILE`), and keeps a 64 KiB pipe if it may not grow it. `splice` has no
//!   `MSG_NOSIGNAL`, so it is used only while SIGPIPE is ignored or handled (Rust's std
//!   ignores it in binaries).
//! - **Fairness.** tokio's cooperative budget is charged per 64 KiB moved, so a bulk
//!   connection yields to the others on its current-thread runtime as often as a 64 KiB
//!   userspace copy would, although one splice can move 1 MiB.
//! - **Idle timeout.** One timer per connection, re-armed only when it fires, against the time
//!   of the last byte moved (an atomic store per chunk, no timer update).
//!
//! # Measurements
//!
//! Benchmark: `l4copy` scratch crate, `src/bin/bench.rs`. Client and sink share one
//! current-thread runtime on one thread, the proxy runs on another (like one of maitred's
//! per-core runtimes); loopback, Linux 6.18, 2 vCPUs shared with other work (load average 3 to
//! 6), so wall-clock rates are noisy and CPU time of the proxy thread (`getrusage`
//! `RUSAGE_THREAD`) is the figure to compare. Medians of 6 to 10 interleaved runs.
//!
//! | transfer (per connection)      | variant                      | GB/s | proxy CPU s/GiB | proxy us/conn |
//! |--------------------------------|------------------------------|-----:|----------------:|--------------:|
//! | 1 GiB client -> upstream       | direct (no proxy)            | 2.50 |               - |             - |
//! |                                | `copy_bidirectional` 16 KiB  | 0.69 |           0.651 |             - |
//! |                                | `copy_bidirectional` 64 KiB  | 0.84 |           0.553 |             - |
//! |                                | this module (splice)         | 0.88 |           0.355 |             - |
//! | 1 GiB upstream -> client       | `copy_bidirectional` 64 KiB  | 1.02 |           0.411 |             - |
//! |                                | this module                  | 0.89 |           0.260 |             - |
//! | 200 x 4 MiB                    | `copy_bidirectional` 64 KiB  | 1.00 |           0.485 |          1895 |
//! |                                | this module                  | 0.99 |           0.231 |           903 |
//! | 2000 x (1 KiB + 64 KiB back)   | `copy_bidirectional` 64 KiB  | 0.35 |           1.458 |          90.2 |
//! |                                | this module                  | 0.30 |           1.479 |          91.5 |
//! | 3000 x (1 KiB + 16 KiB back)   | `copy_bidirectional` 64 KiB  | 0.06 |           5.239 |          85.0 |
//! |                                | this module                  | 0.05 |           5.307 |          86.2 |
//!
//! (us/conn includes accept and connect; 16 KiB buffers were never cheaper than 64 KiB.) A
//! re-run of the final code under heavier load gave 0.32 against 0.49 s/GiB for 1 GiB and
//! 0.32 against 0.60 for 200 x 4 MiB.
//! On bulk transfers splice cuts the proxy's CPU per GiB by a third to a half, more with
//! larger pipes (in earlier runs a fixed 64 KiB pipe took 0.43 s/GiB, a 1 MiB pipe 0.27).
//! Below about 64 KiB per direction it gains nothing (the differences above are noise), while
//! an always-splice variant held two pipes (4 descriptors, pipe quota) per connection, idle
//! ones included: hence the userspace start. On loopback part of the cost moves rather than
//! vanishes: the receiving peer copies pages the proxy never touched (cache-cold; `perf`
//! shows the sink's `_copy_to_iter` up from 6% to 10% of samples), so client + sink CPU rises
//! by 0.1 to 0.2 s/GiB and the whole-machine total is about even; with real NICs those peers
//! are other machines. Wall-clock GB/s is within noise between the two on this machine.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Size of the userspace buffer of a direction, allocated when the direction first has data
/// and freed when it moves to splice.
const BUF_SIZE: usize = 64 * 1024;

/// Bytes a direction copies through userspace before it moves to splice.
const SPLICE_AFTER: u64 = 64 * 1024;

/// Size of a new splice pipe (the kernel's default), and the least worth splicing with.
const PIPE_MIN: usize = 64 * 1024;

/// Size a pipe grows to once its direction has moved [`GROW_AFTER`] bytes (the default
/// `fs.pipe-max-size`, the most an unprivileged process may ask for).
const PIPE_MAX: usize = 1024 * 1024;

/// Bytes a direction moves before its pipe grows to [`PIPE_MAX`]: most connections keep
/// small pipes, which count less against the per-user pipe limit.
const GROW_AFTER: u64 = 1024 * 1024;

/// Empty pipes each thread keeps for its next connections.
const POOL_MAX: usize = 32;

/// Bytes moved per unit of tokio's cooperative budget, as in a 64 KiB userspace copy.
const BUDGET_UNIT: usize = 64 * 1024;

thread_local! {
    /// Empty [`PIPE_MIN`] pipes left by finished directions: taking one saves the `pipe2`
    /// and two `close` calls (about 5 us) of a new one.
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// Set once `pipe2` or `splice` has failed with `EINVAL`/`ENOSYS`: later calls skip splice.
static SPLICE_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// Bytes moved each way when the pipe ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Transferred {
    /// Bytes written to the upstream that were read from the client.
    pub client_to_upstream: u64,
    /// Bytes written to the client that were read from the upstream.
    pub upstream_to_client: u64,
}

/// Copies bytes both ways between `client` and `upstream` until both directions have finished.
///
/// When one side sends FIN, the write half of the other side is shut down and the other
/// direction goes on until it finishes too. Returns the bytes moved each way once both sides
/// have sent FIN; fails with the first I/O error of either direction (a reset, for one), or
/// with [`io::ErrorKind::TimedOut`] once no byte has moved either way for `idle_timeout`
/// (a peer that stops reading stalls its direction, and counts as idle). Neither stream is
/// closed here: that happens when the caller drops them.
pub async fn pipe(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    idle_timeout: Duration,
) -> io::Result<Transferred> {
    pipe_with(client, upstream, idle_timeout, splice_usable()).await
}

/// [`pipe`], with splice used only if `use_splice`.
async fn pipe_with(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    idle_timeout: Duration,
    use_splice: bool,
) -> io::Result<Transferred> {
    let (client, upstream) = (&*client, &*upstream);
    let activity = Activity::new();
    let both = async {
        tokio::try_join!(
            copy_half(client, upstream, use_splice, &activity),
            copy_half(upstream, client, use_splice, &activity),
        )
    };
    let (client_to_upstream, upstream_to_client) =
        with_idle_timeout(both, &activity, idle_timeout).await?;
    Ok(Transferred {
        client_to_upstream,
        upstream_to_client,
    })
}

/// Whether splice may be used: it has not been found unsupported, and a write to a reset
/// socket cannot kill the process (`splice` has no `MSG_NOSIGNAL`, so it relies on SIGPIPE
/// being ignored or handled, as Rust's std arranges for binaries by default).
fn splice_usable() -> bool {
    static SIGPIPE_SAFE: OnceLock<bool> = OnceLock::new();
    !SPLICE_UNSUPPORTED.load(Ordering::Relaxed)
        && *SIGPIPE_SAFE.get_or_init(|| {
            // SAFETY: a null new action only queries the current disposition into `old`.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            let rc = unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) };
            rc == 0 && old.sa_sigaction != libc::SIG_DFL
        })
}

/// Whether `err` says that this kernel (or a seccomp filter) does not support the call.
fn is_unsupported(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS))
}

/// Notes that splice does not work here, if `err` (from `pipe2` or `splice`) says so.
fn note_unsupported(err: &io::Error) {
    if is_unsupported(err) {
        SPLICE_UNSUPPORTED.store(true, Ordering::Relaxed);
    }
}

/// The time of the last byte moved in either direction, shared by both directions.
struct Activity {
    start: Instant,
    last_nanos: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_nanos: AtomicU64::new(0),
        }
    }

    /// Records that bytes moved just now.
    fn touch(&self) {
        let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_nanos.store(nanos, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_nanos(self.last_nanos.load(Ordering::Relaxed))
    }
}

/// Runs `copy` until it ends or no byte has moved for `idle` according to `activity`.
///
/// One timer per connection, re-armed only when it fires: bytes moving cost an atomic store,
/// not a timer update.
async fn with_idle_timeout<T>(
    copy: impl Future<Output = io::Result<T>>,
    activity: &Activity,
    idle: Duration,
) -> io::Result<T> {
    let mut copy = pin!(copy);
    let mut timer = pin!(tokio::time::sleep(idle));
    loop {
        tokio::select! {
            biased;
            done = &mut copy => return done,
            () = &mut timer => {
                // An `idle` too large for an instant never expires.
                let Some(deadline) = activity.last().checked_add(idle) else {
                    return copy.await;
                };
                if deadline <= Instant::now() {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "L4 pipe idle timeout"));
                }
                timer.as_mut().reset(deadline);
            }
        }
    }
}

/// One direction, socket `from` -> socket `to`, until `from` sends FIN; then shuts down the
/// write half of `to`. Returns the bytes written to `to`.
///
/// The first [`SPLICE_AFTER`] bytes go through a userspace buffer, the rest (if
/// `use_splice`) through a pipe with `splice(2)`; if no pipe can be had, or splice turns out
/// unsupported, the direction stays in userspace. Either way a chunk is read, then written
/// out whole before the next read, so at most one buffer or pipe of bytes is in flight.
async fn copy_half(
    from: &TcpStream,
    to: &TcpStream,
    mut use_splice: bool,
    activity: &Activity,
) -> io::Result<u64> {
    let mut total = 0u64;
    let mut buf: Option<Box<[MaybeUninit<u8>]>> = None;
    let mut pipe: Option<Pipe> = None;
    loop {
        if use_splice && pipe.is_none() && total >= SPLICE_AFTER {
            match Pipe::take() {
                Ok(Some(taken)) => {
                    pipe = Some(taken);
                    buf = None;
                }
                Ok(None) => use_splice = false,
                Err(err) => {
                    note_unsupported(&err);
                    use_splice = false;
                }
            }
        }
        let moved = if let Some(through) = pipe.as_mut() {
            match splice_chunk(from, to, through, activity).await? {
                Some(moved) => moved,
                // Nothing was taken from `from`: the userspace copy goes on from here.
                None => {
                    (pipe, use_splice) = (None, false);
                    continue;
                }
            }
        } else {
            if buf.is_none() {
                // No buffer while a quiet connection waits for its first bytes.
                from.readable().await?;
            }
            let buf = buf.get_or_insert_with(|| Box::new_uninit_slice(BUF_SIZE));
            copy_chunk(from, to, buf, activity).await?
        };
        if moved == 0 {
            shutdown_write(to)?;
            // At EOF the pipe has been drained: empty, so reusable.
            if let Some(drained) = pipe {
                drained.recycle();
            }
            return Ok(total);
        }
        total += moved as u64;
        // Charge tokio's budget per BUDGET_UNIT moved, not per call, so that a bulk
        // connection yields to the others on its runtime as often as a 64 KiB copy would.
        for _ in 1..moved / BUDGET_UNIT {
            tokio::task::coop::consume_budget().await;
        }
        // A bulk direction: fewer, larger splices. Asked once; if refused, the pipe stays.
        if let Some(through) = pipe.as_mut()
            && through.may_grow
            && total >= GROW_AFTER
        {
            through.may_grow = false;
            through.resize(PIPE_MAX);
        }
    }
}

/// Reads one chunk from `from` into `buf` and writes it all to `to`. Returns its size, 0 at
/// EOF.
async fn copy_chunk(
    from: &TcpStream,
    to: &TcpStream,
    buf: &mut [MaybeUninit<u8>],
    activity: &Activity,
) -> io::Result<usize> {
    let (from_fd, to_fd) = (from.as_raw_fd(), to.as_raw_fd());
    let read = from
        .async_io(Interest::READABLE, || {
            // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`; bytes that may
            // be uninitialised are only ever handed back to the kernel.
            syscall(|| unsafe { libc::recv(from_fd, buf.as_mut_ptr().cast(), buf.len(), 0) })
        })
        .await?;
    if read == 0 {
        return Ok(0);
    }
    activity.touch();
    let mut written = 0;
    while written < read {
        let rest = &buf[written..read];
        let sent = to
            .async_io(Interest::WRITABLE, || {
                // SAFETY: `rest` holds bytes that `recv` wrote. MSG_NOSIGNAL: no SIGPIPE.
                syscall(|| unsafe {
                    libc::send(to_fd, rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL)
                })
            })
            .await?;
        written += sent;
        activity.touch();
    }
    Ok(read)
}

/// Fills the empty `pipe` from `from` and drains it to `to`. Returns the bytes moved, 0 at
/// EOF, or `None` if the kernel cannot splice from `from`: then nothing was taken from it.
///
/// Draining completely before filling again keeps every `EAGAIN` honest: filling an empty
/// pipe can only block on the source socket, and draining a non-empty pipe only on the
/// destination socket, so tokio clears the readiness of the right socket. (A half-full pipe
/// can refuse more data while the socket still has some; clearing the socket's readiness
/// then would wait for an edge that never comes.)
async fn splice_chunk(
    from: &TcpStream,
    to: &TcpStream,
    pipe: &Pipe,
    activity: &Activity,
) -> io::Result<Option<usize>> {
    let (from_fd, to_fd) = (from.as_raw_fd(), to.as_raw_fd());
    let (pipe_in, pipe_out) = (pipe.write.as_raw_fd(), pipe.read.as_raw_fd());
    let filled = match from
        .async_io(Interest::READABLE, || splice(from_fd, pipe_in, pipe.size))
        .await
    {
        Ok(0) => return Ok(Some(0)),
        Ok(filled) => filled,
        Err(err) if is_unsupported(&err) => {
            note_unsupported(&err);
            return Ok(None);
        }
        Err(err) => return Err(err),
    };
    activity.touch();
    let mut pending = filled;
    while pending > 0 {
        pending -= to
            .async_io(Interest::WRITABLE, || splice(pipe_out, to_fd, pending))
            .await?;
        activity.touch();
    }
    Ok(Some(filled))
}

/// Runs a syscall that returns a byte count or -1, retrying it on `EINTR`.
fn syscall(mut call: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Moves up to `len` bytes from `from` to `to` without blocking; one of them must be a pipe.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let (null_in, null_out) = (std::ptr::null_mut(), std::ptr::null_mut());
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    // SAFETY: plain descriptors and null offsets (neither end is a seekable file).
    syscall(|| unsafe { libc::splice(from, null_in, to, null_out, len, flags) })
}

/// Shuts down the write half of `stream`, sending FIN. A connection already gone is not an
/// error here: the other direction reports it.
fn shutdown_write(stream: &TcpStream) -> io::Result<()> {
    // SAFETY: `shutdown` on an open socket descriptor; no pointers involved.
    if unsafe { libc::shutdown(stream.as_raw_fd(), libc::SHUT_WR) } < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ENOTCONN) {
            return Err(err);
        }
    }
    Ok(())
}

/// A kernel pipe holding the bytes in flight of one direction; both ends close on drop.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Capacity in bytes, as the kernel reports it.
    size: usize,
    /// Not yet asked to grow to [`PIPE_MAX`] for the direction using it.
    may_grow: bool,
}

impl Pipe {
    /// An empty pipe of [`PIPE_MIN`] bytes or more from this thread's pool, else a new one;
    /// `None` if the kernel granted less (past `fs.pipe-user-pages-soft`, an unprivileged
    /// user gets 2-page pipes, which would splice less per call than the userspace buffer
    /// copies).
    fn take() -> io::Result<Option<Pipe>> {
        if let Ok(Some(pipe)) = POOL.try_with(|pool| pool.borrow_mut().pop()) {
            return Ok(Some(pipe));
        }
        let mut fds: [RawFd; 2] = [-1; 2];
        // SAFETY: `fds` has room for the two descriptors `pipe2` writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `pipe2` succeeded, so both are open descriptors that nothing else owns.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: F_GETPIPE_SZ on an open pipe descriptor; no pointers involved.
        let size = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        if size < 0 {
            return Err(io::Error::last_os_error());
        }
        let size = size as usize;
        Ok((size >= PIPE_MIN).then_some(Pipe {
            read,
            write,
            size,
            may_grow: true,
        }))
    }

    /// Sets the capacity of this empty pipe to `size`; false if the kernel refused (EPERM past
    /// `fs.pipe-max-size` or the per-user pipe limits), leaving it as it was.
    fn resize(&mut self, size: usize) -> bool {
        let Ok(arg) = libc::c_int::try_from(size) else {
            return false;
        };
        // SAFETY: F_SETPIPE_SZ on an open pipe descriptor; no pointers involved.
        let got = unsafe { libc::fcntl(self.write.as_raw_fd(), libc::F_SETPIPE_SZ, arg) };
        if got < 0 {
            return false;
        }
        self.size = got as usize;
        true
    }

    /// Puts this pipe, which must be empty, back in this thread's pool at [`PIPE_MIN`] bytes,
    /// or closes it if the pool is full.
    fn recycle(mut self) {
        if self.size != PIPE_MIN && !self.resize(PIPE_MIN) {
            return;
        }
        self.may_grow = true;
        let _ = POOL.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < POOL_MAX {
                pool.push(self);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const MIB: usize = 1 << 20;
    const IDLE: Duration = Duration::from_secs(10);
    /// Bound on every test body: a bug shows up as a failure, not a hung test run.
    const LIMIT: Duration = Duration::from_secs(30);

    /// Two connected loopback streams.
    async fn connected() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("local_addr");
        let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
        (a.expect("connect"), b.expect("accept").0)
    }

    /// client <-> (proxy_client, proxy_upstream) <-> server.
    async fn topology() -> (TcpStream, TcpStream, TcpStream, TcpStream) {
        let (client, proxy_client) = connected().await;
        let (proxy_upstream, server) = connected().await;
        (client, proxy_client, proxy_upstream, server)
    }

    /// `len` pseudo-random bytes, the same for the same `seed`.
    fn pattern(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// FNV-1a over `bytes`.
    fn checksum(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    }

    /// Runs `f` once over the splice path and once over the userspace fallback.
    async fn both_paths<F, Fut>(f: F)
    where
        F: Fn(bool) -> Fut,
        Fut: Future<Output = ()>,
    {
        for try_splice in [true, false] {
            tokio::time::timeout(LIMIT, f(try_splice))
                .await
                .unwrap_or_else(|_| panic!("test hung (try_splice = {try_splice})"));
            // The splice run must not have quietly fallen back to userspace.
            assert!(
                !SPLICE_UNSUPPORTED.load(Ordering::Relaxed),
                "splice found unsupported"
            );
        }
    }

    #[test]
    fn splice_path_is_taken_here() {
        // The tests below cover both paths only if this machine can splice at all.
        assert!(
            splice_usable(),
            "splice unusable: SIGPIPE not ignored or splice unsupported"
        );
        assert!(
            matches!(Pipe::take(), Ok(Some(_))),
            "no {PIPE_MIN}-byte pipe"
        );
    }

    #[test]
    fn pipes_grow_and_shrink_back_when_recycled() {
        let mut pipe = Pipe::take().expect("pipe2").expect("64 KiB pipe");
        assert_eq!(pipe.size, PIPE_MIN);
        assert!(pipe.resize(PIPE_MAX), "F_SETPIPE_SZ to {PIPE_MAX}");
        assert_eq!(pipe.size, PIPE_MAX);
        let fd = pipe.write.as_raw_fd();
        pipe.recycle();
        // SAFETY: the pooled pipe keeps `fd` open.
        assert_eq!(
            unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) },
            PIPE_MIN as libc::c_int
        );
        let again = Pipe::take().expect("pooled").expect("64 KiB pipe");
        assert_eq!(again.write.as_raw_fd(), fd, "taken from the pool");
    }

    #[test]
    fn pipe_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async {
            let (mut a, mut b) = connected().await;
            assert_send(&pipe(&mut a, &mut b, IDLE));
        });
    }

    #[tokio::test]
    async fn echo_8_mib_both_ways() {
        both_paths(|try_splice| async move {
            let (client, mut pc, mut pu, mut server) = topology().await;
            let sent = pattern(7, 8 * MIB);
            let proxy = pipe_with(&mut pc, &mut pu, IDLE, try_splice);
            let echo = async {
                let (mut r, mut w) = server.split();
                let n = tokio::io::copy(&mut r, &mut w).await.expect("echo");
                w.shutdown().await.expect("echo shutdown");
                n
            };
            let talk = async {
                let (mut r, mut w) = client.into_split();
                let write = async {
                    w.write_all(&sent).await.expect("client write");
                    w.shutdown().await.expect("client shutdown");
                };
                let read = async {
                    let mut got = Vec::with_capacity(8 * MIB);
                    r.read_to_end(&mut got).await.expect("client read");
                    got
                };
                tokio::join!(write, read).1
            };
            let (moved, echoed, got) = tokio::join!(proxy, echo, talk);
            let moved = moved.expect("pipe");
            if try_splice {
                // Both pipes (grown past GROW_AFTER) went back to this thread's pool, shrunk.
                let pooled: Vec<usize> =
                    POOL.with_borrow(|pool| pool.iter().map(|p| p.size).collect());
                assert_eq!(pooled, [PIPE_MIN, PIPE_MIN]);
            }
            assert_eq!(echoed, 8 * MIB as u64);
            assert_eq!(got.len(), sent.len());
            assert_eq!(checksum(&got), checksum(&sent));
            assert_eq!(
                moved,
                Transferred {
                    client_to_upstream: 8 * MIB as u64,
                    upstream_to_client: 8 * MIB as u64
                }
            );
        })
        .await;
    }

    #[tokio::test]
    async fn short_transfer_takes_no_pipe() {
        let (mut client, mut pc, mut pu, mut server) = topology().await;
        let request = pattern(4, 1000);
        let response = pattern(5, SPLICE_AFTER as usize - 1);
        let talk = async {
            client.write_all(&request).await.expect("client write");
            client.shutdown().await.expect("client shutdown");
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.expect("client read");
            got
        };
        let serve = async {
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.expect("server read");
            server.write_all(&response).await.expect("server write");
            server.shutdown().await.expect("server shutdown");
            got
        };
        let (moved, got, served) = tokio::time::timeout(LIMIT, async {
            tokio::join!(pipe(&mut pc, &mut pu, IDLE), talk, serve)
        })
        .await
        .expect("test hung");
        assert_eq!(served, request);
        assert_eq!(got, response);
        assert_eq!(
            moved.expect("pipe"),
            Transferred {
                client_to_upstream: 1000,
                upstream_to_client: SPLICE_AFTER - 1
            }
        );
        assert_eq!(
            POOL.with_borrow(Vec::len),
            0,
            "no pipe was taken, so none was recycled"
        );
    }

    /// `first` sends `a`, shuts down its write half, and must still receive all of `b`, which
    /// `second` sends only after it has read `first`'s FIN.
    async fn half_close(mut first: TcpStream, mut second: TcpStream) -> (Vec<u8>, Vec<u8>) {
        let a = pattern(1, 3 * MIB);
        let b = pattern(2, 2 * MIB);
        let first_side = async {
            first.write_all(&a).await.expect("first write");
            first.shutdown().await.expect("first shutdown");
            let mut got = Vec::new();
            first.read_to_end(&mut got).await.expect("first read");
            got
        };
        let second_side = async {
            let mut got = Vec::new();
            second.read_to_end(&mut got).await.expect("second read");
            second.write_all(&b).await.expect("second write after FIN");
            second.shutdown().await.expect("second shutdown");
            got
        };
        let (at_first, at_second) = tokio::join!(first_side, second_side);
        assert_eq!(checksum(&at_second), checksum(&a), "bytes before FIN");
        assert_eq!(checksum(&at_first), checksum(&b), "bytes after FIN");
        (at_first, at_second)
    }

    #[tokio::test]
    async fn client_half_close_still_receives_upstream_bytes() {
        both_paths(|try_splice| async move {
            let (client, mut pc, mut pu, server) = topology().await;
            let (moved, _) = tokio::join!(
                pipe_with(&mut pc, &mut pu, IDLE, try_splice),
                half_close(client, server)
            );
            let moved = moved.expect("pipe");
            assert_eq!(moved.client_to_upstream, 3 * MIB as u64);
            assert_eq!(moved.upstream_to_client, 2 * MIB as u64);
        })
        .await;
    }

    #[tokio::test]
    async fn upstream_half_close_still_receives_client_bytes() {
        both_paths(|try_splice| async move {
            let (client, mut pc, mut pu, server) = topology().await;
            let (moved, _) = tokio::join!(
                pipe_with(&mut pc, &mut pu, IDLE, try_splice),
                half_close(server, client)
            );
            let moved = moved.expect("pipe");
            assert_eq!(moved.upstream_to_client, 3 * MIB as u64);
            assert_eq!(moved.client_to_upstream, 2 * MIB as u64);
        })
        .await;
    }

    #[tokio::test]
    async fn idle_timeout_fires_and_closes_nothing_early() {
        both_paths(|try_splice| async move {
            let (mut client, mut pc, mut pu, mut server) = topology().await;
            let idle = Duration::from_millis(400);
            let start = Instant::now();
            let proxy = pipe_with(&mut pc, &mut pu, idle, try_splice);
            // A byte every 100 ms for 1.2 s keeps the pipe alive for three idle periods.
            let traffic = async {
                let mut buf = [0u8; 1];
                for i in 0..12u8 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    client.write_all(&[i]).await.expect("client write");
                    server.read_exact(&mut buf).await.expect("server read");
                    assert_eq!(buf[0], i);
                }
            };
            let (moved, ()) = tokio::join!(proxy, traffic);
            let err = moved.expect_err("pipe must time out");
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
            let took = start.elapsed();
            assert!(
                took >= Duration::from_millis(1200 + 400),
                "timed out early: {took:?}"
            );
            assert!(
                took < Duration::from_millis(1200 + 400 + 3000),
                "timed out late: {took:?}"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn upstream_reset_ends_pipe_with_error() {
        both_paths(|try_splice| async move {
            let (_client, mut pc, mut pu, server) = topology().await;
            let proxy = pipe_with(&mut pc, &mut pu, IDLE, try_splice);
            let reset = async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                server.set_zero_linger().expect("SO_LINGER 0");
                drop(server);
            };
            let (moved, ()) = tokio::join!(proxy, reset);
            let err = moved.expect_err("pipe must fail on reset");
            assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
        })
        .await;
    }

    #[tokio::test]
    async fn client_reset_while_upstream_streams_ends_pipe_with_error() {
        both_paths(|try_splice| async move {
            let (client, mut pc, mut pu, mut server) = topology().await;
            // The upstream keeps sending; the client reads a little and resets.
            let stream = async {
                let chunk = pattern(3, 64 * 1024);
                while server.write_all(&chunk).await.is_ok() {}
            };
            let reset = async {
                let mut client = client;
                let mut buf = vec![0u8; 64 * 1024];
                client.read_exact(&mut buf).await.expect("client read");
                client.set_zero_linger().expect("SO_LINGER 0");
                drop(client);
            };
            let moved = async {
                let moved = pipe_with(&mut pc, &mut pu, IDLE, try_splice).await;
                // End the upstream's writes so `stream` finishes.
                drop(pu);
                moved
            };
            let (moved, (), ()) = tokio::join!(moved, stream, reset);
            let err = moved.expect_err("pipe must fail on reset");
            assert!(
                matches!(
                    err.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                ),
                "{err}"
            );
        })
        .await;
    }
}
