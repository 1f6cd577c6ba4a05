//! One message with fds attached (`SCM_RIGHTS`) on a Unix socket: the fork server's
//! requests and replies, a spare's hand-over and a sandbox's placement all go through here.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use super::protocol::ZYGOTE_FDS_MAX;

/// A message read into the caller's buffer.
pub struct Received {
    /// Bytes of the buffer filled; 0 with no fds: the other end closed.
    pub len: usize,
    /// The fds it carried, close-on-exec, owned by the receiver.
    pub fds: Vec<OwnedFd>,
    /// It did not fit the buffer, or carried more than [`ZYGOTE_FDS_MAX`] fds.
    pub truncated: bool,
}

/// Receive one message (retrying EINTR). On a non-blocking socket, EAGAIN is returned as
/// `WouldBlock`, for tokio's `try_io`.
pub fn recv(sock: RawFd, buf: &mut [u8]) -> std::io::Result<Received> {
    let mut cmsg = nix::cmsg_space!([RawFd; ZYGOTE_FDS_MAX]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(m) => break m,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: the kernel just installed these descriptors for us; nothing else owns
            // them.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    Ok(Received {
        len: msg.bytes,
        fds,
        truncated: msg
            .flags
            .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC),
    })
}

/// Send `bytes` as one message with `fds` attached (retrying EINTR; no SIGPIPE).
pub fn send(sock: RawFd, bytes: &[u8], fds: &[RawFd], flags: MsgFlags) -> std::io::Result<()> {
    let cmsgs: Vec<ControlMessage<'_>> = if fds.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(fds)]
    };
    loop {
        match sendmsg::<()>(
            sock,
            &[IoSlice::new(bytes)],
            &cmsgs,
            flags | MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(_) => return Ok(()),
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
