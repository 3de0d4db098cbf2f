//! Buffers lent to connections while they have bytes to move, and given back when they go
//! idle: an idle client of the transaction relay holds no buffer memory at all (thousands
//! of them sit between transactions most of the time), while a busy one gets its buffers
//! from a per-thread store instead of the allocator, so a turn costs no allocation.
//!
//! - [`lend`] / [`lend_for_read`]: a buffer with no memory of its own gets a spare from
//!   this thread's store (and, for a read, room for [`CHUNK`] bytes).
//! - [`give_back`]: an empty buffer's memory goes back to the store (or to the allocator,
//!   when the store is full or the buffer grew past [`KEPT_CAPACITY`] for one large
//!   message), and the buffer is left empty with no memory.
//!
//! The store is per thread (no lock); a task that moves to another worker gives its buffers
//! back to that worker's store. Each store holds at most [`KEPT`] buffers: what stays
//! allocated is bounded by the threads, not by the clients.

use std::cell::RefCell;

use bytes::BytesMut;

/// Room a lent buffer has for one read.
pub const CHUNK: usize = 16 * 1024;

/// Buffers a thread keeps for the next turns (2 MB at most of 16 KB buffers).
const KEPT: usize = 128;

/// A buffer that grew past this (a large row or `Bind`) is freed rather than kept.
const KEPT_CAPACITY: usize = 4 * CHUNK;

thread_local! {
    static STORE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// Give a buffer with no memory a spare one of this thread's (or a new one of [`CHUNK`]);
/// a buffer that has memory is left as it is.
#[inline]
pub fn lend(buf: &mut BytesMut) {
    if buf.capacity() == 0 {
        *buf = STORE
            .with(|s| s.borrow_mut().pop())
            .unwrap_or_else(|| BytesMut::with_capacity(CHUNK));
    }
}

/// [`lend`], then make sure `buf` has room for a read of [`CHUNK`] bytes.
#[inline]
pub fn lend_for_read(buf: &mut BytesMut) {
    lend(buf);
    buf.reserve(CHUNK);
}

/// When `buf` is empty, give its memory back (it is left empty, holding none). A buffer
/// with bytes in it is left as it is.
#[inline]
pub fn give_back(buf: &mut BytesMut) {
    // (An empty view may show no capacity and still hold its allocation: read to its end.)
    if !buf.is_empty() {
        return;
    }
    let mut buf = std::mem::take(buf);
    // Kept only when its memory (from its start, once reclaimed) is a whole read's worth:
    // a small one (from the login) or a large one is freed.
    if !buf.try_reclaim(CHUNK) || buf.capacity() > KEPT_CAPACITY {
        return;
    }
    STORE.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < KEPT {
            s.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept() -> usize {
        STORE.with(|s| s.borrow().len())
    }

    #[test]
    fn an_idle_buffer_holds_no_memory_and_its_memory_is_lent_again() {
        let mut a = BytesMut::new();
        lend_for_read(&mut a);
        assert!(a.capacity() >= CHUNK);
        a.extend_from_slice(b"select 1");
        give_back(&mut a);
        assert_eq!(&a[..], b"select 1", "a buffer with bytes in it is kept");
        let _ = a.split_to(a.len());
        let before = kept();
        give_back(&mut a);
        assert_eq!(a.capacity(), 0);
        assert_eq!(kept(), before + 1);
        let mut b = BytesMut::new();
        lend(&mut b);
        assert_eq!(kept(), before, "the spare was taken, not a new allocation");
        assert!(b.capacity() >= CHUNK);
        assert!(b.is_empty());
    }

    #[test]
    fn large_buffers_are_freed_and_the_store_is_bounded() {
        let before = kept();
        for cap in [64, KEPT_CAPACITY + 1] {
            let mut b = BytesMut::with_capacity(cap);
            give_back(&mut b);
            assert_eq!(b.capacity(), 0);
            assert_eq!(kept(), before, "capacity {cap} is not kept");
        }
        // A buffer read through to its end is kept whole.
        let mut used = BytesMut::with_capacity(CHUNK);
        used.extend_from_slice(&[7; CHUNK]);
        let _ = used.split_to(CHUNK);
        give_back(&mut used);
        assert_eq!(kept(), before + 1);
        let mut again = BytesMut::new();
        lend_for_read(&mut again);
        assert!(again.capacity() >= CHUNK);
        assert_eq!(kept(), before);
        for _ in 0..KEPT + 10 {
            let mut b = BytesMut::with_capacity(CHUNK);
            give_back(&mut b);
        }
        assert_eq!(kept(), KEPT);
    }
}
