//! Bidirectional byte copy between two TCP streams for the L4 proxy.
//!
//! DOC-PLACEHOLDER

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::{Pin, pin};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Size of a new splice pipe (the kernel's default), and the least worth splicing with.
const PIPE_MIN: usize = 64 * 1024;

/// Size a pipe grows to once its direction has moved [`GROW_AFTER`] bytes (the default
/// `fs.pipe-max-size`, the most an unprivileged process may ask for).
const PIPE_MAX: usize = 1024 * 1024;

/// Bytes one direction moves before its pipe grows to [`PIPE_MAX`]: short connections keep
/// small pipes, which count less against the per-user pipe limit.
const GROW_AFTER: u64 = 1024 * 1024;

/// Empty pipes each thread keeps for its next connections.
const POOL_MAX: usize = 32;

/// Bytes moved per unit of tokio's cooperative budget, as in a 64 KiB userspace copy.
const BUDGET_UNIT: usize = 64 * 1024;

thread_local! {
    /// Empty [`PIPE_MIN`] pipes left by finished connections: taking one saves the `pipe2` and
    /// two `close` calls (about 5 us per pipe) of a new one.
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// Buffer size of each direction of the userspace fallback copy.
const FALLBACK_BUF_SIZE: usize = 64 * 1024;

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
/// with [`io::ErrorKind::TimedOut`] once no byte has moved either way for `idle_timeout`.
/// Neither stream is closed here: that happens when the caller drops them.
pub async fn pipe(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    idle_timeout: Duration,
) -> io::Result<Transferred> {
    pipe_with(client, upstream, idle_timeout, splice_usable()).await
}

/// [`pipe`], with the splice path tried only if `try_splice`.
async fn pipe_with(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    idle_timeout: Duration,
    try_splice: bool,
) -> io::Result<Transferred> {
    let activity = Activity::new();
    let copy = async {
        if try_splice && let Some(done) = splice_both(client, upstream, &activity).await? {
            return Ok(done);
        }
        copy_userspace(client, upstream, &activity).await
    };
    with_idle_timeout(copy, &activity, idle_timeout).await
}

/// Whether the splice path may be tried: it has not been found unsupported, and a write to a
/// reset socket cannot kill the process (`splice` has no `MSG_NOSIGNAL`, so it relies on
/// SIGPIPE being ignored, as Rust's std arranges for binaries by default).
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

// ---------------------------------------------------------------------------------------------
// splice(2) path
// ---------------------------------------------------------------------------------------------

/// A kernel pipe holding the bytes in flight of one direction; both ends close on drop.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Capacity in bytes, as the kernel reports it.
    size: usize,
}

impl Pipe {
    /// An empty pipe of [`PIPE_MIN`] bytes or more from this thread's pool, else a new one;
    /// `None` if the kernel granted less (past `fs.pipe-user-pages-soft`, an unprivileged
    /// user gets 2-page pipes, and splicing 8 KiB at a time loses to the userspace copy).
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
        Ok((size >= PIPE_MIN).then_some(Pipe { read, write, size }))
    }

    /// Sets the capacity of this empty pipe to `size`; false if the kernel refused (EPERM past
    /// `fs.pipe-max-size` or the per-user pipe limits), leaving it as it was.
    fn resize(&mut self, size: usize) -> bool {
        // SAFETY: F_SETPIPE_SZ on an open pipe descriptor; no pointers involved.
        let got = unsafe {
            libc::fcntl(
                self.write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                size as libc::c_int,
            )
        };
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
        let _ = POOL.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < POOL_MAX {
                pool.push(self);
            }
        });
    }
}

/// Moves up to `len` bytes from `from` to `to` without blocking; one of them must be a pipe.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    loop {
        // SAFETY: plain descriptors and null offsets (neither end is a seekable file).
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
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

/// Both directions over splice. `Ok(None)` means splice turned out unsupported before any byte
/// moved, so the caller may fall back to the userspace copy with both streams untouched.
async fn splice_both(
    client: &TcpStream,
    upstream: &TcpStream,
    activity: &Activity,
) -> io::Result<Option<Transferred>> {
    let (mut up, mut down) = match (Pipe::take(), Pipe::take()) {
        (Ok(Some(up)), Ok(Some(down))) => (up, down),
        (Err(e), _) | (_, Err(e)) if is_unsupported(&e) => {
            SPLICE_UNSUPPORTED.store(true, Ordering::Relaxed);
            return Ok(None);
        }
        (Err(e), _) | (_, Err(e)) => return Err(e),
        // A pipe smaller than PIPE_MIN (per-user pipe accounting): userspace for this one.
        _ => return Ok(None),
    };
    let spliced_any = AtomicBool::new(false);
    let both = tokio::try_join!(
        splice_half(client, upstream, &mut up, activity, &spliced_any),
        splice_half(upstream, client, &mut down, activity, &spliced_any),
    );
    match both {
        Ok((client_to_upstream, upstream_to_client)) => {
            // Both directions drained their pipes to EOF: both are empty and reusable.
            up.recycle();
            down.recycle();
            Ok(Some(Transferred {
                client_to_upstream,
                upstream_to_client,
            }))
        }
        // Nothing moved and nothing shut down yet: safe to start over in userspace.
        Err(e) if is_unsupported(&e) && !spliced_any.load(Ordering::Relaxed) => {
            SPLICE_UNSUPPORTED.store(true, Ordering::Relaxed);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// One direction: socket `from` -> `pipe` -> socket `to`, until `from` sends FIN; then shuts
/// down the write half of `to`. Returns the bytes written to `to`.
///
/// The pipe is drained completely before it is filled again. That keeps every `EAGAIN` honest:
/// filling an empty pipe can only block on the source socket, and draining a non-empty pipe
/// only on the destination socket, so tokio clears the readiness of the right socket. (A
/// half-full pipe can refuse more data while the socket still has some; clearing the socket's
/// readiness then would wait for an edge that never comes.) At most one pipe's worth of bytes
/// is in flight per direction.
async fn splice_half(
    from: &TcpStream,
    to: &TcpStream,
    pipe: &mut Pipe,
    activity: &Activity,
    spliced_any: &AtomicBool,
) -> io::Result<u64> {
    let (from_fd, to_fd) = (from.as_raw_fd(), to.as_raw_fd());
    let (pipe_in, pipe_out) = (pipe.write.as_raw_fd(), pipe.read.as_raw_fd());
    let mut total = 0u64;
    let mut may_grow = true;
    loop {
        let size = pipe.size;
        let filled = from
            .async_io(Interest::READABLE, || splice(from_fd, pipe_in, size))
            .await?;
        spliced_any.store(true, Ordering::Relaxed);
        if filled == 0 {
            shutdown_write(to)?;
            return Ok(total);
        }
        activity.touch();
        let mut pending = filled;
        while pending > 0 {
            let sent = to
                .async_io(Interest::WRITABLE, || splice(pipe_out, to_fd, pending))
                .await?;
            pending -= sent;
            total += sent as u64;
            activity.touch();
        }
        // Charge tokio's budget per BUDGET_UNIT moved, not per call, so that one bulk
        // connection yields to the others on its runtime as often as a userspace copy would.
        for _ in 1..filled / BUDGET_UNIT {
            tokio::task::coop::consume_budget().await;
        }
        // A bulk direction: fewer, larger splices. Refused once, not asked again.
        if may_grow && total >= GROW_AFTER && pipe.size < PIPE_MAX {
            may_grow = pipe.resize(PIPE_MAX);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Userspace fallback
// ---------------------------------------------------------------------------------------------

/// Both directions through tokio's buffered copy, recording activity on every read and write.
async fn copy_userspace(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    activity: &Activity,
) -> io::Result<Transferred> {
    let mut client = Tracked {
        io: client,
        activity,
    };
    let mut upstream = Tracked {
        io: upstream,
        activity,
    };
    let (client_to_upstream, upstream_to_client) = tokio::io::copy_bidirectional_with_sizes(
        &mut client,
        &mut upstream,
        FALLBACK_BUF_SIZE,
        FALLBACK_BUF_SIZE,
    )
    .await?;
    Ok(Transferred {
        client_to_upstream,
        upstream_to_client,
    })
}

/// A stream that records in `activity` every read or write that moved bytes.
struct Tracked<'a> {
    io: &'a mut TcpStream,
    activity: &'a Activity,
}

impl AsyncRead for Tracked<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut *this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut *this.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().io).poll_shutdown(cx)
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

    /// Deterministic test bytes: position `i` of the stream seeded with `seed`.
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
            let idle = Duration::from_millis(300);
            let start = Instant::now();
            let proxy = pipe_with(&mut pc, &mut pu, idle, try_splice);
            // Traffic every 100 ms for 900 ms keeps the pipe alive past three idle periods.
            let traffic = async {
                let mut buf = [0u8; 1];
                for i in 0..9u8 {
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
                took >= Duration::from_millis(900 + 300),
                "timed out early: {took:?}"
            );
            assert!(
                took < Duration::from_millis(900 + 300 + 1000),
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
